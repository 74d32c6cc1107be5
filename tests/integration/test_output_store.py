"""The store side of streams and logs, on both stores: indexes per stream, fencing,
run-level log keys recorded once, and deletion with the instance."""

from __future__ import annotations

import pytest

from durableflow_runtime.store._output import NewChunk, NewLog
from durableflow_runtime.store.base import LeaseLost, Store
from durableflow_runtime.store.postgres import PostgresStore
from durableflow_runtime.store.sqlite import SqliteStore

from .test_store_conformance import T0, finished, make_store, running, store

__all__ = ["make_store", "store"]


def chunk(stream: str, data: str, attempt: int = 1) -> NewChunk:
    return NewChunk(stream, "s", attempt, "json", data, T0)


def entry(message: str, run_key: str | None = None) -> NewLog:
    return NewLog(
        "info", message, "{}", None if run_key else "s", None if run_key else 1, T0, run_key
    )


async def count(store: Store, table: str, key: int) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE instance = "
    if isinstance(store, SqliteStore):
        assert store._conn is not None
        return int(store._conn.execute(sql + "?", (key,)).fetchone()[0])
    assert isinstance(store, PostgresStore) and store._pool is not None
    return int(await store._pool.fetchval(sql + "$1", key))


async def test_chunks_are_numbered_per_stream_and_read_from_an_index(store: Store) -> None:
    """Each stream counts its chunks from 0; a read starts at any index and keeps order."""
    lease = await running(store)
    indexes = [
        await store.append_chunk(lease, chunk(s, f'"{s}{n}"')) for n in range(3) for s in ("a", "b")
    ]
    assert indexes == [0, 0, 1, 1, 2, 2]
    rows = await store.read_chunks(lease.key, "a", 1, 10)
    assert [(r.index, r.data) for r in rows] == [(1, '"a1"'), (2, '"a2"')]
    assert (
        await store.read_chunks(lease.key, "a", 0, 1)
        == (await store.read_chunks(lease.key, "a", 0, 10))[:1]
    )
    assert [(s.name, s.chunks) for s in await store.list_streams(lease.key)] == [("a", 3), ("b", 3)]


async def test_writes_of_a_stale_lease_are_refused(store: Store) -> None:
    """After a restart (a new epoch) the old lease can append no chunk."""
    lease = await running(store)
    await store.control("wf", lease.id, "restart", T0 + 2)
    with pytest.raises(LeaseLost):
        await store.append_chunk(lease, chunk("a", '"late"'))
    assert await store.read_chunks(lease.key, "a", 0, 10) == []


async def test_a_run_key_is_recorded_once_and_logs_page_by_seq(store: Store) -> None:
    """An entry whose run_key is stored is ignored; step entries have none and all stay."""
    lease = await running(store)
    for message, key in [
        ("r0", "0:0:0"),
        ("s", None),
        ("r0", "0:0:0"),
        ("s", None),
        ("r1", "0:1:0"),
    ]:
        await store.append_log(lease, entry(message, key))
    rows = await store.read_logs(lease.key, 0, 100)
    assert [r.message for r in rows] == ["r0", "s", "s", "r1"]
    page = await store.read_logs(lease.key, rows[1].seq, 2)
    assert [r.message for r in page] == ["s", "r1"]


async def test_streams_and_logs_go_with_their_instance(store: Store) -> None:
    """Retention deletes an instance's chunks and log entries with it, and no one else's."""
    leases = await finished(store)
    for lease in leases.values():
        if lease.id != "stopped":  # terminated: its lease no longer writes
            await store.append_log(lease, entry("x"))
            await store.append_chunk(lease, chunk("a", '"x"'))
    done, live = leases["done"], leases["live"]
    for table in ("instance_logs", "stream_chunks"):
        assert await count(store, table, done.key) == 1
    assert await store.delete_finished(T0 + 6.5) == 2
    for table in ("instance_logs", "stream_chunks"):
        assert await count(store, table, done.key) == 0
        assert await count(store, table, live.key) == 1
