"""DBOS Transact's side of the comparison: one measurement per process.

Run by ``bench_dbos.py`` (see there); on its own:
``.venv/bin/python tests/benchmarks/_vs_dbos.py sequential --store sqlite --url /tmp/x.sqlite --n 20``.

Workflows and steps are ``async def`` (as durableflow's are), started with
``DBOS.start_workflow_async`` or awaited directly, on uvloop (the same loop durableflow
runs on). Configurations (``--config``):

* ``default``: DBOS's defaults: on SQLite, its own engine (rollback journal, which
  SQLite runs with ``synchronous=FULL``: an fsync per commit);
* ``tuned``: ``max_executor_threads=32`` (DBOS's executor is unbounded by default); on
  SQLite also DBOS's ``system_database_engine`` option, given an engine that sets
  ``journal_mode=WAL`` and ``synchronous=NORMAL`` (the durability durableflow's default
  has: a process crash loses nothing, a power loss may lose the last commits) and
  otherwise what DBOS's own engine has (``BEGIN IMMEDIATE``, ``busy_timeout``, foreign
  keys, a pool of 20 connections).

Log level ``WARNING`` everywhere, so neither side pays for log lines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from dbos import DBOS, DBOSConfig

from tests.benchmarks._vs_common import (
    READY_LINE,
    emit,
    latency_figures,
    lateness_figures,
    log,
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
    asleep = 0
    waiting = 0
    lateness: list[float] = []


@DBOS.step()
async def noop() -> int:
    Seen.steps += 1
    return 1


@DBOS.workflow()
async def noops(steps: int) -> int:
    total = 0
    for _ in range(steps):
        total += await noop()
    return total


@DBOS.step()
def noop_sync() -> int:
    Seen.steps += 1
    return 1


@DBOS.workflow()
def noops_sync(steps: int) -> int:
    total = 0
    for _ in range(steps):
        total += noop_sync()
    return total


@DBOS.workflow()
async def sleeper() -> int:
    Seen.asleep += 1
    await DBOS.sleep_async(3600)
    return await noop()


@DBOS.step()
async def record_lateness(wake_at: float) -> float:
    late = time.time() - wake_at
    Seen.lateness.append(late)
    return late


@DBOS.workflow()
async def waker(wake_at: float) -> float:
    Seen.asleep += 1
    await DBOS.sleep_async(wake_at - time.time())
    return await record_lateness(wake_at)


@DBOS.workflow()
async def waiter() -> Any:
    Seen.waiting += 1
    return await DBOS.recv_async("go", timeout_seconds=3600)


def configure(args: Any) -> None:
    url = f"sqlite:///{args.url}" if args.store == "sqlite" else args.url
    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    if args.config == "tuned":
        # One executor thread per pooled connection: async workflows reach the database
        # through asyncio.to_thread on this executor, and without a bound thousands of
        # simultaneous wake-ups start thousands of threads that queue for 20 connections.
        config["max_executor_threads"] = EXECUTOR_THREADS
        if args.store == "sqlite":
            config["system_database_engine"] = wal_engine(url)
    DBOS(config=config)


EXECUTOR_THREADS = 32


def wal_engine(url: str) -> Any:
    """A SQLAlchemy engine for DBOS's system database in WAL mode, synchronous=NORMAL."""
    import sqlalchemy as sa
    from sqlalchemy import event

    # the pool DBOS gives its own engine (dbos/_dbos_config.py)
    engine = sa.create_engine(
        url, pool_size=20, max_overflow=0, pool_timeout=30, pool_pre_ping=True
    )

    @event.listens_for(engine, "connect")
    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # as DBOS's own engine
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def table(args: Any, name: str) -> str:
    return name if args.store == "sqlite" else f"dbos.{name}"


async def count(args: Any, sql: str) -> int:
    if args.store == "sqlite":
        return await asyncio.to_thread(sqlite_count, args.url, sql)
    return int(await pg_fetchval(args.url, sql))


async def store_bytes(args: Any) -> int:
    if args.store == "sqlite":
        return await asyncio.to_thread(sqlite_used_bytes, args.url)
    return await pg_schema_bytes(args.url, "dbos")


async def start_many(fn: Any, params: list[Any], deadline: float | None = None) -> list[Any]:
    """Start one workflow per entry of ``params``, 100 at a time (all at once within a
    hundred), until ``deadline`` (``time.monotonic()``) passes."""
    handles: list[Any] = []
    for first in range(0, len(params), 100):
        if deadline is not None and time.monotonic() > deadline:
            break
        handles += await asyncio.gather(
            *(DBOS.start_workflow_async(fn, *p) for p in params[first : first + 100])
        )
    return handles


async def warm_up(count: int) -> None:
    for _ in range(count):
        assert await noops(2) == 2
    await asyncio.to_thread(lambda: [noops_sync(2) for _ in range(max(1, count // 4))])


def sequential_sync(n: int, steps: int) -> float:
    """Seconds for ``n`` synchronous workflows called one after the other (from a thread)."""
    start = time.perf_counter()
    for _ in range(n):
        assert noops_sync(steps) == steps
    return time.perf_counter() - start


def concurrent_sync(n: int, steps: int) -> float:
    """Seconds for ``n`` synchronous workflows started at once (DBOS runs each on a thread)."""
    start = time.perf_counter()
    handles = [DBOS.start_workflow(noops_sync, steps) for _ in range(n)]
    results = [h.get_result() for h in handles]
    seconds = time.perf_counter() - start
    assert results == [steps] * n
    return seconds


async def scenario(args: Any) -> dict[str, Any]:
    configure(args)
    DBOS.launch()
    n = args.n
    await warm_up(args.warmup)
    if args.scenario == "sequential" and args.style == "sync":
        seconds = await asyncio.to_thread(sequential_sync, n, args.steps)
        return {"seconds": seconds, "instances": n, "steps": n * args.steps}

    if args.scenario == "sequential":
        start = time.perf_counter()
        for _ in range(n):
            assert await noops(args.steps) == args.steps
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "instances": n, "steps": n * args.steps}

    if args.scenario == "concurrent" and args.style == "sync":
        seconds = await asyncio.to_thread(concurrent_sync, n, args.steps)
        return {"seconds": seconds, "instances": n, "steps": n * args.steps}

    if args.scenario == "concurrent":
        start = time.perf_counter()
        handles = await start_many(noops, [(args.steps,)] * n)
        results = await asyncio.gather(*(h.get_result() for h in handles))
        seconds = time.perf_counter() - start
        assert results == [args.steps] * n
        return {"seconds": seconds, "instances": n, "steps": n * args.steps}

    if args.scenario == "sleepers":
        bytes_before = await store_bytes(args)
        rss_before = rss()
        start = time.perf_counter()
        handles = await start_many(sleeper, [()] * n, time.monotonic() + args.cap)
        created = time.perf_counter() - start
        started = len(handles)
        sql = (
            f"SELECT count(*) FROM {table(args, 'operation_outputs')} "
            "WHERE function_name = 'DBOS.sleep'"
        )

        async def all_recorded() -> bool:
            return await count(args, sql) >= started

        await wait_until(all_recorded, 120, every=0.05)
        recorded = await count(args, sql)
        seconds = time.perf_counter() - start
        rss_after = rss()
        bytes_after = await store_bytes(args)
        log(f"{started} started in {created:.1f}s, {recorded} sleeps recorded after {seconds:.1f}s")
        return {
            "instances": recorded,
            "started": started,
            "complete": recorded == n,
            "create_seconds": created,
            "seconds": seconds,
            "rss_growth": rss_after - rss_before,
            "rss_before": rss_before,
            "store_growth": bytes_after - bytes_before,
        }

    if args.scenario == "wakeups":
        wake_at = time.time() + args.margin
        handles = await start_many(waker, [(wake_at,)] * n, time.monotonic() + args.margin - 1)
        started = len(handles)

        async def all_asleep() -> bool:
            return Seen.asleep >= started

        await wait_until(all_asleep, wake_at - time.time(), every=0.005)
        late_start = time.time() > wake_at or Seen.asleep < started
        results = await asyncio.wait_for(
            asyncio.gather(*(h.get_result() for h in handles)), args.margin + 900
        )
        assert len(results) == started
        result: dict[str, Any] = {
            "instances": started,
            "asleep_before_wake": Seen.asleep,
            "invalid": late_start,
        }
        result.update(lateness_figures(Seen.lateness))
        return result

    if args.scenario == "events":
        handles = await start_many(waiter, [()] * n)

        async def all_waiting() -> bool:
            return Seen.waiting >= n

        assert await wait_until(all_waiting, 600), "workflows did not reach recv"
        # recv is past its first check once the workflow has recorded nothing more for a
        # moment; DBOS gives no signal for "is waiting", so let it settle.
        await asyncio.sleep(1.0)
        done: dict[str, float] = {}

        async def finished(handle: Any) -> None:
            await handle.get_result()
            done[handle.get_workflow_id()] = time.perf_counter()

        watchers = [asyncio.ensure_future(finished(h)) for h in handles]
        sent: dict[str, float] = {}
        start = time.perf_counter()
        for h in handles:
            wid = h.get_workflow_id()
            sent[wid] = time.perf_counter()
            await DBOS.send_async(wid, 1, topic="go")
        await asyncio.wait_for(asyncio.gather(*watchers), 900)
        seconds = time.perf_counter() - start
        result = {"instances": n, "seconds": seconds}
        result.update(latency_figures([done[w] - sent[w] for w in sent]))
        return result
    raise SystemExit(f"unknown scenario {args.scenario}")


async def recovery_crash(args: Any) -> None:
    """Start the workflows, let them run a little, say READY and wait for the kill -9."""
    configure(args)
    DBOS.launch()
    await start_many(noops, [(args.steps,)] * args.n)

    async def tenth_done() -> bool:
        return Seen.steps >= args.n * args.steps // 10

    await wait_until(tenth_done, 900, every=0.001)
    print(READY_LINE, flush=True)
    await asyncio.sleep(3600)


async def recovery_restart(args: Any) -> dict[str, Any]:
    """Launch again on the same database (DBOS recovers pending workflows at launch)."""
    sql = (
        f"SELECT count(*) FROM {table(args, 'workflow_status')} "
        "WHERE status = 'SUCCESS' AND name LIKE '%noops'"
    )
    left_at_start = args.n - await count(args, sql)
    configure(args)
    DBOS.launch()

    async def all_done() -> bool:
        return await count(args, sql) >= args.n

    await wait_until(all_done, 900)
    done = await count(args, sql)
    return {"incomplete_at_restart": left_at_start, "complete": done, "ok": done == args.n}


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
        # Tearing down thousands of sleeping workflows measures nothing: leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    run_loop(go(), args.loop)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
