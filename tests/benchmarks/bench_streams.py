"""Stream benchmark: how long a chunk takes from ``write()`` in a step to a connected reader.

Run:  .venv/bin/python tests/benchmarks/bench_streams.py [--store sqlite|postgres]
          [--hosts 1|2] [--instances 100] [--chunks 20] [--pause 0.1]

Starts ``durableflow serve`` (one host, or two on one PostgreSQL schema) in a temporary
directory with a workflow that waits for a "go" event, then writes ``--chunks`` chunks,
``--pause`` seconds apart, each ``{"t": time.time(), "pid": host pid}`` taken just before
``write()``. From this process, one reader per instance and per host follows its stream
with ``durableflow.Client`` (JSON lines over HTTP) before "go" is sent, so every chunk is
delivered live. The latency of a chunk is its arrival at the reader minus its ``t``: the
commit of the write, the wake-up of the reader's host (in process on the writing host, a
PostgreSQL ``NOTIFY`` on the other one), the read and the HTTP delivery. With two hosts the
figures are split by whether the reader's host is the one that ran the instance.

The hosts and the readers share the machine: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import durableflow

APP = """
import os
import time
import asyncio
from typing import Any

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Chatter(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        chunks, pause = event.payload["chunks"], event.payload["pause"]
        await step.wait_for_event("go", "go", timeout="1 hour")

        async def chatter(ctx: StepContext) -> int:
            writer = ctx.stream("tokens")
            for i in range(chunks):
                await writer.write({"i": i, "t": time.time(), "pid": os.getpid()})
                await asyncio.sleep(pause)
            return chunks

        return await step.do("chatter", chatter)
"""

CONFIG = """
main = "app.py"

[[workflows]]
name = "chatter"
class_name = "Chatter"
"""

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_READY = re.compile(rb"serving \d+ workflow\(s\) on (http://\S+)")


def start_host(project: Path, name: str, storage: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """``durableflow serve --port 0``; the process and its URL, read from its ready line."""
    log = project / f"{name}.log"
    command = [str(Path(sys.executable).with_name("durableflow")), "serve", "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, *storage], cwd=project, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _READY.search(log.read_bytes())
        if found:
            return proc, found.group(1).decode()
        if proc.poll() is not None:
            raise SystemExit(f"host {name} exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"host {name} did not start:\n{log.read_text()}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def read(url: str, host_pid: int, id: str, latencies: dict[str, list[float]]) -> None:
    async with durableflow.Client(url, timeout=60) as client:
        instance = await client.workflow("chatter").get(id)
        async for chunk in instance.stream("tokens"):
            arrived = time.time()
            where = "same host" if chunk.data["pid"] == host_pid else "other host"
            latencies[where].append(arrived - chunk.data["t"])


async def measure(urls: list[tuple[str, int]], args: argparse.Namespace) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = defaultdict(list)
    async with durableflow.Client(urls[0][0], timeout=60) as client:
        chatter = client.workflow("chatter")
        params = {"chunks": args.chunks, "pause": args.pause}
        ids = [f"c{n}" for n in range(args.instances)]
        for start in range(0, len(ids), 100):
            await chatter.create_batch(
                [durableflow.CreateOptions(id=i, params=params) for i in ids[start : start + 100]]
            )
        readers = [
            asyncio.create_task(read(url, pid, id, latencies)) for id in ids for url, pid in urls
        ]
        await asyncio.sleep(3.0)  # every reader connected and waiting
        started = time.monotonic()
        for id in ids:
            await (await chatter.get(id)).send_event(type="go")
        await asyncio.gather(*readers)
        print(f"all streams read in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--hosts", type=int, choices=[1, 2], default=1)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.1)
    args = parser.parse_args()
    if args.hosts == 2 and args.store != "postgres":
        parser.error("two hosts share a store on PostgreSQL only: add --store postgres")
    schema = f"bench_streams_{os.getpid()}"
    storage: list[str] = []
    if args.store == "postgres":
        separator = "&" if "?" in PG_DSN else "?"
        storage = ["--storage", f"{PG_DSN}{separator}schema={schema}"]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="durableflow-bench-streams-") as tmp:
        urls: list[tuple[str, int]] = []
        for n in range(args.hosts):
            project = Path(tmp) / f"host{n}"
            project.mkdir()
            (project / "app.py").write_text(APP)
            (project / "durableflow.toml").write_text(CONFIG)
            proc, url = start_host(project, f"host{n}", storage)
            procs.append(proc)
            urls.append((url, proc.pid))
        try:
            latencies = asyncio.run(measure(urls, args))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            if args.store == "postgres":
                drop = f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'
                asyncio.run(_pg(drop))
    readers = args.instances * args.hosts
    print(
        f"streams: {args.store}, {args.hosts} host(s), {args.instances} instances x "
        f"{args.chunks} chunks every {args.pause:g}s, {readers} readers"
    )
    for where, values in sorted(latencies.items()):
        ms = [v * 1000 for v in values]
        print(
            f"  {where:<10} {len(ms):>6} chunks  p50 {percentile(ms, 0.5):7.1f} ms  "
            f"p90 {percentile(ms, 0.9):7.1f} ms  p99 {percentile(ms, 0.99):7.1f} ms  "
            f"max {max(ms):7.1f} ms"
        )


async def _pg(statement: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        return await conn.execute(statement)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
