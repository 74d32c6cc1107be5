"""Scale benchmark: how the cost of a host grows with the instances stored.

Run:  .venv/bin/python tests/benchmarks/bench_scale.py --sizes 10000 100000
          [--stores sqlite postgres] [--wake-fraction 0.1] [--json FILE] [--chart FILE]

For each store and size N, against a real ``durableflow serve`` (this process is the
client, over HTTP, on the same machine):

  * **create**: N instances that sleep one hour, created through the batch API
    (``POST .../instances/batch``, 100 a request, 8 clients): instances/s;
  * **RSS**: the host's resident memory before and after, per sleeping instance;
  * **list**: ``GET .../instances`` (first page) and ``GET .../instances?status=errored``
    (10 errored instances among the N), median of 20 requests;
  * **start**: the host stopped and started again with the N stored: seconds from the
    process start to its ready line, and its RSS then, beside the same start on an empty
    store in the same run (which is the import time of Python and the host);
  * **wake-up**: ``--wake-fraction`` x N more instances that sleep until one common
    instant a little after their creation; lateness p50 / p99 of each one's first step
    after the sleep (its start minus the instant) and wake-ups/s (woken / time from the
    instant to the last one);
  * **store bytes** per instance (SQLite: the file after a checkpoint; PostgreSQL: the
    tables with their indexes).

The figures are printed, and with ``--json`` appended to a file; ``--chart`` draws
creation rate, RSS per instance and list latency against N from that file (matplotlib,
``make setup-bench``). A figure, not pass/fail: run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 100
LOOKAHEAD = 2.0  # the host's: claims timer-only instances this long before they are due
CLIENTS = 8

APP = """
import time
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Sleeper(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        if event.payload.get("fail"):
            raise ValueError("asked to fail")
        wake_at = event.payload["wake_at"]
        await step.sleep_until("nap", wake_at * 1000)

        async def woken() -> float:
            return time.time() - wake_at  # the instance's output: read from the store

        return await step.do("woken", woken)
"""

CONFIG = """
main = "app.py"

[[workflows]]
name = "sleeper"
class_name = "Sleeper"
"""


class Host:
    """One ``durableflow serve`` process."""

    def __init__(self, project: Path, storage: str | None) -> None:
        self.project = project
        args = ["--storage", storage] if storage else []
        self.log = project / f"host-{time.monotonic_ns()}.log"
        out = self.log.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durableflow_runtime", "serve", "--port", "0", *args],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the host exited: {self.log.read_text()}")
            ready = re.search(r"serving \d+ workflow\(s\) on (http://\S+)", self.log.read_text())
            if ready:
                self.ready_seconds = time.perf_counter() - self.started
                self.ready_cpu = self.cpu()
                self.url = ready.group(1)
                return
            time.sleep(0.01)
        raise SystemExit("the host did not start within 300 s")

    def cpu(self) -> float:
        """CPU seconds the host process used so far (what a loaded machine does not
        stretch, unlike the wall-clock time)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """Resident bytes of the host process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


async def create(
    session: aiohttp.ClientSession, url: str, count: int, params: dict[str, Any], prefix: str
) -> float:
    """Create ``count`` instances through the batch API; seconds taken."""
    batches = iter(range(0, count, BATCH))

    async def client() -> None:
        for start in batches:
            body = {
                "instances": [
                    {"id": f"{prefix}{n}", "params": params}
                    for n in range(start, min(count, start + BATCH))
                ]
            }
            async with session.post(f"{url}/api/workflows/sleeper/instances/batch", json=body) as r:
                assert r.status == 201, await r.text()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started


async def list_latency(session: aiohttp.ClientSession, url: str, query: str) -> float:
    """Median seconds of 20 GETs of the list endpoint's first page."""
    times = []
    for _ in range(20):
        started = time.perf_counter()
        async with session.get(f"{url}/api/workflows/sleeper/instances{query}") as r:
            await r.read()
            assert r.status == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def waiting_count(kind: str, project: Path, schema: str, status: str = "waiting") -> int:
    """How many instances are waiting (or in ``status``), read from the store itself (an
    index range) in this process, so that the polling costs the host nothing."""
    if kind == "sqlite":
        path = project / ".durableflow" / "state.db"
        if not path.exists():
            return 0
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return int(
                lite.execute(
                    "SELECT count(*) FROM instances WHERE workflow = 'sleeper' AND status = ?",
                    (status,),
                ).fetchone()[0]
            )
        finally:
            lite.close()
    conn = await asyncpg.connect(PG_DSN)
    try:
        return int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".instances WHERE workflow = $1 AND status = $2',
                "sleeper",
                status,
            )
        )
    finally:
        await conn.close()


async def wait_asleep(kind: str, project: Path, schema: str, count: int) -> None:
    """Until ``count`` instances are waiting (their sleep stored, their activation over)."""
    deadline = time.monotonic() + 1200
    found = 0
    while time.monotonic() < deadline:
        found = await waiting_count(kind, project, schema)
        if found >= count:
            return
        await asyncio.sleep(1.0)
    raise SystemExit(f"not {count} instances asleep after 20 minutes: {found} are")


async def lateness(kind: str, project: Path, schema: str) -> list[float]:
    """The woken instances' outputs: how late each one's step after the sleep started.

    Read from the store once all are complete: the step writes nothing else, so the
    measurement adds no work to the host's (an append to a file per instance, as this
    benchmark did at first, cost the host as much as the wake-up itself)."""
    sql = "SELECT output FROM {}instances WHERE workflow = 'sleeper' AND status = 'complete'"
    if kind == "sqlite":
        path = project / ".durableflow" / "state.db"
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return [float(json.loads(r[0])) for r in lite.execute(sql.format(""))]
        finally:
            lite.close()
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(sql.format(f'"{schema}".'))
        return [float(json.loads(r[0])) for r in rows]
    finally:
        await conn.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def store_bytes(kind: str, project: Path, schema: str) -> int:
    if kind == "sqlite":
        files = list((project / ".durableflow").glob("state.db*"))
        return sum(f.stat().st_size for f in files)
    conn = await asyncpg.connect(PG_DSN)
    try:
        total: int = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        return int(total)
    finally:
        await conn.close()


async def one_run(kind: str, size: int, fraction: float) -> dict[str, Any]:
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    storage = None if kind == "sqlite" else f"{PG_DSN}?schema={schema}"
    result: dict[str, Any] = {"store": kind, "size": size}
    with tempfile.TemporaryDirectory(prefix="durableflow-bench-scale-") as tmp:
        project = Path(tmp)
        (project / "app.py").write_text(textwrap.dedent(APP))
        (project / "durableflow.toml").write_text(CONFIG)
        host = Host(project, storage)
        result["start_empty_s"] = host.ready_seconds
        result["start_empty_cpu_s"] = host.ready_cpu
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CLIENTS)
            ) as session:
                hour = {"wake_at": time.time() + 3600}
                warm = min(1000, size // 2)
                await create(session, host.url, warm, hour, "warm")
                rss_before = host.rss()
                seconds = await create(session, host.url, size - warm, hour, "s")
                result["create_per_s"] = (size - warm) / seconds
                await create(session, host.url, 10, {"fail": True}, "e")
                await wait_asleep(kind, project, schema, size)
                result["rss_bytes"] = host.rss()
                result["rss_per_instance"] = (host.rss() - rss_before) / (size - warm)
                result["list_first_ms"] = await list_latency(session, host.url, "") * 1000
                result["list_errored_ms"] = (
                    await list_latency(session, host.url, "?status=errored") * 1000
                )
            host.stop()
            result["store_bytes_per_instance"] = await store_bytes(kind, project, schema) / size
            host = Host(project, storage)
            result["start_stored_s"] = host.ready_seconds
            result["start_stored_cpu_s"] = host.ready_cpu
            await asyncio.sleep(2)
            result["rss_after_start"] = host.rss()
            woken = int(size * fraction)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CLIENTS)
            ) as session:
                rate = result["create_per_s"]
                # all created, and suspended, before the host's look-ahead (2 s) claims
                # them ahead of the instant: some are then held in memory, not waiting
                wake_at = time.time() + woken / rate * 3 + 5 + LOOKAHEAD
                await create(session, host.url, woken, {"wake_at": wake_at}, "w")
                result["created_before_wake"] = time.time() < wake_at - LOOKAHEAD
                deadline = wake_at + 600
                while time.time() < deadline:
                    if await waiting_count(kind, project, schema, "complete") >= woken:
                        break
                    await asyncio.sleep(0.5)
                late = await lateness(kind, project, schema)
                result["woken"] = len(late)
                result["lateness_p50_ms"] = pct(late, 0.5) * 1000
                result["lateness_p99_ms"] = pct(late, 0.99) * 1000
                result["wakeups_per_s"] = len(late) / max(late)
        finally:
            host.stop()
            if kind == "postgres":
                conn = await asyncpg.connect(PG_DSN)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()
    return result


async def autovacuum_off() -> bool:
    """Whether the PostgreSQL server runs without autovacuum (a CI set-up may turn it off):
    every claim then steps over the dead rows of every earlier update of the run."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        return bool(await conn.fetchval("SHOW autovacuum") == "off")
    finally:
        await conn.close()


def show(r: dict[str, Any]) -> None:
    print(
        f"{r['store']:8} N={r['size']:>9,}  create {r['create_per_s']:,.0f}/s"
        f"  RSS {r['rss_bytes'] / 2**20:.0f} MiB ({r['rss_per_instance']:.0f} B/instance)"
        f"  store {r['store_bytes_per_instance']:.0f} B/instance"
        f"  list {r['list_first_ms']:.1f} ms, errored {r['list_errored_ms']:.1f} ms"
    )
    print(
        f"{'':8} start to ready: empty {r['start_empty_s']:.2f} s"
        f" ({r['start_empty_cpu_s']:.2f} s CPU), {r['size']:,} stored"
        f" {r['start_stored_s']:.2f} s ({r['start_stored_cpu_s']:.2f} s CPU),"
        f" RSS then {r['rss_after_start'] / 2**20:.0f} MiB\n{'':8}"
        f"  wake-up of {r['woken']:,}: p50 {r['lateness_p50_ms']:.0f} ms,"
        f" p99 {r['lateness_p99_ms']:.0f} ms, {r['wakeups_per_s']:,.0f}/s"
        f"{'' if r['created_before_wake'] else ' (not all asleep at the instant: lateness high)'}"
    )


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("create_per_s", "creation rate (instances/s)"),
        ("rss_per_instance", "host RSS per sleeping instance (bytes)"),
        ("list_first_ms", "list, first page (ms)"),
        ("list_errored_ms", "list, ?status=errored (ms)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for store in sorted({r["store"] for r in results}):
            rows = sorted((r for r in results if r["store"] == store), key=lambda r: r["size"])
            ax.plot([r["size"] for r in rows], [r[key] for r in rows], marker="o", label=store)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("instances stored")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--wake-fraction", type=float, default=0.1)
    parser.add_argument("--json", type=Path, help="append each result to this JSON file")
    parser.add_argument("--chart", type=Path, help="draw the chart of --json's results here")
    parser.add_argument("--quick", action="store_true", help="600 instances (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [600]
    if "postgres" in args.stores and asyncio.run(autovacuum_off()):
        print(
            "warning: autovacuum is off on this PostgreSQL server, unlike any production one:"
            " dead rows pile up and the claims slow down as the run goes on (a million"
            " instances: 250-700 ms a claim). For figures that mean something:"
            " ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();",
            flush=True,
        )
    results: list[dict[str, Any]] = []
    if args.json and args.json.exists():
        results = json.loads(args.json.read_text())
    for size in args.sizes:
        for kind in args.stores:
            result = asyncio.run(one_run(kind, size, args.wake_fraction))
            show(result)
            results = [
                r for r in results if (r["store"], r["size"]) != (result["store"], result["size"])
            ]
            results.append(result)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.chart:
        chart(results, args.chart)


if __name__ == "__main__":
    main()
