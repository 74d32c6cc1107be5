"""The pre-deploy check: how long ``durableflow check`` takes over many in-flight instances.

Run:  .venv/bin/python tests/benchmarks/bench_check.py [--instances N] [--steps S] [--quick]
      [--postgres DSN]

Builds a store (a SQLite file, or a fresh schema of a PostgreSQL database) holding N
in-flight instances of an S-step workflow, each with its S steps complete and a
``wait_for_event`` pending: one instance is run by the engine, and its history is copied
to the others, so every row is one the engine wrote. Then it times, in this one run:

  * reading the store (the instances and their steps, read-only, as the check does);
  * the whole check (``durableflow_runtime.check.check_store``, what ``durableflow check``
    runs): reading, and replaying every history against the code;
  * ``durableflow check`` as a process (the command a deploy pipeline runs: Python's
    start-up, imports, the config and the user code included).

The target is 10,000 instances of a 10-step workflow in under 30 s on 2 cores. Figures,
not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from durableflow_runtime.check import check_store
from durableflow_runtime.config import build_specs, load_config
from durableflow_runtime.engine import Engine
from durableflow_runtime.store.base import open_store
from durableflow_runtime.store.history import open_history_reader

APP = """\
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

STEPS = {steps}


class Chain(WorkflowEntrypoint[Any, Any]):
    version = "v1"

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        total = 0
        for n in range(STEPS):
            total += await step.do(f"step {{n}}", self.one)
        approval = await step.wait_for_event("approval", "approved", timeout="7 days")
        return {{"total": total, "approval": approval.payload}}

    async def one(self) -> int:
        return 1
"""


def project(root: Path, steps: int, storage: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(APP.format(steps=steps))
    (root / "durableflow.toml").write_text(
        textwrap.dedent(
            f"""\
            main = "app.py"

            [storage]
            url = "{storage}"

            [[workflows]]
            name = "chain"
            class_name = "Chain"
            """
        )
    )
    return root / "durableflow.toml"


async def seed(config_path: Path, storage: str, instances: int) -> None:
    """One instance run by the engine; its rows copied to ``instances - 1`` more."""
    config = load_config(config_path)
    engine = Engine(open_store(storage), build_specs(config))
    await engine.start()
    try:
        await engine.create("chain", [("seed", None)])
        for _ in range(600):
            if (await engine.status("chain", "seed")).status == "waiting":
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the seed instance did not reach its wait")
    finally:
        await engine.stop()
    if storage.startswith("sqlite"):
        copy_sqlite(config.storage_url, instances)
    else:
        await copy_postgres(storage, instances)


_COPY_INSTANCES = """
INSERT INTO instances (workflow, id, status, params, created_at, started_at, run_at, epoch,
    generation, pause_requested, wait_types, version)
SELECT workflow, 'i-' || n, status, params, created_at, started_at, run_at, epoch,
    generation, pause_requested, wait_types, version
FROM instances, ({numbers}) AS numbers WHERE id = 'seed'
"""
_COPY_STEPS = """
INSERT INTO steps (instance, name, count, seq, type, status, attempts, attempt_log, output,
    error, started_at, ended_at, wake_at, config)
SELECT copy.key, s.name, s.count, s.seq, s.type, s.status, s.attempts, s.attempt_log,
    s.output, s.error, s.started_at, s.ended_at, s.wake_at, s.config
FROM steps s JOIN instances seed ON seed.key = s.instance AND seed.id = 'seed'
JOIN instances copy ON copy.id LIKE 'i-%'
"""


def copy_sqlite(url: str, instances: int) -> None:
    import sqlite3

    from durableflow_runtime.store.sqlite import SqliteStore

    conn = sqlite3.connect(SqliteStore.from_url(url).path, isolation_level=None)
    conn.execute("BEGIN")
    numbers = f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {instances - 1}) SELECT n FROM r"
    conn.execute(_COPY_INSTANCES.format(numbers=numbers))
    conn.execute(_COPY_STEPS)
    conn.execute("COMMIT")
    conn.close()


async def copy_postgres(storage: str, instances: int) -> None:
    import asyncpg

    from durableflow_runtime.store.postgres import PostgresStore

    store = open_store(storage)
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store.connect_dsn)
    try:
        await conn.execute(f'SET search_path = "{store.schema}"')
        numbers = f"SELECT generate_series(1, {instances - 1}) AS n"
        async with conn.transaction():
            await conn.execute(_COPY_INSTANCES.format(numbers=numbers))
            await conn.execute(_COPY_STEPS)
    finally:
        await conn.close()


async def read_only(storage: str) -> int:
    reader = await open_history_reader(storage)
    try:
        rows = await reader.instances(["chain"])
        read = 0
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            read += sum(len(s) for s in (await reader.steps([r.key for r in chunk])).values())
        return read
    finally:
        await reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="200 instances: a smoke run")
    parser.add_argument("--postgres", metavar="DSN", help="a PostgreSQL database to use")
    args = parser.parse_args()
    instances = 200 if args.quick else args.instances
    with tempfile.TemporaryDirectory(prefix="durableflow-bench-check-") as tmp:
        root = Path(tmp)
        if args.postgres:
            schema = f"bench_check_{os.getpid()}"
            separator = "&" if "?" in args.postgres else "?"
            storage = f"{args.postgres}{separator}schema={schema}"
        else:
            storage = f"sqlite:///{root / 'state.db'}"
        config_path = project(root, args.steps, storage)
        try:
            started = time.perf_counter()
            asyncio.run(seed(config_path, storage, instances))
            print(
                f"seeded {instances} instances x {args.steps} steps in "
                f"{time.perf_counter() - started:.1f}s ({storage.split(':')[0]})"
            )

            started = time.perf_counter()
            steps = asyncio.run(read_only(storage))
            read_s = time.perf_counter() - started
            print(f"read {instances} instances and {steps} steps: {read_s:.2f}s")

            specs = build_specs(load_config(config_path))
            started = time.perf_counter()
            results: Any = asyncio.run(check_store(specs, storage))
            check_s = time.perf_counter() - started
            ok = sum(r.status == "ok" for r in results)
            assert ok == len(results) == instances, (ok, len(results))
            print(
                f"check_store: {check_s:.2f}s ({check_s / instances * 1e6:.0f} µs per "
                f"instance, replay {(check_s - read_s) / instances * 1e6:.0f} µs of it)"
            )

            started = time.perf_counter()
            done = subprocess.run(
                [
                    str(Path(sys.executable).with_name("durableflow")),
                    "check",
                    "--config",
                    str(config_path),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            cli_s = time.perf_counter() - started
            assert done.returncode == 0, done.stdout + done.stderr
            print(f"durableflow check (process): {cli_s:.2f}s: {done.stdout.strip()}")
        finally:
            if args.postgres:
                import asyncpg

                async def drop() -> None:
                    conn = await asyncpg.connect(args.postgres)
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    await conn.close()

                asyncio.run(drop())


if __name__ == "__main__":
    main()
