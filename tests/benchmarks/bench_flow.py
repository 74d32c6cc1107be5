"""Flow control: throughput with ``max_concurrency`` set versus unset, side by side.

Run:  .venv/bin/python tests/benchmarks/bench_flow.py [--quick] [--store sqlite|postgres|both]

One in-process engine runs N instances x S no-op steps, all created at once, in three
set-ups alternated round by round (so drift on a shared machine hits all alike):

  * ``unset``: the workflow has no limit (the single-statement claim);
  * ``set``: ``max_concurrency`` far above what ever runs (the limited claim: its advisory
    lock on PostgreSQL, its counts and candidate read), so the difference is the cost of
    enforcing the limit, not of waiting on it;
  * ``binding``: ``max_concurrency = 64``, below the host's 256 slots: what a limit that
    holds instances back costs in throughput (for scale, not the overhead).

Prints instances/s per set-up (the median of the rounds) and the ratio to ``unset``.
PostgreSQL runs when ``DURABLEFLOW_TEST_PG_DSN`` (or the default local DSN) answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.base import FlowLimits, Store
from durableflow_runtime.store.sqlite import SqliteStore

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SETUPS = {
    "unset": FlowLimits(),
    "set": FlowLimits(max_concurrency=100_000),
    "binding": FlowLimits(max_concurrency=64),
}


async def _noop() -> int:
    return 1


class NoOps(WorkflowEntrypoint[Any, int]):
    async def run(self, event: WorkflowEvent[int], step: WorkflowStep) -> Any:
        total = 0
        for _ in range(event.payload):
            total += await step.do("s", _noop)
        return total


async def run_once(store: Store, flow: FlowLimits, instances: int, steps: int) -> float:
    """Seconds for one engine to run ``instances`` instances of ``steps`` steps."""
    engine = Engine(store, [WorkflowSpec("noops", NoOps, flow=flow)])
    async with engine:
        done = asyncio.Event()
        finished = 0

        def listener(_workflow: str, _id: str, status: str | None) -> None:
            nonlocal finished
            if status == "complete":
                finished += 1
                if finished == instances:
                    done.set()

        engine.add_listener(listener)
        start = time.perf_counter()
        for first in range(0, instances, 100):
            await engine.create("noops", [(None, steps)] * min(100, instances - first))
        await asyncio.wait_for(done.wait(), 900)
        return time.perf_counter() - start


async def _pg_store() -> tuple[Store, str] | None:
    try:
        import asyncpg

        from durableflow_runtime.store.postgres import PostgresStore

        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()
    except Exception:
        return None
    schema = f"bench_flow_{uuid.uuid4().hex[:10]}"
    return PostgresStore(PG_DSN, schema=schema, poll_interval=1.0), schema


async def _drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def measure(store_kind: str, rounds: int, instances: int, steps: int) -> None:
    seconds: dict[str, list[float]] = {name: [] for name in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, flow in SETUPS.items():
                if store_kind == "sqlite":
                    store: Store = SqliteStore(Path(tmp) / f"{name}{r}.db")
                    seconds[name].append(await run_once(store, flow, instances, steps))
                    continue
                made = await _pg_store()
                if made is None:
                    print(f"postgres: no database at {PG_DSN}; skipped")
                    return
                store, schema = made
                try:
                    seconds[name].append(await run_once(store, flow, instances, steps))
                finally:
                    await _drop(schema)
    base = instances / statistics.median(seconds["unset"])
    print(f"{store_kind}: {instances} instances x {steps} no-op steps, median of {rounds} rounds")
    for name, flow in SETUPS.items():
        rate = instances / statistics.median(seconds[name])
        runs = ", ".join(f"{instances / s:.0f}" for s in seconds[name])
        limit = flow.max_concurrency if flow.max_concurrency is not None else "unset"
        print(
            f"  max_concurrency={limit!s:<7} {rate:8.0f} instances/s   "
            f"{rate / base:5.2f}x unset   (rounds: {runs})"
        )


async def main(args: argparse.Namespace) -> None:
    instances, steps = (200, 3) if args.quick else (args.instances, args.steps)
    rounds = 1 if args.quick else args.rounds
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    for kind in kinds:
        await measure(kind, rounds, instances, steps)


def _run() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args))
    except ImportError:
        asyncio.run(main(args))


if __name__ == "__main__":
    _run()
