"""Core benchmark: per-step overhead and concurrent throughput, beside bare SQLite.

Run:  .venv/bin/python tests/benchmarks/bench_core.py [--quick]

Prints, measured in this one run on this machine:
  * the physical reference: a bare SQLite WAL ``INSERT + COMMIT`` loop, and the cost of
    handing a commit to a writer thread and back;
  * a 1,000-step sequential instance: time per step, for each commit mode;
  * 2,000 instances x 10 no-op steps started at once: instances/s and steps/s;
  * the reference for that concurrent case: the raw group-commit rate of the same rows
    (the instance and step rows the durableflow run just wrote, read back from its file
    and written again with plain ``sqlite3`` into the same schema, WAL,
    ``synchronous=NORMAL``, one transaction and one ``executemany`` per kind of row per
    batch of ``--raw-batch`` steps), and durableflow's concurrent rate as a share of it.
Figures, not pass/fail: compare the ratios. ``--loop uvloop`` (the default when uvloop is
installed, as the host runs) or ``--loop asyncio``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store._flow import queued_run_at
from durableflow_runtime.store._rows import STEP_COLUMNS
from durableflow_runtime.store.sqlite import SqliteStore
from durableflow_runtime.store.sqlite._schema import migrate

#: What watches the engine (``--observe``): nothing, as the default engine; the host's
#: Prometheus metrics; or metrics and OpenTelemetry spans (to a provider with no exporter,
#: so the figure is the spans' own cost).
OBSERVE = "off"


def _observed(engine: Engine) -> Engine:
    if OBSERVE == "off":
        return engine
    from durableflow_runtime.metrics import Metrics, Observers

    metrics = Metrics(engine)
    if OBSERVE == "metrics":
        engine.observer = metrics
    else:
        from opentelemetry.sdk.trace import TracerProvider

        from durableflow_runtime.tracing import Tracing

        engine.observer = Observers([metrics, Tracing(engine, TracerProvider())])
    return engine


async def _noop() -> int:
    return 1


class Sequential(WorkflowEntrypoint[Any, int]):
    async def run(self, event: WorkflowEvent[int], step: WorkflowStep) -> Any:
        total = 0
        for i in range(event.payload):
            total += await step.do(f"s{i}", _noop)
        return total


def bare_commit_loop(path: Path, n: int) -> float:
    """Seconds per INSERT + COMMIT, WAL, synchronous=NORMAL (what the store uses)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, "x" * 40))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / n


async def thread_handoff(path: Path, n: int) -> float:
    """Seconds per INSERT + COMMIT done on a writer thread, awaited from the event loop."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def commit(i: int) -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, "x" * 40))
        conn.execute("COMMIT")

    start = time.perf_counter()
    for i in range(n):
        await loop.run_in_executor(pool, commit, i)
    elapsed = time.perf_counter() - start
    pool.shutdown()
    conn.close()
    return elapsed / n


#: The columns ``create`` fills (the SQLite store's ``INSERT INTO instances``).
_INSTANCE_COLUMNS = (
    "workflow, id, status, params, created_at, run_at, trace, parent, priority,"
    " concurrency_key, version"
)
_CLAIM = (
    "UPDATE instances SET status = 'running', run_at = NULL, wait_types = NULL,"
    " epoch = epoch + 1, started_at = coalesce(started_at, ?) WHERE key = ?"
)
_FINISH = (
    "UPDATE instances SET status = ?, output = ?, error = ?, ended_at = ?, run_at = NULL,"
    " wait_types = NULL, pause_requested = 0, rollback_to = NULL WHERE key = ?"
)


def rows_written(path: Path) -> tuple[list[tuple[Any, ...]], list[list[tuple[Any, ...]]]]:
    """The rows a durableflow run left in ``path``: per instance, the values ``create``
    inserted (the 11 of ``_INSTANCE_COLUMNS``), then its key, start, final status, output,
    error and end; and per instance, its step rows in order."""
    conn = sqlite3.connect(path)
    instances = [
        (*row[:2], "queued", *row[3:5], queued_run_at(row[4], row[8]), *row[6:])
        for row in conn.execute(
            f"SELECT {_INSTANCE_COLUMNS}, key, started_at, status, output, error, ended_at"
            " FROM instances ORDER BY key"
        )
    ]
    steps: dict[int, list[tuple[Any, ...]]] = {}
    for row in conn.execute(f"SELECT {STEP_COLUMNS} FROM steps ORDER BY instance, seq"):
        steps.setdefault(row[0], []).append(row)
    conn.close()
    return instances, [steps.get(row[11], []) for row in instances]


def raw_group_commit(source: Path, path: Path, batch: int) -> tuple[float, int]:
    """Seconds to write the rows ``source`` holds with plain ``sqlite3``, in group commits;
    and how many step rows that was.

    The schema is the store's (its migrations, so the same tables and indexes), the
    connection set up as the store's (WAL, ``synchronous=NORMAL``). The instances are
    inserted 100 per transaction, as the benchmark creates them; then ``batch`` instances
    at a time (the engine runs up to ``max_concurrency`` at once, and its group commit
    sees one step of each per event-loop turn) are claimed in one transaction, and each
    of their steps is one transaction of one ``executemany`` of ``batch`` step rows, the
    last one with the instances' ends.
    """
    instances, steps = rows_written(source)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # the store checkpoints on a thread of its own
    migrate(conn, path)
    marks = ", ".join("?" * 11)
    insert_instance = f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES ({marks})"
    insert_step = f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({', '.join('?' * 14)})"

    def commit(*statements: tuple[str, list[tuple[Any, ...]]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")

    start = time.perf_counter()
    for first in range(0, len(instances), 100):
        commit((insert_instance, [row[:11] for row in instances[first : first + 100]]))
    for first in range(0, len(instances), batch):
        wave = instances[first : first + batch]
        wave_steps = steps[first : first + batch]
        commit((_CLAIM, [(row[12], row[11]) for row in wave]))
        longest = max(len(s) for s in wave_steps)
        for n in range(longest):
            rows = [s[n] for s in wave_steps if n < len(s)]
            if n < longest - 1:
                commit((insert_step, rows))
            else:
                ends = [(row[13], row[14], row[15], row[16], row[11]) for row in wave]
                commit((insert_step, rows), (_FINISH, ends))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, sum(len(s) for s in steps)


async def sequential_steps(path: Path, steps: int, commit: str) -> float:
    """Seconds per step of one instance running ``steps`` no-op steps one after another."""
    store = SqliteStore(path, commit=commit)  # type: ignore[arg-type]
    async with _observed(Engine(store, [WorkflowSpec("seq", Sequential)])) as engine:
        start = time.perf_counter()
        [iid] = await engine.create("seq", [(None, steps)])
        output = await engine.result("seq", iid, timeout=300)
        elapsed = time.perf_counter() - start
    assert output == steps
    return elapsed / steps


async def concurrent_instances(path: Path, instances: int, steps: int, commit: str) -> float:
    """Seconds for ``instances`` instances of ``steps`` no-op steps, all created at once."""
    store = SqliteStore(path, commit=commit)  # type: ignore[arg-type]
    engine = _observed(Engine(store, [WorkflowSpec("seq", Sequential)], max_concurrency=500))
    async with engine:
        done = asyncio.Event()
        finished = 0

        def listener(workflow: str, id: str, status: str | None) -> None:
            nonlocal finished
            if status == "complete":
                finished += 1
                if finished == instances:
                    done.set()

        engine.add_listener(listener)
        start = time.perf_counter()
        for first in range(0, instances, 100):
            batch = [(None, steps) for _ in range(min(100, instances - first))]
            await engine.create("seq", batch)
        await asyncio.wait_for(done.wait(), 600)
        return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    n_bare, n_seq, n_inst, n_steps = (2000, 1000, 2000, 10) if not args.quick else (200, 50, 40, 3)
    rounds = args.rounds if not args.quick else 1
    batch = args.raw_batch

    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for r in range(rounds):  # alternate the measurements so drift hits all alike
            figures.setdefault("bare", []).append(bare_commit_loop(base / f"bare{r}.db", n_bare))
            figures.setdefault("handoff", []).append(
                await thread_handoff(base / f"hand{r}.db", n_bare)
            )
            for mode in ("inline", "thread"):
                figures.setdefault(f"seq-{mode}", []).append(
                    await sequential_steps(base / f"seq-{mode}{r}.db", n_seq, mode)
                )
            for mode in ("inline", "thread"):
                figures.setdefault(f"conc-{mode}", []).append(
                    await concurrent_instances(base / f"conc-{mode}{r}.db", n_inst, n_steps, mode)
                )
            # the rows the inline run just wrote, written again raw
            seconds, rows = raw_group_commit(
                base / f"conc-inline{r}.db", base / f"raw{r}.db", batch
            )
            assert rows == n_inst * n_steps, rows
            figures.setdefault("raw", []).append(seconds)

    med = {k: statistics.median(v) for k, v in figures.items()}
    bare = med["bare"]
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"event loop: {loop_name}   observe: {OBSERVE}")
    print(f"machine reference (median of {rounds} alternating rounds)")
    print(f"  bare SQLite INSERT+COMMIT (WAL, NORMAL)   {bare * 1e6:8.1f} us/commit")
    print(f"  same commit on a writer thread, awaited   {med['handoff'] * 1e6:8.1f} us/commit")
    print(f"sequential: 1 instance x {n_seq} no-op steps")
    for mode in ("inline", "thread"):
        per = med[f"seq-{mode}"]
        print(
            f"  commit={mode:<6}  {per * 1e6:8.1f} us/step   {1 / per:9.0f} steps/s"
            f"   {per / bare:5.2f}x bare commit"
        )
    print(f"concurrent: {n_inst} instances x {n_steps} no-op steps, created at once")
    raw_rate = n_inst * n_steps / med["raw"]
    print(
        f"  raw group commit of the same rows (plain sqlite3, {batch} step rows per commit)"
        f"   {raw_rate:9.0f} steps/s"
    )
    for mode in ("inline", "thread"):
        secs = med[f"conc-{mode}"]
        seq_rate = 1 / med[f"seq-{mode}"]
        steps_rate = n_inst * n_steps / secs
        print(
            f"  commit={mode:<6}  {n_inst / secs:8.0f} instances/s   {steps_rate:9.0f} steps/s"
            f"   {steps_rate / seq_rate:5.2f}x the sequential step rate"
            f"   {steps_rate / raw_rate:5.2f}x the raw group commit"
        )


def _run() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--raw-batch",
        type=int,
        default=500,
        help="instances (so step rows) per commit of the raw group-commit reference: the"
        " engine's max_concurrency, what its group commit sees per turn when busy",
    )
    parser.add_argument(
        "--observe",
        choices=["off", "metrics", "otel"],
        default="off",
        help="engine hooks: none (default), the host's metrics, metrics and spans",
    )
    args = parser.parse_args()
    global OBSERVE
    OBSERVE = args.observe
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed: using asyncio's loop", file=sys.stderr)
        else:
            uvloop.run(main(args))
            return
    asyncio.run(main(args))


if __name__ == "__main__":
    _run()
