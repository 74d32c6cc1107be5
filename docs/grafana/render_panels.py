"""Render the Grafana dashboard's panels from a real scrape of a real host under a workload.

Grafana is not available where this documentation is built, so this script draws the
panels of ``durableflow.json`` itself: it starts ``durableflow serve`` on a throw-away
project, drives a workload over HTTP (orders whose charge step sometimes fails and
retries, a one-second sleep, reports with slow steps), scrapes ``GET /metrics`` every two
seconds, evaluates each panel's PromQL by hand (``rate`` and ``histogram_quantile``
over a 10-second window, as Prometheus would) and plots them with matplotlib.

Run:  .venv/bin/python docs/grafana/render_panels.py [--seconds 60] [--out docs/grafana/panels.png]
(needs matplotlib: ``pip install -e ".[bench]"`` or ``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

APP = """
import asyncio, random
from typing import Any
from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Orders(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def validate() -> bool:
            await asyncio.sleep(random.uniform(0.001, 0.01))
            return True

        async def charge() -> str:
            await asyncio.sleep(random.uniform(0.02, 0.2))
            if random.random() < 0.25:
                raise RuntimeError("card declined, try again")
            return "charged"

        async def ship() -> str:
            await asyncio.sleep(random.uniform(0.01, 0.05))
            return "shipped"

        await step.do("validate", validate)
        await step.do("charge", {"retries": {"limit": 5, "delay": "300 ms"}}, charge)
        await step.sleep("cooling-off", "1 second")
        return await step.do("ship", ship)


class Reports(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def build() -> int:
            await asyncio.sleep(random.uniform(0.3, 0.8))
            return 1

        return await step.do("build report", build)
"""

CONFIG = """
main = "app.py"

[[workflows]]
name = "orders"
binding = "ORDERS"
class_name = "Orders"

[[workflows]]
name = "reports"
binding = "REPORTS"
class_name = "Reports"
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def post(url: str, path: str, body: Any) -> None:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def workload(url: str, seconds: float, stop: threading.Event) -> None:
    """Orders at a rate that rises and falls, and a report now and then."""
    start = time.monotonic()
    while not stop.is_set() and (elapsed := time.monotonic() - start) < seconds:
        rate = 4 + 12 * abs(((elapsed / seconds) * 2) % 2 - 1)  # 4..16 orders/s, a ramp
        post(url, "/api/workflows/orders/instances", {"params": {"n": random.random()}})
        if random.random() < 0.1:
            post(url, "/api/workflows/reports/instances", {})
        time.sleep(1 / rate)


def series(
    scrapes: list[tuple[float, Samples]], name: str, by: tuple[str, ...]
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """``sum by (by) (name)`` at each scrape."""
    out: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    for t, samples in scrapes:
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for (n, labels), v in samples.items():
            if n == name:
                d = dict(labels)
                sums[tuple(d.get(k, "") for k in by)] += v
        for key, v in sums.items():
            out[key].append((t, v))
    return out


def rate(
    scrapes: list[tuple[float, Samples]], name: str, by: tuple[str, ...], window: int
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """``sum by (by) (rate(name[window scrapes]))``."""
    out = {}
    for key, points in series(scrapes, name, by).items():
        out[key] = [
            (
                points[i][0],
                (points[i][1] - points[i - window][1]) / (points[i][0] - points[i - window][0]),
            )
            for i in range(window, len(points))
        ]
    return out


def quantile(
    scrapes: list[tuple[float, Samples]], phi: float, name: str, by: tuple[str, ...], window: int
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """``histogram_quantile(phi, sum by (le, by) (rate(name_bucket[window])))``, with
    Prometheus' linear interpolation inside the bucket."""
    buckets = series(scrapes, name + "_bucket", (*by, "le"))
    grouped: dict[tuple[str, ...], dict[float, list[tuple[float, float]]]] = defaultdict(dict)
    for key, points in buckets.items():
        grouped[key[:-1]][float(key[-1])] = points
    out: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, by_le in grouped.items():
        les = sorted(by_le)
        n = min(len(p) for p in by_le.values())
        result = []
        for i in range(window, n):
            counts = [by_le[le][i][1] - by_le[le][i - window][1] for le in les]
            total = counts[-1]
            if total <= 0:
                continue
            rank = phi * total
            j = next(k for k, c in enumerate(counts) if c >= rank)
            if les[j] == float("inf"):
                value = les[j - 1]
            else:
                lower = les[j - 1] if j > 0 else 0.0
                below = counts[j - 1] if j > 0 else 0.0
                inside = counts[j] - below
                value = lower + (les[j] - lower) * ((rank - below) / inside if inside else 1)
            result.append((by_le[les[0]][i][0], value))
        out[key] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("panels.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    durableflow = Path(sys.executable).with_name("durableflow")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "app.py").write_text(APP)
        (project / "durableflow.toml").write_text(CONFIG)
        log = (project / "host.log").open("w+b")
        host = subprocess.Popen(
            [str(durableflow), "serve", "--port", "0"], cwd=project, stdout=log, stderr=log
        )
        try:
            url = ""
            for _ in range(300):
                match = re.search(
                    r"serving \d+ workflow\(s\) on (http://\S+)", (project / "host.log").read_text()
                )
                if match:
                    url = match.group(1)
                    break
                time.sleep(0.1)
            if not url:
                raise SystemExit("the host did not start:\n" + (project / "host.log").read_text())
            stop = threading.Event()
            driver = threading.Thread(target=workload, args=(url, args.seconds, stop))
            driver.start()
            scrapes: list[tuple[float, Samples]] = []
            start = time.monotonic()
            try:
                while time.monotonic() - start < args.seconds + 6:  # and the tail end
                    scrapes.append((time.monotonic() - start, scrape(url)))
                    time.sleep(2.0)
            finally:
                stop.set()
                driver.join()
        finally:
            host.terminate()
            host.wait(30)
            log.close()

    w = 5  # scrapes in a rate window: 10 seconds
    panels: list[tuple[str, str, dict[str, list[tuple[float, float]]]]] = []

    def named(
        d: dict[tuple[str, ...], list[tuple[float, float]]], fmt: str
    ) -> dict[str, list[tuple[float, float]]]:
        return {fmt.format(*k): v for k, v in d.items()}

    panels.append(
        (
            "Instances by status",
            "instances",
            named(series(scrapes, "durableflow_instances", ("status",)), "{}"),
        )
    )
    panels.append(
        (
            "Queue depth (due, not running)",
            "instances",
            named(series(scrapes, "durableflow_queue_depth", ("workflow",)), "{}"),
        )
    )
    created = named(
        rate(scrapes, "durableflow_instances_created_total", ("workflow",), w), "created {}"
    )
    finished = named(
        rate(scrapes, "durableflow_instances_finished_total", ("workflow", "status"), w), "{0} {1}"
    )
    panels.append(("Instances created and finished", "per second", {**created, **finished}))
    steps = {
        label: next(iter(rate(scrapes, f"durableflow_step_{label}_total", (), w).values()), [])
        for label in ("attempts", "failures", "retries")
    }
    panels.append(("Step attempts, failures, retries", "per second", steps))
    panels.append(
        (
            "Step duration p95 by step",
            "seconds",
            named(
                quantile(
                    scrapes, 0.95, "durableflow_step_duration_seconds", ("workflow", "step"), w
                ),
                "{0} / {1}",
            ),
        )
    )
    lateness = {
        **named(
            quantile(scrapes, 0.5, "durableflow_wakeup_lateness_seconds", ("workflow",), w),
            "p50 {}",
        ),
        **named(
            quantile(scrapes, 0.99, "durableflow_wakeup_lateness_seconds", ("workflow",), w),
            "p99 {}",
        ),
    }
    panels.append(("Wake-up lateness", "seconds", lateness))
    latency = {
        "claim p95": next(
            iter(quantile(scrapes, 0.95, "durableflow_claim_seconds", (), w).values()), []
        ),
        "commit p95": next(
            iter(quantile(scrapes, 0.95, "durableflow_commit_seconds", (), w).values()), []
        ),
    }
    panels.append(("Claim and commit latency p95", "seconds", latency))

    fig, axes = plt.subplots(4, 2, figsize=(14, 15))
    fig.suptitle(
        "durableflow dashboard: the panels' queries rendered from a real scrape\n"
        f"(one SQLite host, {args.seconds:.0f} s of orders and reports; drawn with matplotlib, not Grafana)",
        fontsize=12,
    )
    for ax, (title, unit, lines) in zip(axes.flat, panels, strict=False):
        for label, points in sorted(lines.items()):
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel("seconds into the run")
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7, loc="upper left")
    last = axes.flat[-1]
    last.axis("off")
    final = scrapes[-1][1]
    version = next((dict(k[1]) for k in final if k[0] == "durableflow_build_info"), {})
    last.text(
        0.0,
        0.9,
        "Host version (durableflow_build_info)\n"
        + "\n".join(f"  {k}: {v}" for k, v in sorted(version.items()))
        + "\n\nLeases (PostgreSQL only): no series on SQLite",
        va="top",
        family="monospace",
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} from {len(scrapes)} scrapes")


if __name__ == "__main__":
    main()
