"""What both sides of the DBOS comparison share: the worker protocol and the measuring tools.

A worker (``_vs_durableflow.py`` or ``_vs_dbos.py``) is run in its own process for one
measurement, prints progress to stderr and its figures as one ``RESULT {json}`` line on
stdout; the recovery scenario's first phase prints ``READY`` and waits to be killed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import psutil

from tests.helpers import eventually

RESULT_PREFIX = "RESULT "
READY_LINE = "READY"
SCENARIOS = ("sequential", "concurrent", "sleepers", "wakeups", "events", "recovery")


def worker_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line every worker takes (the orchestrator builds it)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=[*SCENARIOS, "recovery-crash", "recovery-restart"])
    parser.add_argument("--store", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--url", required=True, help="SQLite file path or PostgreSQL DSN")
    parser.add_argument("--config", default="default")
    parser.add_argument(
        "--style", choices=["async", "sync"], default="async", help="DBOS workflow style"
    )
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a phase may take")
    parser.add_argument("--margin", type=float, default=5.0, help="wake-up lead time, seconds")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--warmup", type=int, default=20, help="instances run before measuring")
    parser.add_argument(
        "--lease-seconds", type=float, default=0.0, help="durableflow on PostgreSQL: lease length"
    )
    return parser.parse_args(argv)


def run(coro: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``coro`` on uvloop (as the host runs) or on asyncio's own loop."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def emit(result: dict[str, Any]) -> None:
    """Hand the figures to the orchestrator."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"  [{os.getpid()}] {message}", file=sys.stderr, flush=True)


def rss() -> int:
    """Resident set size of this process, bytes, after a full collection."""
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def sqlite_used_bytes(path: str) -> int:
    """Bytes the database holds (pages in use, WAL included), read on a separate connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)
    finally:
        conn.close()


def sqlite_count(path: str, sql: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def pg_fetchval(dsn: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def pg_schema_bytes(dsn: str, schema: str) -> int:
    """``pg_total_relation_size`` summed over the tables of ``schema``."""
    value = await pg_fetchval(
        dsn,
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
        "AND c.relkind IN ('r', 'p')",
    )
    return int(value)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.02
) -> bool:
    """Poll ``check`` (with the tests' ``eventually``) for at most ``timeout`` seconds.

    Unlike a test, a benchmark goes on when the time is up: it reports the run as incomplete
    or invalid, so this says whether ``check`` held instead of raising.
    """
    try:
        await eventually(check, timeout=timeout, interval=every)
    except AssertionError:
        return False
    return True


def lateness_figures(lateness: Sequence[float]) -> dict[str, float]:
    return {
        "late_p50_ms": percentile(lateness, 50) * 1000,
        "late_p99_ms": percentile(lateness, 99) * 1000,
        "late_max_ms": max(lateness) * 1000 if lateness else math.nan,
    }


def latency_figures(latency: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latency, 50) * 1000,
        "p99_ms": percentile(latency, 99) * 1000,
        "max_ms": max(latency) * 1000 if latency else math.nan,
    }
