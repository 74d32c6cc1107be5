"""PostgreSQL benchmark: per-step overhead and throughput, one and two hosts, beside SQLite.

Run:  .venv/bin/python tests/benchmarks/bench_postgres.py [--quick] [--instances N]

Needs a PostgreSQL server (``DURABLEFLOW_TEST_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``); works in a fresh schema it drops at the end.
Prints, measured in this one run on this machine:

  * a sequential instance (one step after the other): time per step, SQLite and PostgreSQL,
    and the PostgreSQL statements (round trips) per step, by kind: every statement the
    store's connections send is counted through asyncpg's query loggers (``BEGIN`` and
    ``COMMIT`` included; a pipelined ``executemany`` counts once);
  * a host process killed with -9 while it runs 100 instances and started again, under
    the same host id (it takes back its leases at once) and under another (the instances
    wait until their leases expire): seconds from the kill until every instance resumed;
  * N instances x 10 no-op steps started at once: instances/s and steps/s for SQLite (one
    host), PostgreSQL with one host in this process, and PostgreSQL with one and with two
    host processes on the same database (this process only creates the instances and
    counts the completed ones);
  * the reference for that case: the raw pipelined asyncpg insert rate of the same rows
    (the instance and step rows the in-process PostgreSQL run just wrote, read back and
    written again into a fresh schema of the store's migrations: ``executemany`` of
    ``--raw-batch`` rows, each one transaction, over a pool of ``--raw-connections``
    connections at once, ``synchronous_commit`` as the server has it, as the store leaves
    it), and durableflow's PostgreSQL rates as a share of it.

Figures, not pass/fail: the database server, the hosts and this process share the machine.
``--loop uvloop`` (the default when uvloop is installed, as the host runs) or ``asyncio``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store._flow import queued_run_at
from durableflow_runtime.store.base import NewInstance, Store
from durableflow_runtime.store.postgres import PostgresStore
from durableflow_runtime.store.sqlite import SqliteStore

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
STEPS = 10
T = TypeVar("T")


async def _noop() -> int:
    return 1


class NoOps(WorkflowEntrypoint[Any, int]):
    """``payload`` no-op steps, one after the other."""

    async def run(self, event: WorkflowEvent[int], step: WorkflowStep) -> Any:
        total = 0
        for _ in range(event.payload):
            total += await step.do("s", _noop)
        return total


class Slow(WorkflowEntrypoint[Any, int]):
    """``payload`` steps of 0.2 s each: instances still running when their host is killed."""

    async def run(self, event: WorkflowEvent[int], step: WorkflowStep) -> Any:
        async def slow() -> int:
            await asyncio.sleep(0.2)
            return 1

        total = 0
        for _ in range(event.payload):
            total += await step.do("s", slow)
        return total


SPECS = [WorkflowSpec("noops", NoOps), WorkflowSpec("slow", Slow)]


class RoundTrips:
    """Counts the statements sent on the connections of the pools made while active."""

    def __init__(self) -> None:
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.counting = True
        self._real = asyncpg.create_pool

    def __enter__(self) -> RoundTrips:
        real = self._real

        def counting_pool(*args: Any, **kwargs: Any) -> Any:
            given = kwargs.pop("init", None)

            async def init(conn: Any) -> None:
                conn.add_query_logger(self._log)
                if given is not None:
                    await given(conn)

            return real(*args, init=init, **kwargs)

        asyncpg.create_pool = counting_pool
        return self

    def __exit__(self, *exc: object) -> None:
        asyncpg.create_pool = self._real

    def _log(self, record: Any) -> None:
        if self.counting:
            self.by_kind[_kind(record.query)] += 1

    def total(self) -> int:
        return sum(self.by_kind.values())


def _kind(query: str) -> str:
    """A statement's first words, enough to tell the statements of the store apart."""
    words = " ".join(query.split()).split(" ")
    if words[0].upper() == "WITH":
        for keyword in ("UPDATE", "INSERT", "DELETE"):
            if keyword in words[3:]:
                return f"WITH ... {keyword} {words[words.index(keyword, 3) + 1]}"
    return " ".join(words[:4])[:60]


def pg_store(schema: str, host_id: str | None = None) -> PostgresStore:
    return PostgresStore(PG_DSN, schema=schema, poll_interval=1.0, host_id=host_id)


async def run_in_process(
    store: Store, instances: int, steps: int, trips: RoundTrips | None = None
) -> float:
    """Seconds for one in-process engine to run ``instances`` instances of ``steps`` steps
    (``trips``: counts the statements from the first create to the last completion)."""
    engine = Engine(store, SPECS, max_concurrency=512)
    await engine.start()
    done = asyncio.Event()
    finished = 0

    def count(_wf: str, _id: str, status: str | None) -> None:
        nonlocal finished
        if status == "complete":
            finished += 1
            if finished == instances:
                done.set()

    engine.add_listener(count)
    try:
        if trips is not None:
            trips.by_kind.clear()
        start = time.perf_counter()
        for first in range(0, instances, 100):
            batch = [(f"i{n}", steps) for n in range(first, min(first + 100, instances))]
            await engine.create("noops", batch)
        await asyncio.wait_for(done.wait(), 600)
        if trips is not None:
            trips.counting = False
        return time.perf_counter() - start
    finally:
        await engine.stop()


async def one_at_a_time(store: Store, instances: int, steps: int, trips: RoundTrips) -> float:
    """Seconds for one engine to run ``instances`` instances, each created once the one
    before completed (``trips`` counts from the first create to the last completion)."""
    engine = Engine(store, SPECS, max_concurrency=512)
    await engine.start()
    done = asyncio.Event()
    engine.add_listener(lambda _w, _i, status: done.set() if status == "complete" else None)
    try:
        trips.by_kind.clear()
        start = time.perf_counter()
        for n in range(instances):
            done.clear()
            await engine.create("noops", [(f"o{n}", steps)])
            await asyncio.wait_for(done.wait(), 60)
        trips.counting = False
        return time.perf_counter() - start
    finally:
        await engine.stop()


async def run_hosts(schema: str, hosts: int, instances: int, steps: int) -> float:
    """Seconds for ``hosts`` host processes to run the instances this process creates."""
    procs = []
    try:
        for n in range(hosts):
            procs.append(await start_host_process(schema, f"bench-{n}"))
        store = pg_store(schema, "bench-client")
        await store.open()
        db = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        try:
            start = time.perf_counter()
            now = time.time()
            for first in range(0, instances, 100):
                await store.create_instances(
                    [
                        NewInstance("noops", f"i{n}", str(steps).encode(), now)
                        for n in range(first, min(first + 100, instances))
                    ]
                )
            while True:
                done = await db.fetchval("SELECT count(*) FROM instances WHERE status = 'complete'")
                if done == instances:
                    return time.perf_counter() - start
                await asyncio.sleep(0.02)
        finally:
            await db.close()
            await store.close()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await proc.communicate()


async def start_host_process(schema: str, host_id: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "serve",
        "--schema",
        schema,
        "--host-id",
        host_id,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    return proc


async def restart(schema: str, host_id: str, instances: int = 100) -> tuple[float, float]:
    """A host process runs ``instances`` slow instances, is killed with -9 and started
    again (under the same host id, or another); seconds from the kill until every
    instance has stored a step more than it had at the kill (a 0.2 s step included), and
    of those, the seconds the new process took to start (Python's imports, the store's
    opening)."""
    proc = await start_host_process(schema, "bench-r")
    store = pg_store(schema, "bench-client")
    await store.open()
    db = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    steps_sql = "SELECT instance, count(*) FROM steps GROUP BY instance"
    try:
        now = time.time()
        await store.create_instances(
            [NewInstance("slow", f"r{n}", b"40", now) for n in range(instances)]
        )
        while True:  # every instance has a step stored: all are running
            if len(await db.fetch(steps_sql)) == instances:
                break
            await asyncio.sleep(0.05)
        proc.kill()
        await proc.wait()
        killed = time.perf_counter()
        at_kill: dict[int, int] = {r[0]: r[1] for r in await db.fetch(steps_sql)}
        proc = await start_host_process(schema, host_id)
        ready = time.perf_counter() - killed
        while True:
            now_counts: dict[int, int] = {r[0]: r[1] for r in await db.fetch(steps_sql)}
            if all(now_counts[k] > at_kill[k] for k in at_kill):
                return time.perf_counter() - killed, ready
            await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.communicate()
        await db.close()
        await store.close()


#: The columns ``create`` fills (the PostgreSQL store's ``INSERT INTO instances``).
_INSTANCE_COLUMNS = (
    "workflow, id, status, params, created_at, run_at, trace, parent, priority,"
    " concurrency_key, version"
)
_STEP_COLUMNS = (
    "instance, name, count, seq, type, status, attempts, attempt_log, output, error,"
    " started_at, ended_at, wake_at, config, host"
)
_CLAIM = (
    "UPDATE instances SET status = 'running', run_at = NULL, wait_types = NULL,"
    " epoch = epoch + 1, started_at = coalesce(started_at, $1), owner = 'raw',"
    " lease_expires = now() + interval '30 seconds' WHERE key = $2"
)
_FINISH = (
    "UPDATE instances SET status = $1, output = $2, error = $3, ended_at = $4, run_at = NULL,"
    " wait_types = NULL, pause_requested = false, rollback_to = NULL, owner = NULL,"
    " lease_expires = NULL WHERE key = $5"
)


class Written:
    """The rows a durableflow run left in a schema: per instance, the values ``create``
    inserted (the 11 of ``_INSTANCE_COLUMNS``, ``status`` as ``queued``), then its key,
    start, final status, output, error and end; and every step row."""

    def __init__(self) -> None:
        self.instances: list[tuple[Any, ...]] = []
        self.steps: list[tuple[Any, ...]] = []

    async def read(self, schema: str) -> None:
        db = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        try:
            self.instances = [
                (*r[:2], "queued", *r[3:5], queued_run_at(r[4], r[8]), *r[6:])
                for r in await db.fetch(
                    f"SELECT {_INSTANCE_COLUMNS}, key, started_at, status, output, error,"
                    " ended_at FROM instances ORDER BY key"
                )
            ]
            self.steps = [
                tuple(r)
                for r in await db.fetch(f"SELECT {_STEP_COLUMNS} FROM steps ORDER BY seq, instance")
            ]
        finally:
            await db.close()


async def raw_inserts(schema: str, rows: Written, batch: int, connections: int) -> float:
    """Seconds to write ``rows`` into ``schema`` (made by the store's migrations) with plain
    asyncpg: the instances 100 per ``executemany`` (as the benchmark creates them), then
    their claims, their steps and their ends, ``batch`` rows per ``executemany``; each
    ``executemany`` is pipelined and one transaction, and ``connections`` of them run at
    once, one per connection of the pool."""
    store = pg_store(schema, "bench-raw")
    await store.open()  # the schema, as the store migrates it
    await store.close()
    pool = await asyncpg.create_pool(
        PG_DSN,
        min_size=connections,
        max_size=connections,
        server_settings={"search_path": schema},
    )
    marks = ", ".join(f"${n}" for n in range(1, 12))
    insert_instance = f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES ({marks})"
    insert_step = (
        f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES ({', '.join(f'${n}' for n in range(1, 16))})"
    )

    async def run(sql: str, all_rows: list[tuple[Any, ...]], size: int) -> None:
        chunks = [all_rows[i : i + size] for i in range(0, len(all_rows), size)]

        async def worker() -> None:
            async with pool.acquire() as conn:
                while chunks:
                    await conn.executemany(sql, chunks.pop(0))

        await asyncio.gather(*(worker() for _ in range(connections)))

    instances = rows.instances
    try:
        start = time.perf_counter()
        for first in range(0, len(instances), 100):  # one create after the other
            async with pool.acquire() as conn:
                await conn.executemany(
                    insert_instance, [r[:11] for r in instances[first : first + 100]]
                )
        await run(_CLAIM, [(r[12], r[11]) for r in instances], batch)
        await run(insert_step, rows.steps, batch)
        await run(_FINISH, [(*r[13:17], r[11]) for r in instances], batch)
        return time.perf_counter() - start
    finally:
        await pool.close()


async def fresh_schema(fn: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        return await fn(schema)
    finally:
        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def bench(args: argparse.Namespace) -> None:
    print(f"event loop: {args.loop}; PostgreSQL: {PG_DSN}")
    conn = await asyncpg.connect(PG_DSN)
    version = await conn.fetchval("SHOW server_version")
    sync = await conn.fetchval("SHOW synchronous_commit")
    await conn.close()
    print(f"PostgreSQL {version}, synchronous_commit={sync}; {os.cpu_count()} CPUs shared\n")

    seq = 200 if args.quick else 1000
    print(f"sequential instance, {seq} steps (per-step overhead, one at a time):")
    with tempfile.TemporaryDirectory() as tmp:
        t = await run_in_process(SqliteStore(Path(tmp) / "s.db"), 1, seq)
    print(f"  SQLite       {t / seq * 1e6:8.0f} us/step")
    with RoundTrips() as trips:
        t = await fresh_schema(lambda s: run_in_process(pg_store(s), 1, seq, trips))
    print(f"  PostgreSQL   {t / seq * 1e6:8.0f} us/step")
    show_round_trips(trips, seq, "the sequential instance, create to completion")

    n = args.instances or (300 if args.quick else 2000)
    print(f"\n{n} instances x {STEPS} no-op steps, started at once:")

    def line(label: str, seconds: float) -> None:
        print(f"  {label:<36} {n / seconds:8.0f} instances/s {n * STEPS / seconds:9.0f} steps/s")

    with tempfile.TemporaryDirectory() as tmp:
        line(
            "SQLite, one host (in process)",
            await run_in_process(SqliteStore(Path(tmp) / "t.db"), n, STEPS),
        )
    written = Written()

    async def in_process(schema: str) -> float:
        seconds = await run_in_process(pg_store(schema), n, STEPS, trips)
        await written.read(schema)
        return seconds

    with RoundTrips() as trips:
        seconds = await fresh_schema(in_process)
    rates = {"PostgreSQL, one host (in process)": seconds}
    line("PostgreSQL, one host (in process)", seconds)
    raw = await fresh_schema(
        lambda s: raw_inserts(s, written, args.raw_batch, args.raw_connections)
    )
    assert len(written.steps) == n * STEPS, len(written.steps)
    for label, hosts in (
        ("PostgreSQL, one host process", 1),
        ("PostgreSQL, two host processes", 2),
    ):
        rates[label] = await fresh_schema(
            functools.partial(run_hosts, hosts=hosts, instances=n, steps=STEPS)
        )
        line(label, rates[label])
    print(
        f"  raw asyncpg executemany of the same rows ({args.raw_batch} rows each,"
        f" {args.raw_connections} connections at once)   {n * STEPS / raw:9.0f} steps/s"
    )
    for label, seconds in rates.items():
        print(f"    {label:<36} {raw / seconds:5.2f}x the raw insert rate")
    print()
    show_round_trips(trips, n * STEPS, f"{n} x {STEPS} at once, one host in process")
    print("\na host process killed with -9 mid-run (100 instances), then started again:")
    for label, host_id in (("under the same host id", "bench-r"), ("under another", "bench-o")):
        seconds, ready = await fresh_schema(functools.partial(restart, host_id=host_id))
        print(
            f"  {label:<24} {seconds:6.2f} s from the kill until every instance resumed"
            f" ({ready:.2f} s of it starting the new process)"
        )
    seq_small = 20
    print(f"\n{seq_small} instances x {STEPS} no-op steps, one after the other:")
    with RoundTrips() as trips:
        t = await fresh_schema(lambda s: one_at_a_time(pg_store(s), seq_small, STEPS, trips))
    print(f"  PostgreSQL   {t / seq_small * 1e3:8.2f} ms/instance")
    show_round_trips(trips, seq_small * STEPS, "one instance at a time")


def show_round_trips(trips: RoundTrips, steps: int, what: str) -> None:
    print(f"  PostgreSQL round trips per step, {what}: {trips.total() / steps:.2f}")
    for kind, count in trips.by_kind.most_common():
        if count / steps >= 0.005:
            print(f"    {count / steps:6.3f}  {kind}")


async def serve(args: argparse.Namespace) -> None:
    engine = Engine(pg_store(args.schema, args.host_id), SPECS, max_concurrency=512)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await engine.start()
    print("ready", flush=True)
    await stop.wait()
    await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--instances", type=int, default=0)
    parser.add_argument(
        "--raw-batch", type=int, default=500, help="rows per executemany of the raw reference"
    )
    parser.add_argument(
        "--raw-connections", type=int, default=4, help="connections the raw reference writes on"
    )
    parser.add_argument("--schema", default="")
    parser.add_argument("--host-id", default="")
    try:
        import uvloop

        default_loop = "uvloop"
    except ImportError:
        default_loop = "asyncio"
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop)
    args = parser.parse_args()
    coro = bench(args) if args.mode == "bench" else serve(args)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
