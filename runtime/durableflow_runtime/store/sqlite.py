"""The embedded SQLite store: WAL, one writer, group commit.

Every write is queued and the queue is applied in one transaction per event-loop turn,
so a thousand instances finishing a step in the same turn cost one commit. Where the
commit runs is the ``commit`` setting:

* ``inline`` (default with ``durability="normal"``): on the event-loop thread. With
  ``synchronous=NORMAL`` a WAL commit is an append to the WAL file and never an fsync,
  about 20 microseconds; handing it to a thread would cost more than it saves.
* ``thread`` (default with ``durability="full"``): on one writer thread, because with
  ``synchronous=FULL`` each commit waits on an fsync the event loop must not wait on.

Checkpoints never run on the commit path: auto-checkpointing is off, and a background
thread with its own connection runs a passive checkpoint when the WAL has grown.
See docs/design.md for the measurements behind these defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlparse

import orjson

from durableflow import InstanceExistsError, InvalidTransitionError, NotFoundError
from durableflow import ValidationError as _ValidationError

from .base import (
    FINAL_STATUSES,
    FINISHED,
    INSTANCE_COLUMNS,
    PRUNE_BATCH,
    Claimed,
    ControlAction,
    EventRow,
    InstanceRow,
    Lease,
    LeaseLost,
    NewInstance,
    StepRow,
    Store,
    event_output,
    instance_from_row,
    like_prefix,
)
from .transitions import control_statements, control_transition

__all__ = ["SqliteStore", "StoreLockedError"]

T = TypeVar("T")
Durability = Literal["normal", "full"]
CommitMode = Literal["inline", "thread"]

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE instances (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow TEXT NOT NULL,
        id TEXT NOT NULL,
        status TEXT NOT NULL,
        params TEXT,
        output TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        run_at REAL,
        epoch INTEGER NOT NULL DEFAULT 0,
        generation INTEGER NOT NULL DEFAULT 0,
        pause_requested INTEGER NOT NULL DEFAULT 0,
        wait_types TEXT,
        UNIQUE (workflow, id)
    );
    CREATE INDEX instances_run_at ON instances (run_at) WHERE run_at IS NOT NULL;
    CREATE INDEX instances_by_status ON instances (workflow, status, key);
    CREATE TABLE steps (
        instance INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        attempt_log TEXT NOT NULL,
        output TEXT,
        error TEXT,
        started_at REAL,
        ended_at REAL,
        wake_at REAL,
        config TEXT,
        PRIMARY KEY (instance, name, count)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        instance INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT,
        created_at REAL NOT NULL,
        consumed_by TEXT
    );
    CREATE INDEX events_pending ON events (instance, type, seq) WHERE consumed_by IS NULL;
    """,
    # 2: retention finds finished instances by end time, and deletes their events
    """
    CREATE INDEX instances_ended ON instances (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX events_by_instance ON events (instance);
    """,
]


_STEP_SELECT = (
    "SELECT instance, name, count, seq, type, status, attempts, attempt_log, output, error,"
    " started_at, ended_at, wake_at, config FROM steps"
)


def _step(r: tuple[Any, ...]) -> StepRow:
    return StepRow(
        name=r[0],
        count=r[1],
        seq=r[2],
        type=r[3],
        status=r[4],
        attempts=r[5],
        attempt_log=orjson.loads(r[6]),
        output=r[7].encode() if r[7] is not None else None,
        error=orjson.loads(r[8]) if r[8] is not None else None,
        started_at=r[9],
        ended_at=r[10],
        wake_at=r[11],
        config=orjson.loads(r[12]) if r[12] is not None else None,
    )


_IDLE_COMMITS = 32


class StoreLockedError(_ValidationError):
    """Another host already has this SQLite file open."""


def _text(data: bytes | None) -> str | None:
    return data.decode() if data is not None else None


class SqliteStore(Store):
    """A store in one SQLite file, owned by one host process.

    Args:
        path: The database file (created with its folder if missing).
        durability: ``normal`` survives a process crash; ``full`` also a power loss.
        commit: ``inline`` or ``thread``; default by durability (see the module docstring).
    """

    single_host = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "normal",
        commit: CommitMode | None = None,
    ) -> None:
        if durability not in ("normal", "full"):
            raise _ValidationError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self.commit_mode: CommitMode = commit or ("inline" if durability == "normal" else "thread")
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[
            tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any] | None]
        ] = []
        self._flush_scheduled = False
        self._flushing: asyncio.Future[Any] | None = None
        # attempt starts not yet queued: written at the next flush unless the attempt's
        # outcome (which supersedes them) arrives first
        self._starts: dict[tuple[int, str, int], tuple[Lease, StepRow]] = {}
        self._idle_commits = 0  # commits made at once since the event loop last came round
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        parsed = urlparse(url)
        path = unquote(parsed.netloc + parsed.path)
        if path.startswith("/") and not path.startswith("//"):
            path = path[1:]  # sqlite:///x.db is relative, sqlite:////x.db absolute
        elif path.startswith("//"):
            path = path[1:]
        if not path:
            raise _ValidationError(f"storage url {url!r} names no file")
        return cls(path, **options)

    # --- life cycle -------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is in use by another durableflow host; one host per SQLite "
                "file (use PostgreSQL to run several hosts)"
            ) from None
        self._lock_fd = fd
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        sync = "NORMAL" if self.durability == "normal" else "FULL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        self._conn = conn
        self._migrate(conn)
        if self.commit_mode == "thread":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="durableflow-sqlite")
        self._stop.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="durableflow-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        if current > len(MIGRATIONS):
            raise _ValidationError(
                f"{self.path} has schema version {current}, newer than this durableflow "
                f"({len(MIGRATIONS)}); upgrade durableflow"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            wal = Path(f"{self.path}-wal")
            while not self._stop.wait(0.5):
                with contextlib.suppress(OSError, sqlite3.Error):
                    if wal.exists() and wal.stat().st_size > 4 * 1024 * 1024:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    async def close(self) -> None:
        if self._conn is None:
            return
        while self._queue or self._starts or self._flushing is not None:
            if self._flushing is not None:
                await self._flushing
            else:
                await asyncio.sleep(0)
        self._stop.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- the two paths to the connection ----------------------------------------------
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        if self._stop.is_set():
            raise RuntimeError(f"the store {self.path} is closed")
        if self._executor is None:
            return fn(conn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue a write; it commits with the others queued in this event-loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._conn is None or self._stop.is_set():
            future.set_exception(RuntimeError(f"the store {self.path} is closed"))
            return future
        self._enqueue(fn, future)
        return future

    def _enqueue(self, fn: Callable[[sqlite3.Connection], Any], future: Any) -> None:
        if (
            future is not None
            and not self._queue
            and self._flushing is None
            and self._executor is None
            and self._idle_commits < _IDLE_COMMITS
        ):
            # The writer is idle: nothing else is waiting to commit in this turn, so
            # commit now instead of a turn later. Writes that come while this turn goes
            # on still batch up for the next flush; the count bounds how long one task
            # can run without the event loop coming around.
            self._idle_commits += 1
            self._apply([(fn, future)])
            return
        self._queue.append((fn, future))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._flushing is None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the store is not open")
        return self._conn

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        self._idle_commits = 0
        if self._starts:
            starts, self._starts = self._starts, {}
            for lease, step in starts.values():
                self._queue_step(lease, step, None)
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        if self._executor is None:
            self._apply(batch)
            self._after_flush()
            return
        loop = asyncio.get_running_loop()
        flushing: asyncio.Future[Any] = loop.run_in_executor(
            self._executor, self._apply_outcomes, batch
        )
        flushing.add_done_callback(lambda f: self._deliver_thread_batch(f, batch))
        self._flushing = flushing

    def _deliver_thread_batch(
        self, done: asyncio.Future[Any], batch: list[tuple[Any, asyncio.Future[Any] | None]]
    ) -> None:
        self._flushing = None
        exc = done.exception()
        outcomes: list[tuple[bool, Any]] = (
            [(False, exc)] * len(batch) if exc is not None else done.result()
        )
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        self._after_flush()

    def _after_flush(self) -> None:
        # writes (and attempt starts) that arrived while a thread batch was in flight
        if self._queue or self._starts:
            self._schedule_flush()

    def _apply_outcomes(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]
    ) -> list[tuple[bool, Any]]:
        conn = self._connection()
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn, _ in batch:
                try:
                    outcomes.append((True, fn(conn)))
                except (Exception, LeaseLost) as exc:
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(False, exc)] * len(batch)
        return outcomes

    def _apply(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> None:
        for (_, future), (ok, value) in zip(batch, self._apply_outcomes(batch), strict=True):
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    # --- instances --------------------------------------------------------------------
    async def create_instances(self, rows: Sequence[NewInstance]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("SAVEPOINT create_instances")
            try:
                for row in rows:
                    try:
                        conn.execute(
                            "INSERT INTO instances (workflow, id, status, params, created_at,"
                            " run_at) VALUES (?, ?, 'queued', ?, ?, ?)",
                            (
                                row.workflow,
                                row.id,
                                _text(row.params),
                                row.created_at,
                                row.created_at,
                            ),
                        )
                    except sqlite3.IntegrityError:
                        raise InstanceExistsError(
                            f"instance {row.id!r} of workflow {row.workflow!r} already exists"
                        ) from None
            except BaseException:
                conn.execute("ROLLBACK TO create_instances")
                conn.execute("RELEASE create_instances")
                raise
            conn.execute("RELEASE create_instances")

        await self._write(op)

    async def get_instance(self, workflow: str, id: str) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ? AND id = ?",
                (workflow, id),
            ).fetchone()
            return instance_from_row(row) if row else None

        return await self._read(op)

    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None,
        limit: int,
        cursor: int | None,
        id_prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> list[InstanceRow]:
        def op(conn: sqlite3.Connection) -> list[InstanceRow]:
            sql = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ?"
            args: list[Any] = [workflow]
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            if id_prefix is not None:
                # SQLite's LIKE ignores ASCII case; the substr() keeps the match exact
                sql += " AND id LIKE ? ESCAPE '\\' AND substr(id, 1, ?) = ?"
                args += [like_prefix(id_prefix), len(id_prefix), id_prefix]
            if created_after is not None:
                sql += " AND created_at >= ?"
                args.append(created_after)
            if created_before is not None:
                sql += " AND created_at < ?"
                args.append(created_before)
            if cursor is not None:
                sql += " AND key < ?"
                args.append(cursor)
            sql += " ORDER BY key DESC LIMIT ?"
            args.append(limit)
            return [instance_from_row(r) for r in conn.execute(sql, args)]

        return await self._read(op)

    async def load_steps(self, key: int) -> list[StepRow]:
        def op(conn: sqlite3.Connection) -> list[StepRow]:
            return [
                _step(r[1:])
                for r in conn.execute(f"{_STEP_SELECT} WHERE instance = ? ORDER BY seq", (key,))
            ]

        return await self._read(op)

    # --- scheduling -------------------------------------------------------------------
    async def recover(self, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE instances SET status = 'paused', run_at = NULL, pause_requested = 0"
                " WHERE status = 'waitingForPause'"
            )
            conn.execute(
                "UPDATE instances SET status = 'queued', run_at = ? WHERE status = 'running'",
                (now,),
            )

        await self._write(op)

    async def claim(self, now: float, limit: int) -> list[Lease]:
        def op(conn: sqlite3.Connection) -> list[Lease]:
            rows = conn.execute(
                "UPDATE instances SET status = CASE WHEN pause_requested THEN 'waitingForPause'"
                " ELSE 'running' END, run_at = NULL, wait_types = NULL, epoch = epoch + 1,"
                " started_at = coalesce(started_at, ?)"
                " WHERE key IN (SELECT key FROM instances WHERE run_at <= ?"
                " ORDER BY run_at LIMIT ?) RETURNING workflow, id, key, epoch",
                (now, now, limit),
            ).fetchall()
            return [Lease(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._write(op)

    async def claim_work(self, now: float, limit: int) -> list[Claimed]:
        def op(conn: sqlite3.Connection) -> list[Claimed]:
            rows = [
                instance_from_row(r)
                for r in conn.execute(
                    "UPDATE instances SET status = CASE WHEN pause_requested"
                    " THEN 'waitingForPause' ELSE 'running' END, run_at = NULL,"
                    " wait_types = NULL, epoch = epoch + 1, started_at = coalesce(started_at, ?)"
                    " WHERE key IN (SELECT key FROM instances WHERE run_at <= ?"
                    f" ORDER BY run_at LIMIT ?) RETURNING {INSTANCE_COLUMNS}",
                    (now, now, limit),
                )
            ]
            if not rows:
                return []
            steps: dict[int, list[StepRow]] = {row.key: [] for row in rows}
            marks = ",".join("?" * len(rows))
            for r in conn.execute(
                f"{_STEP_SELECT} WHERE instance IN ({marks}) ORDER BY instance, seq",
                list(steps),
            ):
                steps[r[0]].append(_step(r[1:]))
            return [
                Claimed(Lease(row.workflow, row.id, row.key, row.epoch), row, steps[row.key])
                for row in rows
            ]

        return await self._write(op)

    async def next_run_at(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(run_at) FROM instances WHERE run_at IS NOT NULL"
            ).fetchone()
            return row[0] if row else None

        return await self._read(op)

    # --- fenced writes ----------------------------------------------------------------
    @staticmethod
    def _fence(conn: sqlite3.Connection, lease: Lease) -> None:
        row = conn.execute("SELECT epoch FROM instances WHERE key = ?", (lease.key,)).fetchone()
        if row is None or row[0] != lease.epoch:
            raise LeaseLost(f"{lease.workflow}/{lease.id}")

    @staticmethod
    def _put_step(
        conn: sqlite3.Connection, key: int, step: StepRow, epoch: int | None = None
    ) -> None:
        """Write one step; with ``epoch``, only while it is the instance's epoch (fenced)."""
        cursor = conn.execute(
            "INSERT OR REPLACE INTO steps (instance, name, count, seq, type, status, attempts,"
            " attempt_log, output, error, started_at, ended_at, wake_at, config)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            + (
                " WHERE (SELECT epoch FROM instances WHERE key = ?1) = ?15"
                if epoch is not None
                else ""
            ),
            (
                key,
                step.name,
                step.count,
                step.seq,
                step.type,
                step.status,
                step.attempts,
                orjson.dumps(step.attempt_log).decode(),
                _text(step.output),
                orjson.dumps(step.error).decode() if step.error is not None else None,
                step.started_at,
                step.ended_at,
                step.wake_at,
                orjson.dumps(step.config).decode() if step.config is not None else None,
                *((epoch,) if epoch is not None else ()),
            ),
        )
        if epoch is not None and cursor.rowcount != 1:
            raise LeaseLost(f"instance key {key}")

    def put_step(self, lease: Lease, step: StepRow) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._starts:
            self._starts.pop((lease.key, step.name, step.count), None)  # superseded
        self._queue_step(lease, step, future)
        return future

    def put_step_nowait(self, lease: Lease, step: StepRow) -> None:
        # An attempt that ends within this event-loop turn (no I/O) never needs its start
        # written: keep a reference and snapshot it at the flush only if still pending.
        if self._conn is None or self._stop.is_set():
            return
        self._starts[(lease.key, step.name, step.count)] = (lease, step)
        self._schedule_flush()

    def _queue_step(self, lease: Lease, step: StepRow, future: asyncio.Future[None] | None) -> None:
        if self._conn is None or self._stop.is_set():
            if future is not None:
                future.set_exception(RuntimeError(f"the store {self.path} is closed"))
            return
        # copy now: the caller keeps mutating its record while the write waits in the queue
        snapshot = StepRow(
            step.name,
            step.count,
            step.seq,
            step.type,
            step.status,
            step.attempts,
            list(step.attempt_log),
            step.output,
            step.error,
            step.started_at,
            step.ended_at,
            step.wake_at,
            step.config,
        )

        def op(conn: sqlite3.Connection) -> None:
            self._put_step(conn, lease.key, snapshot, lease.epoch)

        self._enqueue(op, future)

    def take_event(
        self, lease: Lease, step: StepRow, type: str, now: float
    ) -> asyncio.Future[EventRow | None]:
        def op(conn: sqlite3.Connection) -> EventRow | None:
            self._fence(conn, lease)
            row = conn.execute(
                "SELECT seq, type, payload, created_at FROM events WHERE instance = ?"
                " AND type = ? AND consumed_by IS NULL ORDER BY seq LIMIT 1",
                (lease.key, type),
            ).fetchone()
            event = None
            stored = step
            if row is not None:
                event = EventRow(row[0], row[1], row[2].encode() if row[2] else None, row[3])
                conn.execute(
                    "UPDATE events SET consumed_by = ? WHERE seq = ?",
                    (f"{step.name}#{step.count}", event.seq),
                )
                stored = StepRow(
                    step.name,
                    step.count,
                    step.seq,
                    step.type,
                    "complete",
                    step.attempts,
                    step.attempt_log,
                    event_output(event),
                    None,
                    step.started_at,
                    now,
                    None,
                    step.config,
                )
            self._put_step(conn, lease.key, stored)
            return event

        return self._write(op)

    def suspend(
        self, lease: Lease, run_at: float | None, wait_types: Sequence[str], now: float
    ) -> asyncio.Future[str]:
        types = " " + " ".join(wait_types) + " " if wait_types else None

        def op(conn: sqlite3.Connection) -> str:
            self._fence(conn, lease)
            row = conn.execute(
                "SELECT pause_requested FROM instances WHERE key = ?", (lease.key,)
            ).fetchone()
            if row[0]:
                conn.execute(
                    "UPDATE instances SET status = 'paused', run_at = NULL, wait_types = NULL,"
                    " pause_requested = 0 WHERE key = ?",
                    (lease.key,),
                )
                return "paused"
            when = run_at
            if wait_types:
                marks = ",".join("?" * len(wait_types))
                pending = conn.execute(
                    f"SELECT 1 FROM events WHERE instance = ? AND type IN ({marks})"
                    " AND consumed_by IS NULL LIMIT 1",
                    (lease.key, *wait_types),
                ).fetchone()
                if pending is not None:
                    when = now
            conn.execute(
                "UPDATE instances SET status = 'waiting', run_at = ?, wait_types = ? WHERE key = ?",
                (when, types, lease.key),
            )
            return "waiting"

        return self._write(op)

    def finish(
        self,
        lease: Lease,
        status: str,
        output: bytes | None,
        error: dict[str, str] | None,
        now: float,
    ) -> asyncio.Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            self._fence(conn, lease)
            conn.execute(
                "UPDATE instances SET status = ?, output = ?, error = ?, ended_at = ?,"
                " run_at = NULL, wait_types = NULL, pause_requested = 0 WHERE key = ?",
                (
                    status,
                    _text(output),
                    orjson.dumps(error).decode() if error is not None else None,
                    now,
                    lease.key,
                ),
            )

        return self._write(op)

    # --- control ----------------------------------------------------------------------
    async def control(
        self, workflow: str, id: str, action: ControlAction, now: float
    ) -> InstanceRow:
        def op(conn: sqlite3.Connection) -> InstanceRow:
            row = conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ? AND id = ?",
                (workflow, id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
            inst = instance_from_row(row)
            _apply_control(conn, inst, action, now)
            return instance_from_row(
                conn.execute(
                    f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE key = ?", (inst.key,)
                ).fetchone()
            )

        return await self._write(op)

    async def send_event(
        self, workflow: str, id: str, type: str, payload: bytes | None, now: float
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT key, status FROM instances WHERE workflow = ? AND id = ?",
                (workflow, id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
            if row[1] in FINAL_STATUSES:
                raise InvalidTransitionError(
                    f"instance {id!r} is {row[1]}: it takes no more events"
                )
            conn.execute(
                "INSERT INTO events (instance, type, payload, created_at) VALUES (?, ?, ?, ?)",
                (row[0], type, _text(payload), now),
            )
            conn.execute(
                "UPDATE instances SET run_at = ? WHERE key = ? AND status = 'waiting'"
                " AND instr(wait_types, ?) > 0",
                (now, row[0], f" {type} "),
            )

        await self._write(op)

    # --- retention --------------------------------------------------------------------
    async def delete_finished(
        self,
        ended_before: float,
        *,
        statuses: Sequence[str] = FINISHED,
        workflow: str | None = None,
        limit: int = PRUNE_BATCH,
    ) -> int:
        # One write in the group-commit queue: the instances are chosen and deleted in the
        # writer's transaction, so nothing restarts one of them in between.
        def op(conn: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(statuses))
            sql = (
                f"SELECT key FROM instances WHERE ended_at < ? AND status IN ({marks})"
                + (" AND workflow = ?" if workflow is not None else "")
                + " ORDER BY ended_at LIMIT ?"
            )
            args: list[Any] = [ended_before, *statuses]
            if workflow is not None:
                args.append(workflow)
            args.append(limit)
            keys = [(r[0],) for r in conn.execute(sql, args)]
            if keys:
                conn.executemany("DELETE FROM steps WHERE instance = ?", keys)
                conn.executemany("DELETE FROM events WHERE instance = ?", keys)
                conn.executemany("DELETE FROM instances WHERE key = ?", keys)
            return len(keys)

        return await self._write(op)


def _apply_control(
    conn: sqlite3.Connection, inst: InstanceRow, action: ControlAction, now: float
) -> None:
    transition = control_transition(inst.status, action, inst.id)
    for sql, args in control_statements(transition.effect, inst.key, now):
        conn.execute(sql, args)
