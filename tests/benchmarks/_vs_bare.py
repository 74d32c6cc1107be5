"""The physical reference for the DBOS comparison: what one commit costs the store itself.

``.venv/bin/python tests/benchmarks/_vs_bare.py KIND --url PATH_OR_DSN --n N`` prints
``RESULT {"seconds_per_commit": ...}``. Kinds:

* ``sqlite-wal``: ``INSERT + COMMIT`` in WAL mode, ``synchronous=NORMAL`` (durableflow's
  default durability; DBOS's ``tuned`` configuration on SQLite);
* ``sqlite-full``: the same in SQLite's default rollback journal with ``synchronous=FULL``
  (what DBOS's default SQLite engine runs);
* ``asyncpg``: one ``INSERT`` per round trip, each its own transaction, awaited one after
  the other on uvloop.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.benchmarks._vs_common import emit

ROW = "x" * 40


def sqlite_loop(path: str, n: int, wal: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    else:
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, ROW))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / n


async def asyncpg_loop(dsn: str, n: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (k integer PRIMARY KEY, v text)")
        start = time.perf_counter()
        for i in range(n):
            await conn.execute("INSERT INTO t (k, v) VALUES ($1, $2)", i, ROW)
        return (time.perf_counter() - start) / n
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sqlite-wal", "sqlite-full", "asyncpg"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    if args.kind == "asyncpg":
        import uvloop

        per = uvloop.run(asyncpg_loop(args.url, args.n))
    else:
        per = sqlite_loop(args.url, args.n, wal=args.kind == "sqlite-wal")
    emit({"seconds_per_commit": per, "n": args.n})


if __name__ == "__main__":
    main()
