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

Storage faults are answered, not crashed on (docs/reliability.md):

* A full disk (``SQLITE_FULL``) fails the batch with :class:`StorageFullError`, a
  read-only file or an I/O error with :class:`StoreUnavailableError`; nothing of the
  batch is applied, reads keep working, and the next batch tries again, so writes resume
  by themselves once space is back. A write of a running instance that fails this way
  stops its activation (:class:`StoreFault`, a :class:`LeaseLost`, so user code cannot
  catch it); the store makes the instance runnable again as soon as it can write.
* The file deleted or replaced under the host is noticed (its device and inode against
  the path's, at every commit and twice a second): from then on every write is refused
  with :class:`StoreUnavailableError` naming the file, because a write acknowledged into
  an unlinked file is lost at the next restart. A copy of everything the host still
  holds is written beside the path (``<file>.rescued-<time>``) for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlparse

import attrs
import orjson

from durableflow import (
    InstanceExistsError,
    InvalidTransitionError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
)
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

__all__ = ["SqliteStore", "StoreFault", "StoreLockedError"]

log = logging.getLogger("durableflow.sqlite")

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


class StoreFault(LeaseLost):
    """A write of a running instance failed because the store cannot write just now.

    A :class:`LeaseLost`, so it stops the activation wherever it is (user code's
    ``except Exception:`` cannot swallow it); the store makes the instance runnable again
    once it can write, and it resumes from its stored steps.
    """

    def __init__(self, message: str, cause: StoreUnavailableError) -> None:
        super().__init__(message)
        self.cause = cause


# primary result codes (the low byte of an extended code) that mean "the storage is
# failing", not "this statement is wrong"
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

# How often the file's identity is checked and stranded instances are released (seconds).
_WATCH_INTERVAL = 0.5


#: One queued write: what to run, who awaits it, and the lease when it is fenced.
_Entry = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any] | None", "Lease | None"]


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
        self._queue: list[_Entry] = []
        self._flush_scheduled = False
        self._flushing: asyncio.Future[Any] | None = None
        # attempt starts not yet queued: written at the next flush unless the attempt's
        # outcome (which supersedes them) arrives first
        self._starts: dict[tuple[int, str, int], tuple[Lease, StepRow]] = {}
        self._idle_commits = 0  # commits made at once since the event loop last came round
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        # the database file as opened (device, inode): the path must keep naming it
        self._identity: tuple[int, int] | None = None
        self._lost: str | None = None  # why writes are refused for good (file deleted)
        self._rescued: Path | None = None
        self._full = False  # a write met SQLITE_FULL: the checkpointer should run
        self._read_only: str | None = None  # why the file cannot be written, if it cannot
        self._recover_pending = False  # recover() met a fault: retried by _watch
        self._recover_at = 0.0
        # instances whose activation a storage fault stopped: made runnable again by the
        # first write that succeeds
        self._stranded: dict[int, Lease] = {}
        self._subscribers: list[Callable[[str, str, str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.TimerHandle | None = None

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
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise self._fault(exc) or exc from exc
        self._conn = conn
        try:
            if self._read_only is None:
                self._migrate(conn)
            else:
                self._check_version(conn)
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
        self._watcher = self._loop.call_later(_WATCH_INTERVAL, self._watch)
        if self.commit_mode == "thread":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="durableflow-sqlite")
        self._stop.clear()
        if self._read_only is None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="durableflow-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _why_read_only(self) -> str | None:
        """Why the database cannot be written (a read-only file, folder or disk), or ``None``."""
        folder = self.path.parent
        if not self.path.exists():
            if folder.is_dir() and not os.access(folder, os.W_OK):
                raise StoreUnavailableError(
                    f"cannot create {self.path}: its folder is read-only; make {folder} "
                    "writable by the host's user (or remount the disk read-write)"
                )
            return None
        if os.access(self.path, os.W_OK) and os.access(folder, os.W_OK):
            return None
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            what = "disk is mounted read-only"
        elif not os.access(self.path, os.W_OK):
            what = "file cannot be written"
        else:
            what = f"folder {folder} cannot be written"
        return (
            f"{self.path} is read-only (its {what}): the host serves reads "
            "and refuses every write with 503 store_unavailable. Make the file, its -wal and "
            "-shm files and its folder writable by the host's user (or remount the disk "
            "read-write), then restart the host."
        )

    def _lock(self) -> int:
        """Take the host's exclusive lock on the file (a shared one when read-only)."""
        lock = f"{self.path}.lock"
        if self._read_only is None:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        else:
            try:
                fd = os.open(lock, os.O_RDONLY)
            except FileNotFoundError:
                return -1  # no host wrote here since it became read-only: nothing to fence
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is in use by another durableflow host; one host per SQLite "
                "file (use PostgreSQL to run several hosts)"
            ) from None
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None and self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
        self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        if self._read_only is not None:
            uri = self.path.absolute().as_uri()
            try:
                conn = sqlite3.connect(
                    f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                if Path(f"{self.path}-wal").exists():
                    raise
                # a WAL database on a read-only disk cannot make its -shm file; with no
                # -wal file either, the file alone holds everything, and cannot change
                conn = sqlite3.connect(
                    f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
                )
            conn.execute("PRAGMA busy_timeout=5000")
            return conn
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        sync = "NORMAL" if self.durability == "normal" else "FULL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        if (row[0] or 0) != len(MIGRATIONS):
            raise StoreUnavailableError(
                f"{self.path} is read-only and has schema version {row[0]}, not "
                f"{len(MIGRATIONS)}: make it writable so that the host can migrate it"
            )

    def _warn_if_missing(self) -> None:
        """Say so loudly when the folder shows a host ran here but the database is gone."""
        if self.path.exists() or not self.path.parent.is_dir():
            return
        with contextlib.suppress(OSError):
            entries = sorted(p.name for p in self.path.parent.iterdir())
            # a host ran here: files named after the database (its lock, WAL, a rescued
            # copy), or anything at all in a folder of durableflow's own
            ran_here = any(e.startswith(self.path.name) for e in entries) or (
                bool(entries) and self.path.parent.name == ".durableflow"
            )
            if ran_here:
                log.warning(
                    "%s does not exist, but its folder %s is not empty (%s): if a host ran "
                    "here before, its database was deleted or moved and every instance it "
                    "held is gone from this host. Starting on a new, empty database. If "
                    "that is not what you want, stop the host and put the file back "
                    "(a copy named *.rescued-* is one the last host saved when it noticed).",
                    self.path,
                    self.path.parent,
                    ", ".join(entries[:10]) + (", ..." if len(entries) > 10 else ""),
                )
            # the -wal and -shm of the database that is gone must not be replayed into
            # the new one: set them aside
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("-wal", "-shm"):
                orphan = Path(f"{self.path}{suffix}")
                if orphan.exists():
                    aside = Path(f"{orphan}.orphaned-{stamp}")
                    orphan.rename(aside)
                    log.warning("moved %s, left by the missing database, to %s", orphan, aside)

    def _fault(self, exc: BaseException) -> StoreUnavailableError | None:
        """The SDK error for a failure of the storage itself, or ``None`` for other errors."""
        if isinstance(exc, StoreUnavailableError):
            return exc
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return StoreUnavailableError(
                f"cannot write {self.path}: {exc.strerror or exc}; check the disk and the "
                "file's permissions. Nothing stored was lost; try again."
            )
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == _SQLITE_FULL:
            self._full = True
            return StorageFullError(
                f"the disk holding {self.path} is full: the write was not applied. Free "
                "space on that disk; writes resume by themselves, reads keep working and "
                "nothing stored was lost."
            )
        if primary == _SQLITE_READONLY:
            return StoreUnavailableError(
                f"{self.path} is read-only ({exc}): the write was not applied. Make the file, "
                "its -wal and -shm files and its folder writable by the host's user (or "
                "remount the disk read-write), then restart the host. Reads keep working."
            )
        if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
            return StoreUnavailableError(
                f"I/O error on {self.path} ({exc}): the write was not applied. Check the "
                "disk (dmesg, free space, permissions); nothing acknowledged was lost."
            )
        return None

    def _check_file(self) -> str | None:
        """Why writes must stop for good (the file is gone or replaced), or ``None``."""
        if self._lost is not None or self._identity is None:
            return self._lost
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            what = "was deleted"
        except OSError:
            return None  # cannot tell (a transient error): the commit itself will say
        else:
            if (stat.st_dev, stat.st_ino) == self._identity:
                return None
            what = "was replaced by another file"
        self._lost = (
            f"the SQLite file {self.path} {what} while the host was running: writes are "
            "refused, because anything written now would be lost when the host restarts. "
            "Stop the host, put the database back at that path (the host saves a copy of "
            f"what it holds as {self.path}.rescued-<time>), and start it again."
        )
        log.error("%s", self._lost)
        return self._lost

    def _rescue(self, conn: sqlite3.Connection) -> None:
        """Copy the database the host still holds open to ``<path>.rescued-<time>``."""
        target = Path(f"{self.path}.rescued-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            copy = sqlite3.connect(target)
            try:
                conn.backup(copy)
            finally:
                copy.close()
        except (OSError, sqlite3.Error) as exc:
            self._rescued = target  # once: it would fail the same way again
            log.error(
                "could not save a copy of the deleted database to %s: %s (%s)",
                target,
                exc,
                getattr(exc, "sqlite_errorname", type(exc).__name__),
            )
            return
        self._rescued = target
        log.error(
            "saved a copy of everything this host holds to %s: stop the host, move it to %s "
            "and start the host again",
            target,
            self.path,
        )

    def _watch(self) -> None:
        """Every ``_WATCH_INTERVAL`` on the loop: notice a lost file, release stranded
        instances once the store writes again."""
        self._watcher = None
        if self._conn is None or self._stop.is_set():
            return
        self._check_file()
        if self._lost is None and self._read_only is None:
            if self._recover_pending:
                self._recover_pending = False
                at = self._recover_at
                self._write(lambda conn: _recover(conn, at)).add_done_callback(self._recovered)
            if self._stranded:
                self._release_stranded()
        assert self._loop is not None
        self._watcher = self._loop.call_later(_WATCH_INTERVAL, self._watch)

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
                conn.execute(
                    "UPDATE instances SET status = CASE WHEN pause_requested THEN 'paused'"
                    " ELSE 'queued' END, run_at = CASE WHEN pause_requested THEN NULL"
                    " ELSE ? END, pause_requested = 0, epoch = epoch + 1"
                    " WHERE key = ? AND epoch = ? AND status IN ('running', 'waitingForPause')",
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

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Be told ``("", "", "poll")`` when instances a storage fault stopped can run again."""
        self._subscribers.append(callback)

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
            # read once now: a connection that has never read cannot start reading once
            # the file is unlinked (SQLITE_IOERR_FSTAT), and this one must then rescue it
            conn.execute("SELECT count(*) FROM schema_version").fetchone()
            wal = Path(f"{self.path}-wal")
            while not self._stop.wait(_WATCH_INTERVAL):
                if self._check_file() is not None:
                    # this connection still reads the unlinked file: save what it holds
                    if self._rescued is None:
                        self._rescue(conn)
                    continue
                with contextlib.suppress(OSError, sqlite3.Error):
                    # after SQLITE_FULL too: a checkpoint lets the WAL be reused from its
                    # start instead of growing into the space that is missing
                    full, self._full = self._full, False
                    if full or (wal.exists() and wal.stat().st_size > 4 * 1024 * 1024):
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
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                try:
                    outcomes.append((True, fn(conn)))
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
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = self._fault(exc) or exc
            if error is not exc and error.__cause__ is None:
                error.__cause__ = exc
            return [(False, error)] * len(batch)
        return outcomes

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
        if self._read_only is not None:
            return  # nothing can run on a read-only store
        try:
            await self._write(lambda conn: _recover(conn, now))
        except StoreUnavailableError as exc:
            # a full disk at start: serve reads now, resume the instances once it writes
            log.warning(
                "cannot resume the instances the last host left running yet (%s); "
                "they resume as soon as the store writes again",
                exc.message,
            )
            self._recover_pending = True
            self._recover_at = now

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
        snapshot = attrs.evolve(step, attempt_log=list(step.attempt_log))

        def op(conn: sqlite3.Connection) -> None:
            self._put_step(conn, lease.key, snapshot, lease.epoch)

        self._enqueue(op, future, lease)

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
                stored = attrs.evolve(
                    step,
                    status="complete",
                    output=event_output(event),
                    error=None,
                    ended_at=now,
                    wake_at=None,
                )
            self._put_step(conn, lease.key, stored)
            return event

        return self._write(op, lease)

    async def pending_events(self, lease: Lease, types: Sequence[str]) -> dict[str, float]:
        marks = ",".join("?" * len(types))

        def op(conn: sqlite3.Connection) -> dict[str, float]:
            return {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT type, min(created_at) FROM events WHERE instance = ?"
                    f" AND type IN ({marks}) AND consumed_by IS NULL GROUP BY type",
                    (lease.key, *types),
                )
            }

        return await self._read(op)

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

        return self._write(op, lease)

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

        return self._write(op, lease)

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


def _recover(conn: sqlite3.Connection, now: float) -> None:
    """Make the instances a crash left running (or pausing) runnable (or paused)."""
    conn.execute(
        "UPDATE instances SET status = 'paused', run_at = NULL, pause_requested = 0"
        " WHERE status = 'waitingForPause'"
    )
    conn.execute(
        "UPDATE instances SET status = 'queued', run_at = ? WHERE status = 'running'",
        (now,),
    )


def _apply_control(
    conn: sqlite3.Connection, inst: InstanceRow, action: ControlAction, now: float
) -> None:
    transition = control_transition(inst.status, action, inst.id)
    for sql, args in control_statements(transition.effect, inst.key, now):
        conn.execute(sql, args)
