"""Every list query reads an index, never the whole ``instances`` table: the plans of each
shape of the list statement (and of the other statements whose cost must not grow with
the instances stored) on both stores, as ``EXPLAIN QUERY PLAN`` / ``EXPLAIN`` give them.

PostgreSQL's planner picks a sequential scan for a small table whatever its indexes, so
the check runs with ``enable_seqscan = off``: a ``Seq Scan`` that remains is one that no
index can replace. A list must also come in index order, not sorted after reading every
instance of the workflow; other statements may sort the few rows an index found (the
children of one instance).
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from durableflow_runtime.store._queries import POSTGRES, SQLITE, Queries
from durableflow_runtime.store.postgres import PostgresStore
from durableflow_runtime.store.postgres._identity import _EXPIRE_OWN
from durableflow_runtime.store.sqlite import SqliteStore

from .test_store_conformance import PG_DSN, drop_schema, require_pg

Statement = tuple[str, tuple[Any, ...]]


def list_shapes(queries: Queries) -> list[tuple[str, Statement]]:
    """Each combination of the list filters, with and without a cursor."""
    shapes = []
    for status, prefix, after, before, cursor, version in itertools.product(
        [False, True], repeat=6
    ):
        used = (status, prefix, after, before, cursor, version)
        labels = ("status", "id_prefix", "created_after", "created_before", "cursor", "version")
        name = "list" + "".join(f" {label}" for label, on in zip(labels, used, strict=True) if on)
        statement = queries.list_instances(
            "wf",
            "errored" if status else None,
            50,
            1000 if cursor else None,
            id_prefix="ord" if prefix else None,
            created_after=1.0 if after else None,
            created_before=2.0 if before else None,
            version="v1" if version else None,
        )
        shapes.append((name, statement))
    return shapes


def other_shapes(queries: Queries) -> list[tuple[str, Statement]]:
    return [
        ("next_run_at", (queries.next_run_at, queries.dialect.can_run_args(None))),
        (
            "next_run_at runnable",
            (queries.next_run_at, queries.dialect.can_run_args(["wf/v1", "other/"])),
        ),
        ("instance_by_name", (queries.instance_by_name, ("wf", "a"))),
        ("children_of", (queries.children_of, (1,))),
    ]


async def test_sqlite_queries_use_an_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    await store.close()
    from durableflow_runtime.store.sqlite._writer import recover

    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        recovery: list[str] = []

        class Recording:
            def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
                recovery.append(sql)

        recover(Recording(), 0.0)  # type: ignore[arg-type]
        shapes = [
            *list_shapes(Queries(SQLITE)),
            *other_shapes(Queries(SQLITE)),
            *[(f"recover {n}", (sql, (0.0,) * sql.count("?"))) for n, sql in enumerate(recovery)],
        ]
        scans = {}
        for name, (sql, args) in shapes:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
            # a scan, or (a list) a sort of every row of the workflow: both grow with the table
            sorted_all = name.startswith("list") and any("TEMP B-TREE" in line for line in plan)
            if sorted_all or any(line.startswith("SCAN instances") for line in plan):
                scans[name] = plan
        assert scans == {}, f"full scans or sorts of instances: {scans}"
    finally:
        conn.close()


async def test_postgres_queries_use_an_index() -> None:
    await require_pg()
    schema = f"plan_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(PG_DSN, schema=schema, host_id="plans")
    await store.open()
    await store.close()
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        await conn.execute("SET enable_seqscan = off")
        shapes = [
            *list_shapes(Queries(POSTGRES)),
            *other_shapes(Queries(POSTGRES)),
            ("take over own leases", (_EXPIRE_OWN, ("plans",))),
        ]
        scans = {}
        for name, (sql, args) in shapes:
            plan = [row[0] for row in await conn.fetch("EXPLAIN " + sql, *args)]
            sorted_all = name.startswith("list") and any("Sort" in line for line in plan)
            if sorted_all or any("Seq Scan on instances" in line for line in plan):
                scans[name] = plan
        assert scans == {}, f"full scans or sorts of instances: {scans}"
    finally:
        await conn.close()
        await drop_schema(schema)


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES])
def test_every_list_filter_is_among_the_shapes(dialect: Any) -> None:
    """The shapes above cover each filter the list statement takes (a new filter must
    be added to them)."""
    import inspect

    params = set(inspect.signature(Queries.list_instances).parameters) - {"self", "limit"}
    assert params == {
        "workflow",
        "status",
        "cursor",
        "id_prefix",
        "created_after",
        "created_before",
        "version",
    }
    assert len(list_shapes(Queries(dialect))) == 64
