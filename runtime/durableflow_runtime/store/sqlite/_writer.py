"""The SQLite writer: every write is queued and the queue is applied in one transaction
per event-loop turn (group commit), inline or on one writer thread; a storage fault fails
the batch and stops the activations whose writes it held, which resume once a write
succeeds again. Step rows, the bulk of the writes, have a path of their own
(:class:`StepWrite`): one ``executemany`` for those that follow one another in a batch,
and one statement, with no transaction around it, for a step write alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from durableflow import StoreUnavailableError

from .._rows import STEP_COLUMNS, StepValues
from ..base import Lease, LeaseLost, StepRow
from ._files import WATCH_INTERVAL, FileGuard

__all__ = ["PUT_STEP", "GroupCommit", "StepWrite", "StoreFault", "recover"]

log = logging.getLogger("durableflow.sqlite")

T = TypeVar("T")

_IDLE_COMMITS = 32

#: A step row as a statement: ``INSERT OR REPLACE`` of the 14 values, instance first.
PUT_STEP = f"INSERT OR REPLACE INTO steps ({STEP_COLUMNS}) VALUES ({', '.join('?' * 14)})"
# the same, only while the lease's epoch is the instance's (?15 is the epoch)
_PUT_STEP_FENCED = (
    f"INSERT OR REPLACE INTO steps ({STEP_COLUMNS}) SELECT {', '.join('?' * 14)}"
    " WHERE (SELECT epoch FROM instances WHERE key = ?1) = ?15"
)
# the epochs of the instances whose keys a JSON array lists
_EPOCHS = "SELECT key, epoch FROM instances WHERE key IN (SELECT value FROM json_each(?))"
# below this many step rows in a row, one fenced statement each costs less than grouping
_GROUP_STEPS = 4


class StepWrite:
    """A queued write of one step row of a running instance, fenced by its lease's epoch.

    Called like any queued write; a batch groups the step writes that follow one another
    into one read of their epochs and one ``executemany`` (:meth:`GroupCommit._put_steps`),
    and a batch of a step write alone commits as one statement, with no ``BEGIN`` and
    ``COMMIT`` around it.
    """

    __slots__ = ("args", "epoch", "key")

    def __init__(self, lease: Lease, values: StepValues) -> None:
        self.key = lease.key
        self.epoch = lease.epoch
        self.args = (lease.key, *values)

    def __call__(self, conn: sqlite3.Connection) -> None:
        if conn.execute(_PUT_STEP_FENCED, (*self.args, self.epoch)).rowcount != 1:
            raise LeaseLost(f"instance key {self.key}")


class StoreFault(LeaseLost):
    """A write of a running instance failed because the store cannot write just now.

    A :class:`LeaseLost`, so it stops the activation wherever it is (user code's
    ``except Exception:`` cannot swallow it); the store makes the instance runnable again
    once it can write, and it resumes from its stored steps.
    """

    def __init__(self, message: str, cause: StoreUnavailableError) -> None:
        super().__init__(message)
        self.cause = cause


#: One queued write: what to run, who awaits it, and the lease when it is fenced.
_Entry = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any] | None", "Lease | None"]


def recover(conn: sqlite3.Connection, now: float) -> None:
    """Make the instances a crash left running (or pausing) runnable (or paused).

    Each statement names the statuses of the partial index ``instances_live`` so that it
    reads only the live instances, however many are stored.
    """
    conn.execute(
        "UPDATE instances SET status = 'paused', run_at = NULL, pause_requested = 0"
        f" WHERE status IN {_LIVE} AND status = 'waitingForPause'"
    )
    conn.execute(
        f"UPDATE instances SET status = 'queued', run_at = ? WHERE status IN {_LIVE}"
        " AND status = 'running'",
        (now,),
    )
    conn.execute(
        f"UPDATE instances SET run_at = ? WHERE status IN {_LIVE} AND status = 'rollingBack'",
        (now,),
    )


#: The statuses in the partial index ``instances_live`` (see the SQLite MIGRATIONS).
_LIVE = "('running', 'waitingForPause', 'rollingBack')"


class GroupCommit(FileGuard):
    """The write path of :class:`SqliteStore` (which sets the state) and the recovery from
    storage faults."""

    _conn: sqlite3.Connection | None
    _executor: ThreadPoolExecutor | None
    _queue: list[_Entry]
    _flush_scheduled: bool
    _flushing: asyncio.Future[Any] | None
    # attempt starts not yet queued: written at the next flush unless the attempt's
    # outcome (which supersedes them) arrives first
    _starts: dict[tuple[int, str, int], tuple[Lease, StepRow]]
    _idle_commits: int  # commits made at once since the event loop last came round
    _recover_pending: bool  # recover() met a fault: retried by _watch
    _recover_at: float
    # instances whose activation a storage fault stopped: made runnable again by the
    # first write that succeeds
    _stranded: dict[int, Lease]
    _subscribers: list[Callable[[str, str, str], None]]
    _loop: asyncio.AbstractEventLoop | None
    _watcher: asyncio.TimerHandle | None
    _stop: threading.Event

    def _queue_step(self, lease: Lease, step: StepRow, future: asyncio.Future[None] | None) -> None:
        """Queue the write of an attempt's start (the store writes steps; a flush calls it)."""
        raise NotImplementedError

    def _watch(self) -> None:
        """Every ``WATCH_INTERVAL`` on the loop: notice a lost file, release stranded
        instances once the store writes again."""
        self._watcher = None
        if self._conn is None or self._stop.is_set():
            return
        self._check_file()
        if self._lost is None and self._read_only is None:
            if self._recover_pending:
                self._recover_pending = False
                at = self._recover_at
                self._write(lambda conn: recover(conn, at)).add_done_callback(self._recovered)
            if self._stranded:
                self._release_stranded()
        assert self._loop is not None
        self._watcher = self._loop.call_later(WATCH_INTERVAL, self._watch)

    def _recovered(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._recover_pending = True  # still failing: the next watch tries again
            return
        log.info("the store writes again: the instances the last host left running resume")
        self._poll_subscribers()

    def _poll_subscribers(self) -> None:
        for callback in list(self._subscribers):
            callback("", "", "poll")

    def _release_stranded(self) -> None:
        stranded = dict(self._stranded)

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            for lease in stranded.values():
                # a rolling-back instance stays so (it cannot have a pause requested)
                conn.execute(
                    "UPDATE instances SET status = CASE WHEN status = 'rollingBack'"
                    " THEN 'rollingBack' WHEN pause_requested THEN 'paused' ELSE 'queued' END,"
                    " run_at = CASE WHEN pause_requested THEN NULL ELSE ? END,"
                    " pause_requested = 0, epoch = epoch + 1 WHERE key = ? AND epoch = ?"
                    " AND status IN ('running', 'waitingForPause', 'rollingBack')",
                    (now, lease.key, lease.epoch),
                )

        def done(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # still failing: the next watch tries again
            for key, lease in stranded.items():
                if self._stranded.get(key) == lease:
                    del self._stranded[key]
            log.info("the store writes again: %d stopped instance(s) resume", len(stranded))
            self._poll_subscribers()

        self._write(op).add_done_callback(done)

    # --- the two paths to the connection ----------------------------------------------
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        if self._stop.is_set():
            raise RuntimeError(f"the store {self.path} is closed")
        try:
            if self._executor is None:
                return fn(conn)
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.Error as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc

    def _write(
        self, fn: Callable[[sqlite3.Connection], T], lease: Lease | None = None
    ) -> asyncio.Future[T]:
        """Queue a write; it commits with the others queued in this event-loop turn.

        ``lease``: the write belongs to that running instance (a fault stops it).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._conn is None or self._stop.is_set():
            future.set_exception(RuntimeError(f"the store {self.path} is closed"))
            return future
        self._enqueue(fn, future, lease)
        return future

    def _enqueue(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: asyncio.Future[Any] | None,
        lease: Lease | None,
    ) -> None:
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
            self._apply([(fn, future, lease)])
            return
        self._queue.append((fn, future, lease))
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
            if len(batch) > 1:
                # a busy turn: several writers wait on each turn, so the next turn's
                # writes group from its first one on rather than commit one by one
                self._idle_commits = _IDLE_COMMITS
            self._apply(batch)
            self._after_flush()
            return
        loop = asyncio.get_running_loop()
        flushing: asyncio.Future[Any] = loop.run_in_executor(
            self._executor, self._apply_outcomes, batch
        )
        flushing.add_done_callback(lambda f: self._deliver_thread_batch(f, batch))
        self._flushing = flushing

    def _deliver_thread_batch(self, done: asyncio.Future[Any], batch: list[_Entry]) -> None:
        self._flushing = None
        exc = done.exception()
        outcomes: list[tuple[bool, Any]] = (
            [(False, exc)] * len(batch) if exc is not None else done.result()
        )
        self._settle(batch, outcomes)
        self._after_flush()

    def _after_flush(self) -> None:
        # writes (and attempt starts) that arrived while a thread batch was in flight
        if self._queue or self._starts:
            self._schedule_flush()

    def _apply_outcomes(self, batch: list[_Entry]) -> list[tuple[bool, Any]]:
        """Apply a batch in one transaction (on whichever thread commits)."""
        conn = self._connection()
        outcomes: list[tuple[bool, Any]] = []
        refused = self._read_only or self._check_file()
        if refused is not None:
            return [(False, StoreUnavailableError(refused))] * len(batch)
        if len(batch) == 1 and isinstance(batch[0][0], StepWrite):
            return [self._apply_alone(conn, batch[0][0])]
        try:
            conn.execute("BEGIN IMMEDIATE")
            n = 0
            while n < len(batch):
                fn = batch[n][0]
                if isinstance(fn, StepWrite):
                    end = n + 1
                    while end < len(batch) and isinstance(batch[end][0], StepWrite):
                        end += 1
                    if end - n >= _GROUP_STEPS:
                        outcomes.extend(self._put_steps(conn, batch[n:end]))
                        n = end
                        continue
                outcomes.append(self._apply_one(conn, fn))
                n += 1
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = self._fault(exc) or exc
            if error is not exc and error.__cause__ is None:
                error.__cause__ = exc
            return [(False, error)] * len(batch)
        return outcomes

    def _apply_one(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
    ) -> tuple[bool, Any]:
        """One write inside the batch's transaction: its outcome; a storage fault raises."""
        try:
            return True, fn(conn)
        except (Exception, LeaseLost) as exc:
            fault = self._fault(exc)
            if fault is not None:
                raise fault from exc  # the storage fails: the whole batch does
            if not conn.in_transaction:
                # SQLite rolled the transaction back by itself: nothing stands
                raise StoreUnavailableError(
                    f"{self.path}: SQLite rolled the transaction back ({exc}); "
                    "nothing of it was applied, try again"
                ) from exc
            return False, exc

    def _apply_alone(self, conn: sqlite3.Connection, write: StepWrite) -> tuple[bool, Any]:
        """A batch of one step write: one statement, which SQLite commits on its own
        (atomic and as durable as a transaction's ``COMMIT``); a fence it fails applies
        nothing."""
        try:
            write(conn)
        except (Exception, LeaseLost) as exc:
            fault = self._fault(exc)
            if fault is None:
                return False, exc
            if fault is not exc and fault.__cause__ is None:
                fault.__cause__ = exc
            return False, fault
        return True, None

    def _put_steps(self, conn: sqlite3.Connection, writes: list[_Entry]) -> list[tuple[bool, Any]]:
        """Step writes that follow one another in a batch: their instances' epochs in one
        read, then the rows whose lease holds in one ``executemany``, which is what the
        fence of each would have let through (nothing between them moves an epoch). A
        write that fails other than by a storage fault undoes the group, and the writes
        are applied one by one, so that each gets its own outcome."""
        steps = [fn for fn, _, _ in writes if isinstance(fn, StepWrite)]
        assert len(steps) == len(writes)
        keys = orjson.dumps(sorted({w.key for w in steps})).decode()
        epochs = dict(conn.execute(_EPOCHS, (keys,)).fetchall())
        held = [epochs.get(w.key) == w.epoch for w in steps]
        conn.execute("SAVEPOINT put_steps")
        try:
            conn.executemany(PUT_STEP, [w.args for w, ok in zip(steps, held, strict=True) if ok])
        except Exception as exc:
            fault = self._fault(exc)
            if fault is not None:
                raise fault from exc
            if not conn.in_transaction:
                raise StoreUnavailableError(
                    f"{self.path}: SQLite rolled the transaction back ({exc}); "
                    "nothing of it was applied, try again"
                ) from exc
            conn.execute("ROLLBACK TO put_steps")
            conn.execute("RELEASE put_steps")
            return [self._apply_one(conn, w) for w in steps]
        conn.execute("RELEASE put_steps")
        return [
            (True, None) if ok else (False, LeaseLost(f"instance key {w.key}"))
            for w, ok in zip(steps, held, strict=True)
        ]

    def _apply(self, batch: list[_Entry]) -> None:
        self._settle(batch, self._apply_outcomes(batch))

    def _settle(self, batch: list[_Entry], outcomes: list[tuple[bool, Any]]) -> None:
        """Hand each write its outcome, on the event loop's thread."""
        for (_, future, lease), (ok, value) in zip(batch, outcomes, strict=True):
            if not ok and lease is not None and isinstance(value, StoreUnavailableError):
                # a running instance's write: stop its activation, resume it later
                if lease.key not in self._stranded:
                    log.warning(
                        "instance %s/%s stopped, to resume when the store writes again: %s",
                        lease.workflow,
                        lease.id,
                        value.message,
                    )
                self._stranded[lease.key] = lease
                value = StoreFault(f"{lease.workflow}/{lease.id}: {value.message}", value)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
