"""Read instances and their histories from a store without being its host.

``durableflow check`` reads the store a host may be serving at the same moment: it takes
no host lock, applies no migration and writes nothing. SQLite is opened with
``mode=ro`` (a WAL reader sees the last commit and never blocks the writer); PostgreSQL
with a single connection whose transactions are read-only. A store whose schema predates
a column (it runs the migrations at its next start) reads as if every instance had the
column's default: no version, priority 0, no concurrency key.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from durableflow import StoreUnavailableError

from ._rows import INSTANCE_COLUMNS, STEP_COLUMNS, instance_from_row, steps_by_instance
from .base import FINISHED, InstanceRow, StepRow, open_store, redact_url

__all__ = ["HistoryReader", "open_history_reader"]

_NOT_FINISHED = f"status NOT IN ({', '.join(repr(s) for s in FINISHED)})"
_FINISHED = f"status IN ({', '.join(repr(s) for s in FINISHED)})"
#: Steps are read for this many instances per query.
STEP_CHUNK = 500


#: The step columns a replay reads: each attempt's log is left out (a replay starts no
#: attempt, and decoding every log would be most of the read).
_STEP_COLUMNS = STEP_COLUMNS.replace("attempt_log", "'[]'")


#: What a column the schema lacks reads as (else ``NULL``).
_ABSENT = {"priority": "0"}


def _columns(names: set[str]) -> str:
    """:data:`INSTANCE_COLUMNS`, each column the table lacks read as its default."""
    columns = [c.strip() for c in INSTANCE_COLUMNS.split(",")]
    return ", ".join(c if c in names else _ABSENT.get(c, "NULL") for c in columns)


class HistoryReader(abc.ABC):
    """Instances and their step histories (without attempt logs), read-only."""

    async def instances(
        self, workflows: Sequence[str], include_finished: int = 0, newest: int | None = None
    ) -> list[InstanceRow]:
        """The instances of ``workflows`` that are not finished, oldest first (with
        ``newest``: only the ``newest`` created last of each workflow), then for each
        workflow its ``include_finished`` most recently ended finished ones."""
        found: list[InstanceRow] = []
        if newest is None:
            rows = await self._fetch(
                f"SELECT {{cols}} FROM instances WHERE {_NOT_FINISHED} ORDER BY key", ()
            )
            wanted = set(workflows)
            found = [r for r in rows if r.workflow in wanted]
        else:
            for workflow in workflows:
                rows = await self._fetch(
                    f"SELECT {{cols}} FROM instances WHERE workflow = ? AND {_NOT_FINISHED}"
                    " ORDER BY key DESC LIMIT ?",
                    (workflow, newest),
                )
                found += reversed(rows)
        if include_finished > 0:
            for workflow in workflows:
                found += await self._fetch(
                    f"SELECT {{cols}} FROM instances WHERE workflow = ? AND {_FINISHED}"
                    " ORDER BY ended_at DESC LIMIT ?",
                    (workflow, include_finished),
                )
        return found

    @abc.abstractmethod
    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[InstanceRow]:
        """Instances by ``sql`` (``{cols}``: the instance columns, ``?`` placeholders)."""

    @abc.abstractmethod
    async def steps(self, keys: Sequence[int]) -> dict[int, list[StepRow]]:
        """The step histories of the instances with ``keys``, each in the order it ran."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Let go of the connection."""


class _SqliteReader(HistoryReader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._names: set[str] = set()

    async def open(self) -> None:
        if not self.path.exists():
            return  # no host ever wrote here: nothing is in flight
        uri = self.path.absolute().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            names = {r[1] for r in conn.execute("PRAGMA table_info(instances)")}
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot read {self.path}: {exc}") from exc
        self._conn = conn
        self._names = names
        if not names:
            conn.close()
            self._conn = None  # a file without durableflow's tables: nothing in flight

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[InstanceRow]:
        conn = self._conn
        if conn is None:
            return []
        text = sql.replace("{cols}", _columns(self._names))
        rows = await asyncio.to_thread(lambda: conn.execute(text, args).fetchall())
        return [instance_from_row(r) for r in rows]

    async def steps(self, keys: Sequence[int]) -> dict[int, list[StepRow]]:
        conn = self._conn
        if conn is None or not keys:
            return {}
        marks = ",".join("?" * len(keys))
        sql = (
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE instance IN ({marks}) ORDER BY instance, seq"
        )
        return await asyncio.to_thread(lambda: steps_by_instance(conn.execute(sql, list(keys))))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _PostgresReader(HistoryReader):
    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self._names: set[str] = set()

    async def open(self) -> None:
        import asyncpg

        from .postgres import PostgresStore

        store = open_store(self.url)
        assert isinstance(store, PostgresStore)
        settings = store.read_only_settings()
        try:
            self._conn = await asyncpg.connect(
                store.connect_dsn, server_settings=settings, timeout=store.unavailable_timeout
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"cannot read {redact_url(self.url)}: {type(exc).__name__}: {exc}"
            ) from exc
        names = {
            r[0]
            for r in await self._conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'instances' AND table_schema = current_schema()"
            )
        }
        self._names = names
        if not names:
            await self.close()

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[InstanceRow]:
        if self._conn is None:
            return []
        from .transitions import numbered

        text = numbered(sql.replace("{cols}", _columns(self._names)))
        return [instance_from_row(r) for r in await self._conn.fetch(text, *args)]

    async def steps(self, keys: Sequence[int]) -> dict[int, list[StepRow]]:
        if self._conn is None or not keys:
            return {}
        rows = await self._conn.fetch(
            f"SELECT {_STEP_COLUMNS}, host FROM steps WHERE instance = ANY($1::bigint[])"
            " ORDER BY instance, seq",
            list(keys),
        )
        return steps_by_instance(rows)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


async def open_history_reader(url: str) -> HistoryReader:
    """A read-only reader of the store at ``url`` (``sqlite:///...`` or ``postgresql://...``).

    Raises:
        ValidationError: An unknown scheme. StoreUnavailableError: It cannot be read.
    """
    if urlparse(url).scheme == "sqlite":
        from .sqlite import SqliteStore

        sqlite_reader = _SqliteReader(SqliteStore.from_url(url).path)
        await sqlite_reader.open()
        return sqlite_reader
    open_store(url)  # the scheme's error, if any
    reader = _PostgresReader(url)
    await reader.open()
    return reader
