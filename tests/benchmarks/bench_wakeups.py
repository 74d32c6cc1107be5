"""Wake-ups at one instant: N instances whose sleeps end at the same moment, in process.

Run:  .venv/bin/python tests/benchmarks/bench_wakeups.py [--instances 10000]
          [--store sqlite|postgres] [--lookahead 2 0] [--rounds 2] [--host-gc] [--no-gc]
          [--metrics] [--append] [--quick]

For each look-ahead (``Engine(lookahead=...)``; 0 claims each instance when it is due, as
before the look-ahead existed), in alternating rounds, on a new store each time: N
instances are created that sleep until one common instant far enough ahead for all of
them to be asleep (suspended) before it; each one's step after the sleep records how late
it started (its start minus the instant). Prints lateness p50 / p99 / max, wake-ups per
second (N / the last one's lateness), the time the collector took after the instant
(``gc.callbacks``) and the host's peak RSS. ``--host-gc`` sets the collector as
``durableflow serve`` does once it is ready (``host.tune_collector``: start-up's objects
frozen, higher thresholds), once all are asleep; without it, Python's defaults.
``--no-gc`` turns the cyclic collector off from then until the last wake-up, to tell
how much of the lateness it is. ``--metrics`` installs the observer a host installs
(Prometheus metrics); ``--append`` has the woken step also append its lateness to a file,
as ``bench_scale.py``'s did at first: the two differences between this and a host.

Figures, never pass/fail; run on a quiet machine. PostgreSQL: ``DURABLEFLOW_TEST_PG_DSN``
(a schema of its own per round, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from durableflow import CreateOptions, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.host import tune_collector
from durableflow_runtime.metrics import build_observer
from durableflow_runtime.store.base import Store
from durableflow_runtime.store.sqlite import SqliteStore

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
LATE: list[float] = []
#: the round's event loop's: set once ``EXPECTED`` instances have woken
WOKEN: dict[str, Any] = {"all": None, "expected": 0}
#: ``--append``: the file the woken step appends to (``None``: it does not)
APPEND: dict[str, Path | None] = {"to": None}


class Sleeper(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        wake_at: float = event.payload
        await step.sleep_until("nap", wake_at * 1000)

        async def woken() -> float:
            late = time.time() - wake_at
            if (path := APPEND["to"]) is not None:
                with path.open("a") as log:
                    log.write(f"{late}\n")
            LATE.append(late)
            if len(LATE) >= WOKEN["expected"]:
                WOKEN["all"].set()
            return late

        return await step.do("woken", woken)


def _store(kind: str) -> tuple[Store, str | None]:
    if kind == "sqlite":
        return SqliteStore(Path(tempfile.mkdtemp()) / "state.db"), None
    from durableflow_runtime.store.postgres import PostgresStore

    schema = f"bench_wake_{uuid.uuid4().hex[:10]}"
    return PostgresStore(PG_DSN, schema=schema), schema


async def _drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def one_round(
    kind: str, n: int, lookahead: float, freeze: bool, no_gc: bool = False, metrics: bool = False
) -> dict[str, float]:
    LATE.clear()
    WOKEN["all"], WOKEN["expected"] = asyncio.Event(), n
    store, schema = _store(kind)
    gc_seconds = [0.0, 0.0]
    defaults = gc.get_threshold()
    try:
        async with Engine(store, [WorkflowSpec("sleeper", Sleeper)], lookahead=lookahead) as e:
            workflow = e.bindings["sleeper"]
            if metrics:
                e.observer = build_observer(e)
            # created at about 10,000/s; asleep well before the instant, and long enough
            # before it that the look-ahead starts after the last one suspended
            wake_at = time.time() + n / 4_000 + lookahead + 3
            for start in range(0, n, 100):
                batch = [
                    CreateOptions(id=f"w{i}", params=wake_at)
                    for i in range(start, min(n, start + 100))
                ]
                await workflow.create_batch(batch)
            if freeze:
                tune_collector()
            if no_gc:
                gc.disable()

            def timed(phase: str, _info: dict[str, Any]) -> None:
                if time.time() < wake_at:
                    return
                if phase == "start":
                    gc_seconds[1] = time.perf_counter()
                elif gc_seconds[1]:  # a pass that started before the instant is not counted
                    gc_seconds[0] += time.perf_counter() - gc_seconds[1]
                    gc_seconds[1] = 0.0

            gc.callbacks.append(timed)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(WOKEN["all"].wait(), wake_at + 120 - time.time())
            finally:
                gc.callbacks.remove(timed)
                gc.enable()
                if freeze:
                    gc.unfreeze()
                    gc.set_threshold(*defaults)
            asleep_in_time = min(LATE, default=0.0) >= 0
    finally:
        if schema is not None:
            await _drop(schema)
    late = sorted(LATE)
    return {
        "woken": len(late),
        "p50_ms": late[len(late) // 2] * 1000,
        "p99_ms": late[min(len(late) - 1, int(len(late) * 0.99))] * 1000,
        "max_ms": late[-1] * 1000,
        "per_s": len(late) / max(late[-1], 1e-3),
        "gc_ms": gc_seconds[0] * 1000,
        "early": 0.0 if asleep_in_time else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--lookahead", type=float, nargs="+", default=[2.0, 0.0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--host-gc", action="store_true", help="the collector as a host sets it")
    parser.add_argument("--no-gc", action="store_true", help="the collector off at the instant")
    parser.add_argument("--metrics", action="store_true", help="a host's metrics observer")
    parser.add_argument("--append", action="store_true", help="the woken step appends to a file")
    parser.add_argument("--quick", action="store_true", help="1,000 instances, one round")
    args = parser.parse_args()
    n, rounds = (1_000, 1) if args.quick else (args.instances, args.rounds)
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:  # pragma: no cover - the host's default loop when it is there
        run = asyncio.run
    results: dict[float, list[dict[str, float]]] = {a: [] for a in args.lookahead}
    for r in range(rounds):
        for ahead in args.lookahead:
            if args.append:
                APPEND["to"] = Path(tempfile.mkdtemp()) / "woken.log"
            got = run(one_round(args.store, n, ahead, args.host_gc, args.no_gc, args.metrics))
            results[ahead].append(got)
            print(
                f"round {r + 1} {args.store} look-ahead {ahead:g} s: {got['woken']:,} woken,"
                f" p50 {got['p50_ms']:.0f} ms, p99 {got['p99_ms']:.0f} ms,"
                f" max {got['max_ms']:.0f} ms, {got['per_s']:,.0f}/s,"
                f" collector {got['gc_ms']:.0f} ms after the instant"
                + (" (a step ran before the instant!)" if got["early"] else ""),
                flush=True,
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.store}, {n:,} wake-ups at one instant, median of {rounds} round(s):")
    for ahead, runs in results.items():
        med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        print(
            f"  look-ahead {ahead:g} s: p50 {med['p50_ms']:.0f} ms, p99 {med['p99_ms']:.0f} ms,"
            f" {med['per_s']:,.0f} wake-ups/s, collector {med['gc_ms']:.0f} ms"
        )
    print(f"  peak RSS of this process: {rss:.0f} MiB")
    if any(x["woken"] < n for runs in results.values() for x in runs):
        sys.exit("not every instance woke within 120 s of the instant")


if __name__ == "__main__":
    main()
