"""The SQLite file itself: read-only disks, the one-host lock, a database deleted or
replaced under the host (noticed, refused, rescued), the mapping of SQLite's result codes
to the SDK's storage errors, and the background checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from durableflow import StorageFullError, StoreUnavailableError
from durableflow import ValidationError as _ValidationError

__all__ = ["WATCH_INTERVAL", "FileGuard", "StoreLockedError"]

log = logging.getLogger("durableflow.sqlite")


class StoreLockedError(_ValidationError):
    """Another host already has this SQLite file open."""


# primary result codes (the low byte of an extended code) that mean "the storage is
# failing", not "this statement is wrong"
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

# How often the file's identity is checked and stranded instances are released (seconds).
WATCH_INTERVAL = 0.5


class FileGuard:
    """The checks on the database file, for :class:`SqliteStore` (which sets the state)."""

    path: Path
    _lock_fd: int | None
    _stop: threading.Event
    # the database file as opened (device, inode): the path must keep naming it
    _identity: tuple[int, int] | None
    _lost: str | None  # why writes are refused for good (file deleted)
    _rescued: Path | None
    _full: bool  # a write met SQLITE_FULL: the checkpointer should run
    _read_only: str | None  # why the file cannot be written, if it cannot

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

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            # read once now: a connection that has never read cannot start reading once
            # the file is unlinked (SQLITE_IOERR_FSTAT), and this one must then rescue it
            conn.execute("SELECT count(*) FROM schema_version").fetchone()
            wal = Path(f"{self.path}-wal")
            while not self._stop.wait(WATCH_INTERVAL):
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
