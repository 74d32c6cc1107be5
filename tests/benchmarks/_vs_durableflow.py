"""durableflow's side of the DBOS comparison: one measurement per process.

Run by ``bench_dbos.py`` (see there); on its own:
``.venv/bin/python tests/benchmarks/_vs_durableflow.py sequential --store sqlite --url /tmp/x.db --n 20``.

Configuration: the engine's defaults (``max_concurrency=256``) on uvloop, as the host runs;
SQLite with its defaults (WAL, ``durability="normal"``, inline group commit); PostgreSQL
with the store's defaults (``lease_seconds=10``, ``LISTEN/NOTIFY``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.base import Store
from tests.benchmarks._vs_common import (
    READY_LINE,
    emit,
    latency_figures,
    lateness_figures,
    pg_fetchval,
    pg_schema_bytes,
    rss,
    sqlite_count,
    sqlite_used_bytes,
    wait_until,
    worker_args,
)
from tests.benchmarks._vs_common import run as run_loop


class Seen:
    """What this process's workflows did, counted where they run."""

    steps = 0
    lateness: list[float] = []


async def _noop() -> int:
    Seen.steps += 1
    return 1


class NoOps(WorkflowEntrypoint[Any, int]):
    """``payload`` no-op steps, one after the other."""

    async def run(self, event: WorkflowEvent[int], step: WorkflowStep) -> Any:
        total = 0
        for _ in range(event.payload):
            total += await step.do("s", _noop)
        return total


class Sleeper(WorkflowEntrypoint[Any, Any]):
    """Sleeps one hour, then does one step."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.sleep("nap", "1 hour")
        return await step.do("after", _noop)


class Waker(WorkflowEntrypoint[Any, float]):
    """Sleeps until ``payload`` (seconds since the epoch); the next step records how late."""

    async def run(self, event: WorkflowEvent[float], step: WorkflowStep) -> Any:
        wake_at = event.payload
        await step.sleep_until("nap", datetime.fromtimestamp(wake_at, UTC))

        async def record() -> float:
            late = time.time() - wake_at
            Seen.lateness.append(late)
            return late

        return await step.do("after", record)


class Waiter(WorkflowEntrypoint[Any, Any]):
    """Waits for one event of type ``go``."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        got = await step.wait_for_event("wait", "go", timeout="1 hour")
        return got.payload


SPECS = [
    WorkflowSpec("noops", NoOps),
    WorkflowSpec("sleeper", Sleeper),
    WorkflowSpec("waker", Waker),
    WorkflowSpec("waiter", Waiter),
]


def make_store(args: Any) -> Store:
    if args.store == "sqlite":
        from durableflow_runtime.store.sqlite import SqliteStore

        return SqliteStore(args.url)
    from durableflow_runtime.store.postgres import PostgresStore

    return PostgresStore(args.url, lease_seconds=args.lease_seconds or None)


class Counter:
    """Counts instances reaching a status, and wakes whoever waits for a number of them."""

    def __init__(self, engine: Engine) -> None:
        self.counts: dict[str, int] = {}
        self.times: dict[str, float] = {}
        self._want: tuple[str, int, asyncio.Event] | None = None
        engine.add_listener(self._seen)

    def _seen(self, workflow: str, id: str, status: str | None) -> None:
        if status is None:
            return
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == "complete":
            self.times[id] = time.perf_counter()
        want = self._want
        if want is not None and want[0] == status and self.counts[status] >= want[1]:
            want[2].set()

    async def wait_for(self, status: str, count: int, timeout: float) -> bool:
        if self.counts.get(status, 0) >= count:
            return True
        event = asyncio.Event()
        self._want = (status, count, event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._want = None


async def create_all(engine: Engine, workflow: str, params: list[Any]) -> list[str]:
    """Create one instance per entry of ``params``, 100 (the batch limit) at a time."""
    ids: list[str] = []
    for first in range(0, len(params), 100):
        ids += await engine.create(workflow, [(None, p) for p in params[first : first + 100]])
    return ids


async def store_bytes(args: Any) -> int:
    if args.store == "sqlite":
        return sqlite_used_bytes(args.url)
    return await pg_schema_bytes(args.url, "public")


async def warm_up(engine: Engine, counter: Counter, count: int) -> None:
    """Run a few instances so lazy imports and caches are paid before measuring."""
    await create_all(engine, "noops", [2] * count)
    await counter.wait_for("complete", count, 60)
    counter.counts.clear()
    counter.times.clear()


async def scenario(args: Any) -> dict[str, Any]:
    engine = Engine(make_store(args), SPECS)
    await engine.start()
    counter = Counter(engine)
    n = args.n
    try:
        await warm_up(engine, counter, args.warmup)
        if args.scenario == "sequential":
            start = time.perf_counter()
            for _ in range(n):
                [iid] = await engine.create("noops", [(None, args.steps)])
                assert await engine.result("noops", iid, timeout=300) == args.steps
            seconds = time.perf_counter() - start
            return {"seconds": seconds, "instances": n, "steps": n * args.steps}

        if args.scenario == "concurrent":
            start = time.perf_counter()
            await create_all(engine, "noops", [args.steps] * n)
            assert await counter.wait_for("complete", n, 900), "instances did not complete"
            seconds = time.perf_counter() - start
            return {"seconds": seconds, "instances": n, "steps": n * args.steps}

        if args.scenario == "sleepers":
            bytes_before = await store_bytes(args)
            rss_before = rss()
            start = time.perf_counter()
            await create_all(engine, "sleeper", [None] * n)
            created = time.perf_counter() - start
            ok = await counter.wait_for("waiting", n, 900)
            seconds = time.perf_counter() - start
            reached = counter.counts.get("waiting", 0)
            rss_after = rss()
            await engine.stop()
            bytes_after = await store_bytes(args)
            return {
                "instances": reached,
                "complete": ok,
                "create_seconds": created,
                "seconds": seconds,
                "rss_growth": rss_after - rss_before,
                "rss_before": rss_before,
                "store_growth": bytes_after - bytes_before,
            }

        if args.scenario == "wakeups":
            wake_at = time.time() + args.margin
            await create_all(engine, "waker", [wake_at] * n)
            asleep = await counter.wait_for("waiting", n, max(0.0, wake_at - time.time()))
            late_start = (not asleep) or time.time() > wake_at
            done = await counter.wait_for("complete", n, args.margin + 600)
            result: dict[str, Any] = {
                "instances": n,
                "asleep_before_wake": counter.counts.get("waiting", 0),
                "invalid": late_start or not done,
            }
            result.update(lateness_figures(Seen.lateness))
            return result

        if args.scenario == "events":
            ids = await create_all(engine, "waiter", [None] * n)
            assert await counter.wait_for("waiting", n, 600), "instances did not reach the wait"
            sent: dict[str, float] = {}
            start = time.perf_counter()
            for iid in ids:
                sent[iid] = time.perf_counter()
                await engine.send_event("waiter", iid, "go", 1)
            assert await counter.wait_for("complete", n, 600), "instances did not complete"
            seconds = time.perf_counter() - start
            result = {"instances": n, "seconds": seconds}
            result.update(latency_figures([counter.times[i] - sent[i] for i in ids]))
            return result
        raise SystemExit(f"unknown scenario {args.scenario}")
    finally:
        await engine.stop()


async def recovery_crash(args: Any) -> None:
    """Create the instances, let them run a little, say READY and wait for the kill -9."""
    engine = Engine(make_store(args), SPECS)
    await engine.start()
    await create_all(engine, "noops", [args.steps] * args.n)
    # Killed once a tenth of the steps ran: most instances are mid-way or queued.

    async def tenth_done() -> bool:
        return bool(Seen.steps >= args.n * args.steps // 10)

    await wait_until(tenth_done, 900, every=0.001)
    print(READY_LINE, flush=True)
    await asyncio.sleep(3600)


async def complete_count(args: Any) -> int:
    sql = "SELECT count(*) FROM instances WHERE status = 'complete'"
    if args.store == "sqlite":
        return sqlite_count(args.url, sql)
    return int(await pg_fetchval(args.url, sql))


async def recovery_restart(args: Any) -> dict[str, Any]:
    """Start again on the same store; report once every instance is complete."""
    left_at_start = args.n - await complete_count(args)
    engine = Engine(make_store(args), SPECS)
    await engine.start()
    counter = Counter(engine)
    ok = await counter.wait_for("complete", left_at_start, 900)
    done = await complete_count(args)
    await engine.stop()
    return {"incomplete_at_restart": left_at_start, "complete": done, "ok": ok and done == args.n}


def main() -> None:
    args = worker_args()
    if args.scenario == "recovery-crash":
        run_loop(recovery_crash(args), args.loop)
        return

    async def go() -> None:
        if args.scenario == "recovery-restart":
            result = await recovery_restart(args)
        else:
            result = await scenario(args)
        result["loop"] = args.loop
        result["pid"] = os.getpid()
        emit(result)

    run_loop(go(), args.loop)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
