"""HTTP benchmark: ``create`` latency and end-to-end instance rate through a real host.

Run:  .venv/bin/python tests/benchmarks/bench_http.py [--quick] [--clients 32]

Starts ``durableflow serve`` on a free port with a SQLite file in a temporary directory
(a one-step workflow), then, from this process, with ``--clients`` concurrent clients:

  * ``create``: ``POST /api/workflows/bench/instances`` latency p50 / p99 and requests/s;
  * end to end: instances created over HTTP and completed, per second (create all, then
    wait for each through the long-poll ``GET .../result`` endpoint).

The host and this client share the machine: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

APP = """
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


async def work() -> int:
    return 1


class Bench(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        return await step.do("work", work)
"""

CONFIG = """
main = "app.py"

[[workflows]]
name = "bench"
class_name = "Bench"
"""


def start_host(project: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``durableflow serve --port 0``; its URL, read from its ready line."""
    log = project / "host.log"
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "durableflow_runtime", "serve", "--port", "0"],
        cwd=project,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the host exited: {log.read_text()}")
        ready = re.search(r"serving \d+ workflow\(s\) on (http://\S+)", log.read_text())
        if ready:
            return proc, ready.group(1), log
        time.sleep(0.05)
    raise SystemExit("the host did not start within 30s")


async def create_phase(
    session: aiohttp.ClientSession, base: str, total: int, clients: int
) -> tuple[list[float], float, list[str]]:
    url = f"{base}/api/workflows/bench/instances"
    latencies: list[float] = []
    ids: list[str] = []
    remaining = iter(range(total))

    async def client() -> None:
        for _ in remaining:
            started = time.perf_counter()
            async with session.post(url, data=b"{}") as response:
                body = await response.read()
                assert response.status == 201, body
            latencies.append(time.perf_counter() - started)
            ids.append(orjson.loads(body)["id"])

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started, ids


async def wait_phase(
    session: aiohttp.ClientSession, base: str, ids: list[str], clients: int
) -> None:
    remaining = iter(ids)

    async def client() -> None:
        for id in remaining:
            url = f"{base}/api/workflows/bench/instances/{id}/result?timeout=120"
            async with session.get(url) as response:
                data = await response.json()
                assert data["status"] == "complete", data

    await asyncio.gather(*(client() for _ in range(clients)))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(args: argparse.Namespace, base: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await create_phase(session, base, min(200, args.creates), args.clients)  # warm-up
        latencies, elapsed, created = await create_phase(session, base, args.creates, args.clients)
        await wait_phase(session, base, created, args.clients)

        started = time.perf_counter()
        _, _, ids = await create_phase(session, base, args.e2e, args.clients)
        await wait_phase(session, base, ids, args.clients)
        e2e = time.perf_counter() - started
    return {
        "create_p50_ms": pct(latencies, 0.50) * 1000,
        "create_p99_ms": pct(latencies, 0.99) * 1000,
        "create_mean_ms": statistics.fmean(latencies) * 1000,
        "create_per_s": len(latencies) / elapsed,
        "e2e_instances": args.e2e,
        "e2e_per_s": args.e2e / e2e,
        "e2e_seconds": e2e,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--creates", type=int, default=5000)
    parser.add_argument("--e2e", type=int, default=5000)
    args = parser.parse_args()
    if args.quick:
        args.creates, args.e2e = 300, 300
    with tempfile.TemporaryDirectory(prefix="durableflow-bench-http-") as tmp:
        project = Path(tmp)
        (project / "app.py").write_text(textwrap.dedent(APP))
        (project / "durableflow.toml").write_text(CONFIG)
        proc, base, log = start_host(project)
        try:
            try:
                import uvloop
            except ImportError:
                figures = asyncio.run(run(args, base))
            else:
                figures = uvloop.run(run(args, base))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        errors = [
            line for line in log.read_text().splitlines() if re.search("ERROR|Traceback", line)
        ]
    print(f"HTTP benchmark: {args.clients} concurrent clients, one host on SQLite (this machine)")
    print(
        f"  create     p50 {figures['create_p50_ms']:.2f} ms   p99 {figures['create_p99_ms']:.2f} ms"
        f"   mean {figures['create_mean_ms']:.2f} ms   {figures['create_per_s']:.0f} creates/s"
        f"   ({args.creates} creates)"
    )
    print(
        f"  end to end {figures['e2e_per_s']:.0f} instances/s created over HTTP and completed"
        f"   ({figures['e2e_instances']} in {figures['e2e_seconds']:.2f} s)"
    )
    print(f"  host exit status {code}; errors in its log: {len(errors)}")


if __name__ == "__main__":
    main()
