"""The SQLite store's queries: the :class:`Store` methods, on the shared statements of
:mod:`.._queries` and the group commit of :mod:`._writer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import orjson

from durableflow import StoreUnavailableError
from durableflow import ValidationError as _ValidationError
from durableflow._types import StepRef

from .._flow import LONGEST_PERIOD, Blocked, FlowPlan, queued_run_at
from .._output import (
    APPEND_CHUNK,
    APPEND_LOG,
    READ_CHUNKS,
    READ_LOGS,
    STREAMS_OF,
    ChunkRow,
    LogRow,
    NewChunk,
    NewLog,
    StreamInfo,
    chunk_args,
    log_args,
)
from .._queries import CLAIM_SET, SQLITE, Queries
from .._rows import (
    INSTANCE_COLUMNS,
    STEP_COLUMNS,
    already_exists,
    child_payload,
    event_from_row,
    hook_from_row,
    hook_values,
    instance_from_row,
    json_text,
    lease_of,
    not_found,
    step_values,
    steps_by_instance,
    takes_events,
    text,
    with_event,
)
from ..base import (
    FINAL_STATUSES,
    FINISHED,
    PRUNE_BATCH,
    Claimed,
    ControlAction,
    EventRow,
    FlowLimits,
    FlowUsage,
    HookDelivery,
    HookKind,
    HookRow,
    InstanceCount,
    InstanceRef,
    InstanceRow,
    Lease,
    LeaseLost,
    NewInstance,
    ScheduleState,
    StepRow,
    Store,
    child_event_type,
)
from ._files import WATCH_INTERVAL
from ._schema import check_version, connect, migrate
from ._writer import PUT_STEP, GroupCommit, StepWrite, recover

__all__ = ["CommitMode", "Durability", "SqliteStore"]

log = logging.getLogger("durableflow.sqlite")

Durability = Literal["normal", "full"]
CommitMode = Literal["inline", "thread"]

Q = Queries(SQLITE)

# One statement claims and returns the rows: ``claim`` keeps their leases,
# ``claim_work`` loads their steps too.
_CLAIM = (
    f"UPDATE instances SET {CLAIM_SET} WHERE key IN (SELECT key FROM instances"
    f" WHERE run_at <= ? AND {SQLITE.can_run} ORDER BY run_at LIMIT ?)"
    f" RETURNING {INSTANCE_COLUMNS}"
)

# The same, leaving out the workflows with flow limits ({match}: they are not one of them),
# which ``_claim_limited`` takes one by one.
_CLAIM_UNLIMITED = (
    f"UPDATE instances SET {CLAIM_SET} WHERE key IN (SELECT key FROM instances"
    f" WHERE run_at <= ? AND {SQLITE.can_run} AND NOT {{match}} ORDER BY run_at LIMIT ?)"
    f" RETURNING {INSTANCE_COLUMNS}"
)

# Instances waiting on a timer only (no event wait) due after ? and at or before ?, not
# of a workflow with flow limits ({match}), earliest first: claimed ahead of their wake-up.
_AHEAD = (
    "SELECT key, run_at FROM instances WHERE run_at > ? AND run_at <= ?"
    f" AND status = 'waiting' AND wait_types IS NULL AND {SQLITE.can_run} AND NOT {{match}}"
    " ORDER BY run_at LIMIT ?"
)

_INSERT_INSTANCE = (
    "INSERT INTO instances (workflow, id, status, params, created_at, run_at, trace, parent,"
    " priority, concurrency_key, version) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"
)

_FINISH = (
    "UPDATE instances SET status = ?, output = ?, error = ?, ended_at = ?, run_at = NULL,"
    " wait_types = NULL, pause_requested = 0, rollback_to = NULL WHERE key = ? AND epoch = ?"
)


def _new_values(row: NewInstance) -> tuple[Any, ...]:
    return (
        row.workflow,
        row.id,
        text(row.params),
        row.created_at,
        queued_run_at(row.created_at, row.priority),
        row.trace,
        row.parent,
        row.priority,
        row.concurrency_key,
        row.version,
    )


def _tell_parent(
    conn: sqlite3.Connection, parent: int, workflow: str, id: str, end: str, now: float
) -> None:
    """Leave a child's parent the event of the child's end; wake it if it waits for it."""
    if conn.execute(Q.lock_parent, (parent,)).fetchone() is None:
        return  # the parent was deleted
    type = child_event_type(workflow, id)
    conn.execute(Q.insert_event, (parent, type, end, now))
    conn.execute(Q.wake_waiting, (now, parent, SQLITE.wait_key(type))).fetchall()


class SqliteStore(GroupCommit, Store):
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
        self._conn = None
        self._lock_fd = None
        self._executor = None
        self._queue = []
        self._flush_scheduled = False
        self._flushing = None
        self._starts = {}
        self._idle_commits = 0
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._identity = None
        self._lost = None
        self._rescued = None
        self._full = False
        self._read_only = None
        self._recover_pending = False
        self._recover_at = 0.0
        self._stranded = {}
        self._subscribers = []
        self._loop = None
        self._watcher = None
        self._blocked = Blocked()

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
        self._warn_if_missing()
        self._read_only = self._why_read_only()
        if self._read_only is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock_fd = self._lock()
            conn = connect(self.path, self.durability, self._read_only)
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise self._fault(exc) or exc from exc
        self._conn = conn
        try:
            if self._read_only is None:
                migrate(conn, self.path)
                conn.execute(Q.flow_starts_expire_all, (time.time() - LONGEST_PERIOD,))
            else:
                check_version(conn, self.path)
                log.warning("%s", self._read_only)
        except (OSError, sqlite3.Error, _ValidationError) as exc:
            conn.close()
            self._conn = None
            self._unlock()
            if isinstance(exc, _ValidationError):
                raise
            raise self._fault(exc) or exc from exc
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)
        self._lost = None
        self._loop = asyncio.get_running_loop()
        self._watcher = self._loop.call_later(WATCH_INTERVAL, self._watch)
        if self.commit_mode == "thread":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="durableflow-sqlite")
        self._stop.clear()
        if self._read_only is None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="durableflow-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Be told ``("", "", "poll")`` when instances a storage fault stopped can run again."""
        self._subscribers.append(callback)

    async def close(self) -> None:
        if self._conn is None:
            return
        while self._queue or self._starts or self._flushing is not None:
            if self._flushing is not None:
                await self._flushing
            else:
                await asyncio.sleep(0)
        self._stop.set()
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._read_only is None and self._lost is None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None
        self._unlock()

    # --- instances --------------------------------------------------------------------
    async def create_instances(self, rows: Sequence[NewInstance]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("SAVEPOINT create_instances")
            try:
                try:
                    conn.executemany(_INSERT_INSTANCE, [_new_values(row) for row in rows])
                except sqlite3.IntegrityError:
                    # an id is taken: undo, and insert one by one to name it
                    conn.execute("ROLLBACK TO create_instances")
                    for row in rows:
                        try:
                            conn.execute(_INSERT_INSTANCE, _new_values(row))
                        except sqlite3.IntegrityError:
                            raise already_exists(row.workflow, row.id) from None
            except BaseException:
                # after SQLITE_FULL or an I/O error SQLite may have rolled the whole
                # transaction back already: keep the error that says why
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK TO create_instances")
                    conn.execute("RELEASE create_instances")
                raise
            conn.execute("RELEASE create_instances")

        await self._write(op)

    async def get_instance(self, workflow: str, id: str) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(Q.instance_by_name, (workflow, id)).fetchone()
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
        version: str | None = None,
    ) -> list[InstanceRow]:
        sql, args = Q.list_instances(
            workflow, status, limit, cursor, id_prefix, created_after, created_before, version
        )
        return await self._read(
            lambda conn: [instance_from_row(r) for r in conn.execute(sql, args)]
        )

    async def load_steps(self, key: int) -> list[StepRow]:
        def op(conn: sqlite3.Connection) -> list[StepRow]:
            return steps_by_instance(conn.execute(Q.steps_of_instance, (key,))).get(key, [])

        return await self._read(op)

    # --- scheduling -------------------------------------------------------------------
    async def recover(self, now: float) -> None:
        if self._read_only is not None:
            return  # nothing can run on a read-only store
        try:
            await self._write(lambda conn: recover(conn, now))
        except StoreUnavailableError as exc:
            # a full disk at start: serve reads now, resume the instances once it writes
            log.warning(
                "cannot resume the instances the last host left running yet (%s); "
                "they resume as soon as the store writes again",
                exc.message,
            )
            self._recover_pending = True
            self._recover_at = now

    def _claim(
        self, conn: sqlite3.Connection, now: float, limit: int, due: float | None = None
    ) -> list[tuple[InstanceRow, float | None]]:
        """The rows claimed, each with the ``run_at`` it had when claimed ahead of it."""
        limited = self.flow_limits
        runnable = SQLITE.can_run_args(self.runnable)
        if limited:
            match, names = SQLITE.any_of("workflow", list(limited))
            claim, args = _CLAIM_UNLIMITED.format(match=match), (now, now, *runnable, *names)
        else:
            match, names = "0", []
            claim, args = _CLAIM, (now, now, *runnable)
        rows: list[tuple[InstanceRow, float | None]] = [
            (instance_from_row(r), None) for r in conn.execute(claim, (*args, limit))
        ]
        # the writer runs this transaction alone: measuring and claiming cannot interleave
        # with another claim, so the limits hold without a lock
        for workflow, flow in limited.items():
            room = limit - len(rows)
            if room <= 0:
                break
            rows += ((row, None) for row in self._claim_limited(conn, workflow, flow, now, room))
        if due is not None and due > now and len(rows) < limit:
            ahead = conn.execute(
                _AHEAD.format(match=match), (now, due, *runnable, *names, limit - len(rows))
            ).fetchall()
            if ahead:
                wake = dict(ahead)
                marks = ",".join("?" * len(ahead))
                claim = (
                    f"UPDATE instances SET {CLAIM_SET} WHERE key IN ({marks})"
                    f" RETURNING {INSTANCE_COLUMNS}"
                )
                for r in conn.execute(claim, (now, *wake)):
                    row = instance_from_row(r)
                    rows.append((row, wake[row.key]))
        return rows

    def _claim_limited(
        self, conn: sqlite3.Connection, workflow: str, flow: FlowLimits, now: float, room: int
    ) -> list[InstanceRow]:
        period = flow.rate[1] if flow.rate is not None else 0.0
        plan = FlowPlan.measure(
            flow,
            now,
            conn.execute(Q.flow_executing, (workflow,)).fetchone()[0],
            conn.execute(Q.flow_executing_by_key, (workflow,)) if flow.key_concurrency else (),
            conn.execute(Q.flow_started, (workflow, now - period)).fetchone()
            if flow.rate
            else None,
        )
        sql, args = plan.candidates(Q, workflow, room, self.runnable)
        keys = plan.pick(conn.execute(sql, args).fetchall(), room)
        self._blocked.note(workflow, plan.blocked_until, now)
        if not keys:
            return []
        if plan.new_starts and flow.rate is not None:
            conn.execute(Q.flow_starts_expire, (workflow, now - period))
            conn.executemany(Q.flow_start, [(workflow, now)] * plan.new_starts)
        marks = ",".join("?" * len(keys))
        claim = (
            f"UPDATE instances SET {CLAIM_SET} WHERE key IN ({marks}) RETURNING {INSTANCE_COLUMNS}"
        )
        return [instance_from_row(r) for r in conn.execute(claim, (now, *keys))]

    async def claim(self, now: float, limit: int, due: float | None = None) -> list[Lease]:
        rows = await self._write(lambda conn: self._claim(conn, now, limit, due))
        return [lease_of(row) for row, _ in rows]

    async def claim_work(self, now: float, limit: int, due: float | None = None) -> list[Claimed]:
        def op(conn: sqlite3.Connection) -> list[Claimed]:
            rows = self._claim(conn, now, limit, due)
            if not rows:
                return []
            marks = ",".join("?" * len(rows))
            steps = steps_by_instance(
                conn.execute(
                    f"SELECT {STEP_COLUMNS} FROM steps WHERE instance IN ({marks})"
                    " ORDER BY instance, seq",
                    [row.key for row, _ in rows],
                )
            )
            return [
                Claimed(lease_of(row), row, steps.get(row.key, []), not_before)
                for row, not_before in rows
            ]

        return await self._write(op)

    async def in_flight_by_version(self, workflow: str) -> dict[str | None, int]:
        def op(conn: sqlite3.Connection) -> dict[str | None, int]:
            return dict(conn.execute(Q.in_flight_by_version, (workflow,)).fetchall())

        return await self._read(op)

    async def status_counts(self, workflow: str) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute(Q.status_counts, (workflow,)).fetchall())

        return await self._read(op)

    async def instance_counts(self, now: float) -> list[InstanceCount]:
        def op(conn: sqlite3.Connection) -> list[InstanceCount]:
            return [InstanceCount(*row) for row in conn.execute(Q.instance_counts, (now,))]

        return await self._read(op)

    async def next_run_at(self) -> float | None:
        blocked = self._blocked

        def op(conn: sqlite3.Connection) -> float | None:
            if blocked.until:
                row = conn.execute(
                    *Q.next_run_at_unblocked(list(blocked.until), blocked.at, self.runnable)
                )
            else:
                row = conn.execute(Q.next_run_at, SQLITE.can_run_args(self.runnable))
            found = row.fetchone()
            return blocked.earliest(found[0] if found else None)

        return await self._read(op)

    async def flow_usage(
        self, workflow: str, concurrency_key: str | None, now: float, period: float
    ) -> FlowUsage:
        def op(conn: sqlite3.Connection) -> FlowUsage:
            executing = conn.execute(Q.flow_executing, (workflow,)).fetchone()[0]
            for_key = (
                conn.execute(Q.flow_executing_for_key, (workflow, concurrency_key)).fetchone()[0]
                if concurrency_key is not None
                else 0
            )
            started, oldest = conn.execute(Q.flow_started, (workflow, now - period)).fetchone()
            return FlowUsage(executing, for_key, started, oldest)

        return await self._read(op)

    # --- schedules --------------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleState]:
        def op(conn: sqlite3.Connection) -> dict[str, ScheduleState]:
            return {
                r[0]: ScheduleState(r[0], bool(r[1]), r[2]) for r in conn.execute(Q.schedule_states)
            }

        return await self._read(op)

    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> None:
        await self._write(lambda conn: conn.execute(Q.pause_schedule, (name, paused, now)))

    async def mark_schedule_tick(self, name: str, tick: float) -> None:
        await self._write(lambda conn: conn.execute(Q.mark_schedule_tick, (name, tick)))

    # --- fenced writes ----------------------------------------------------------------
    @staticmethod
    def _fence(conn: sqlite3.Connection, lease: Lease) -> bool:
        """Raise :class:`LeaseLost` unless ``lease`` is current; its ``pause_requested``."""
        row = conn.execute(Q.fence, (lease.key, lease.epoch)).fetchone()
        if row is None:
            raise LeaseLost(f"{lease.workflow}/{lease.id}")
        return bool(row[0])

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
        # bind now: the caller keeps mutating its record while the write waits in the queue
        self._enqueue(StepWrite(lease, step_values(step)), future, lease)

    def take_event(
        self, lease: Lease, step: StepRow, type: str, now: float
    ) -> asyncio.Future[EventRow | None]:
        values = step_values(step)

        def op(conn: sqlite3.Connection) -> EventRow | None:
            self._fence(conn, lease)
            consumer = f"{step.name}#{step.count}"
            row = conn.execute(Q.consume_event, (consumer, lease.key, type)).fetchall()
            event = event_from_row(row[0]) if row else None
            stored = with_event(values, event, now) if event is not None else values
            conn.execute(PUT_STEP, (lease.key, *stored))
            return event

        return self._write(op, lease)

    async def pending_events(self, lease: Lease, types: Sequence[str]) -> dict[str, float]:
        sql, args = Q.pending_events(lease.key, types)
        return await self._read(lambda conn: {r[0]: r[1] for r in conn.execute(sql, args)})

    async def oldest_events(self, lease: Lease, types: Sequence[str]) -> dict[str, EventRow]:
        sql, args = Q.oldest_events(lease.key, types)

        def op(conn: sqlite3.Connection) -> dict[str, EventRow]:
            return {r[1]: event_from_row(r) for r in conn.execute(sql, args)}

        return await self._read(op)

    def suspend(
        self, lease: Lease, run_at: float | None, wait_types: Sequence[str], now: float
    ) -> asyncio.Future[str]:
        def op(conn: sqlite3.Connection) -> str:
            if self._fence(conn, lease):
                conn.execute(Q.suspend_paused, (lease.key,))
                return "paused"
            if wait_types:
                conn.execute(*Q.suspend_waiting(lease.key, run_at, wait_types, now))
            else:
                conn.execute(
                    "UPDATE instances SET status = 'waiting', run_at = ?, wait_types = NULL"
                    " WHERE key = ?",
                    (run_at, lease.key),
                )
            return "waiting"

        return self._write(op, lease)

    def begin_rollback(
        self, lease: Lease, error: dict[str, str], rollback_to: str
    ) -> asyncio.Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            self._fence(conn, lease)
            conn.execute(Q.begin_rollback, (json_text(error), rollback_to, lease.key))

        return self._write(op, lease)

    def suspend_rollback(self, lease: Lease, run_at: float) -> asyncio.Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            self._fence(conn, lease)
            conn.execute(Q.suspend_rollback, (run_at, lease.key))

        return self._write(op, lease)

    def retry_run(
        self, lease: Lease, run_at: float, error: dict[str, str], dropped: Sequence[StepRow]
    ) -> asyncio.Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            paused = self._fence(conn, lease)
            conn.executemany(
                Q.delete_step, [(lease.key, step.name, step.count) for step in dropped]
            )
            conn.execute(Q.retry_run, (json_text(error), lease.key))
            if paused:
                conn.execute(Q.suspend_paused, (lease.key,))
            else:
                conn.execute(
                    "UPDATE instances SET status = 'waiting', run_at = ?, wait_types = NULL"
                    " WHERE key = ?",
                    (run_at, lease.key),
                )

        return self._write(op, lease)

    def finish(
        self,
        lease: Lease,
        status: str,
        output: bytes | None,
        error: dict[str, str] | None,
        now: float,
        *,
        parent: int | None = None,
    ) -> asyncio.Future[None]:
        args = (status, text(output), json_text(error), now, lease.key, lease.epoch)

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(_FINISH, args).rowcount != 1:
                raise LeaseLost(f"{lease.workflow}/{lease.id}")
            if parent is not None:
                end = child_payload(status, args[1], args[2])
                _tell_parent(conn, parent, lease.workflow, lease.id, end, now)

        return self._write(op, lease)

    # --- streams and logs -------------------------------------------------------------
    def append_chunk(self, lease: Lease, chunk: NewChunk) -> asyncio.Future[int]:
        args = (*chunk_args(chunk), lease.key, lease.epoch)

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(APPEND_CHUNK, args).fetchone()
            if row is None:
                raise LeaseLost(f"{lease.workflow}/{lease.id}")
            return int(row[0])

        return self._write(op, lease)

    def append_log(self, lease: Lease, entry: NewLog) -> asyncio.Future[None]:
        args = (*log_args(entry), lease.key, lease.epoch)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(APPEND_LOG, args)

        return self._write(op, lease)

    async def read_chunks(self, key: int, stream: str, start: int, limit: int) -> list[ChunkRow]:
        def op(conn: sqlite3.Connection) -> list[ChunkRow]:
            return [ChunkRow(*r) for r in conn.execute(READ_CHUNKS, (key, stream, start, limit))]

        return await self._read(op)

    async def read_logs(self, key: int, after: int, limit: int) -> list[LogRow]:
        def op(conn: sqlite3.Connection) -> list[LogRow]:
            return [LogRow(*r) for r in conn.execute(READ_LOGS, (key, after, limit))]

        return await self._read(op)

    async def list_streams(self, key: int) -> list[StreamInfo]:
        def op(conn: sqlite3.Connection) -> list[StreamInfo]:
            return [StreamInfo(*r) for r in conn.execute(STREAMS_OF, (key,))]

        return await self._read(op)

    def start_child(
        self, lease: Lease, step: StepRow, child: NewInstance
    ) -> asyncio.Future[Literal["created", "adopted", "taken"]]:
        values = step_values(step)

        def op(conn: sqlite3.Connection) -> Literal["created", "adopted", "taken"]:
            self._fence(conn, lease)
            try:
                conn.execute(_INSERT_INSTANCE, _new_values(child))
                outcome: Literal["created", "adopted", "taken"] = "created"
            except sqlite3.IntegrityError:
                row = conn.execute(Q.child_by_name, (child.workflow, child.id)).fetchone()
                if row is None or row[1] != lease.key:
                    return "taken"
                outcome = "adopted"
                type = child_event_type(child.workflow, child.id)
                pending = conn.execute(Q.has_pending_event, (lease.key, type)).fetchone()
                if row[2] in FINAL_STATUSES and pending is None:
                    end = child_payload(row[2], row[3], row[4])
                    conn.execute(Q.insert_event, (lease.key, type, end, child.created_at))
            conn.execute(PUT_STEP, (lease.key, *values))
            return outcome

        return self._write(op, lease)

    async def terminate(
        self, workflow: str, id: str, now: float, *, cascade: bool = False
    ) -> list[InstanceRow]:
        def op(conn: sqlite3.Connection) -> list[InstanceRow]:
            row = conn.execute(Q.lock_instance_by_name, (workflow, id)).fetchone()
            _, statements = Q.control(row, workflow, id, "terminate", now)  # or raises
            assert row is not None
            doomed = [(instance_from_row(row), statements)]
            if cascade:
                for r in conn.execute(Q.running_descendants, (row[0],)).fetchall():
                    doomed.append((instance_from_row(r), Q.terminated(r[0], now)))
            after = []
            for inst, statements in doomed:
                for sql, args in statements:
                    conn.execute(sql, args)
                if inst.parent is not None:
                    end = child_payload("terminated", None, None)
                    _tell_parent(conn, inst.parent, inst.workflow, inst.id, end, now)
                after.append(
                    instance_from_row(conn.execute(Q.instance_by_key, (inst.key,)).fetchone())
                )
            return after

        return await self._write(op)

    async def relatives(self, row: InstanceRow) -> tuple[InstanceRef | None, list[InstanceRef]]:
        def op(conn: sqlite3.Connection) -> tuple[InstanceRef | None, list[InstanceRef]]:
            parent = None
            if row.parent is not None:
                found = conn.execute(Q.ref_by_key, (row.parent,)).fetchone()
                parent = InstanceRef(*found) if found is not None else None
            children = [InstanceRef(*r) for r in conn.execute(Q.children_of, (row.key,))]
            return parent, children

        return await self._read(op)

    # --- control ----------------------------------------------------------------------
    async def control(
        self, workflow: str, id: str, action: ControlAction, now: float
    ) -> InstanceRow:
        def op(conn: sqlite3.Connection) -> InstanceRow:
            row = conn.execute(Q.lock_instance_by_name, (workflow, id)).fetchone()
            key, statements = Q.control(row, workflow, id, action, now)
            for sql, args in statements:
                conn.execute(sql, args)
            return instance_from_row(conn.execute(Q.instance_by_key, (key,)).fetchone())

        return await self._write(op)

    async def restart_from(self, workflow: str, id: str, step: StepRef, now: float) -> InstanceRow:
        def op(conn: sqlite3.Connection) -> InstanceRow:
            row = conn.execute(Q.lock_instance_by_name, (workflow, id)).fetchone()
            if row is None:
                raise not_found(workflow, id)
            inst = instance_from_row(row)
            steps = steps_by_instance(conn.execute(Q.steps_of_instance, (inst.key,)))
            for sql, args in Q.restart_from(inst, steps.get(inst.key, []), step, now):
                conn.execute(sql, args)
            return instance_from_row(conn.execute(Q.instance_by_key, (inst.key,)).fetchone())

        return await self._write(op)

    async def delete_instance(self, workflow: str, id: str, now: float | None = None) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(Q.lock_status_by_name, (workflow, id)).fetchone()
            if row is None:
                return False
            parent = conn.execute(Q.waiting_parent, (row[0],)).fetchone()
            for sql, args in Q.delete_instance(row[0]):
                conn.execute(sql, args)
            if parent is not None and now is not None:
                end = child_payload("terminated", None, None)
                _tell_parent(conn, parent[0], workflow, id, end, now)
            return True

        return await self._write(op)

    async def load_events(self, key: int) -> list[EventRow]:
        def op(conn: sqlite3.Connection) -> list[EventRow]:
            return [event_from_row(r) for r in conn.execute(Q.events_of_instance, (key,))]

        return await self._read(op)

    async def send_event(
        self, workflow: str, id: str, type: str, payload: bytes | None, now: float
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute(Q.lock_status_by_name, (workflow, id)).fetchone()
            key = takes_events(row, workflow, id)
            conn.execute(Q.insert_event, (key, type, text(payload), now))
            conn.execute(Q.wake_waiting, (now, key, SQLITE.wait_key(type))).fetchall()

        await self._write(op)

    # --- hooks and webhooks -------------------------------------------------------------
    def register_hook(
        self, lease: Lease, hook: HookRow, step: StepRow | None
    ) -> asyncio.Future[bool]:
        hook_args = hook_values(hook)
        step_args = (lease.key, *step_values(step)) if step is not None else None

        def op(conn: sqlite3.Connection) -> bool:
            self._fence(conn, lease)
            conn.execute(Q.delete_stale_hook, (hook.token,))
            if not conn.execute(Q.insert_hook, hook_args).fetchall():
                return False
            if step_args is not None:
                conn.execute(PUT_STEP, step_args)
            return True

        return self._write(op, lease)

    async def find_hook(self, token: str) -> HookRow | None:
        def op(conn: sqlite3.Connection) -> HookRow | None:
            row = conn.execute(Q.hook_by_token, (token,)).fetchone()
            return hook_from_row(row) if row is not None else None

        return await self._read(op)

    async def deliver_hook(
        self, token: str, kind: HookKind, payload: bytes | None, now: float
    ) -> tuple[HookDelivery, HookRow | None]:
        def op(conn: sqlite3.Connection) -> tuple[HookDelivery, HookRow | None]:
            row = conn.execute(Q.hook_by_token, (token,)).fetchone()
            hook = hook_from_row(row) if row is not None else None
            if hook is None or hook.kind != kind:
                return "unknown", None
            refusal = hook.refusal()
            if refusal is not None:
                return refusal, hook
            conn.execute(Q.insert_event, (hook.key, hook.channel, text(payload), now))
            conn.execute(Q.consume_hook, (now, token))
            conn.execute(Q.wake_waiting, (now, hook.key, SQLITE.wait_key(hook.channel))).fetchall()
            return "delivered", hook

        return await self._write(op)

    async def waiting_configs(self, workflow: str, id: str) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(Q.waiting_configs, (workflow, id)).fetchall()
            return [orjson.loads(r[0]) for r in rows if r[0] is not None]

        return await self._read(op)

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
            keys = [r[0] for r in conn.execute(sql, args)]
            for key in keys:
                for statement, statement_args in Q.delete_instance(key):
                    conn.execute(statement, statement_args)
            return len(keys)

        return await self._write(op)
