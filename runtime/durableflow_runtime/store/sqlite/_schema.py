"""The SQLite schema: its migrations, how the file is opened, and how it is migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from durableflow import StoreUnavailableError
from durableflow import ValidationError as _ValidationError

__all__ = ["MIGRATIONS", "check_version", "connect", "migrate"]

#: Versioned schema migrations; entry ``n - 1`` takes the schema to version ``n``.
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
    # 3: the traceparent of the request that created an instance (tracing)
    """
    ALTER TABLE instances ADD COLUMN trace TEXT;
    """,
    # 4: rollback: the status a rolling-back instance ends with (errored, terminated), and
    # how many times run() was retried under the workflow's run_retries
    """
    ALTER TABLE instances ADD COLUMN rollback_to TEXT;
    ALTER TABLE instances ADD COLUMN run_retries INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: streams written by steps, and instance logs
    """
    CREATE TABLE stream_chunks (
        instance INTEGER NOT NULL,
        stream TEXT NOT NULL,
        idx INTEGER NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (instance, stream, idx)
    ) WITHOUT ROWID;
    CREATE TABLE instance_logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        instance INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL,
        step TEXT,
        attempt INTEGER,
        created_at REAL NOT NULL,
        run_key TEXT,
        UNIQUE (instance, run_key)
    );
    CREATE INDEX instance_logs_by_instance ON instance_logs (instance, seq);
    """,
    # 6: child workflows: the key of the instance that started one
    """
    ALTER TABLE instances ADD COLUMN parent INTEGER;
    CREATE INDEX instances_by_parent ON instances (parent) WHERE parent IS NOT NULL;
    """,
    # 7: hooks and webhooks: tokens that resume an instance's wait, unique in the store
    """
    CREATE TABLE hooks (
        token TEXT PRIMARY KEY,
        instance INTEGER NOT NULL,
        kind TEXT NOT NULL,
        step TEXT NOT NULL,
        count INTEGER NOT NULL,
        channel TEXT NOT NULL,
        verify TEXT,
        created_at REAL NOT NULL,
        consumed_at REAL
    );
    CREATE INDEX hooks_by_instance ON hooks (instance);
    """,
    # 8: flow control (priority, concurrency keys, starts per period) and schedules
    """
    ALTER TABLE instances ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN concurrency_key TEXT;
    CREATE INDEX instances_due ON instances (workflow, run_at)
        WHERE run_at IS NOT NULL;
    CREATE INDEX instances_started ON instances (workflow, started_at)
        WHERE started_at IS NOT NULL;
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        last_tick REAL
    );
    """,
    # 9: the list of a workflow's instances, newest first, reads an index rather than the
    # whole table (the key is the rowid, which every index carries); the start-up
    # recovery finds the instances a crash left running without a scan
    """
    CREATE INDEX instances_by_key ON instances (workflow);
    CREATE INDEX instances_live ON instances (status)
        WHERE status IN ('running', 'waitingForPause', 'rollingBack');
    """,
    # 10: the version of the workflow class that created an instance (safe deploys)
    """
    ALTER TABLE instances ADD COLUMN version TEXT;
    """,
    # 11: a rate limit counts the starts of its own workflow, written by the claim of a
    # rate-limited workflow only, instead of an index over every instance's start (27 B
    # an instance); the last hour's starts (the longest period) carry over. The index by
    # status loses its explicit key: every SQLite index ends with the rowid, which the
    # key is, so it was stored twice (4 B an instance); the order and plans are the same
    """
    DROP INDEX instances_by_status;
    CREATE INDEX instances_by_status ON instances (workflow, status);
    CREATE TABLE flow_starts (workflow TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX flow_starts_by_workflow ON flow_starts (workflow, at);
    INSERT INTO flow_starts (workflow, at) SELECT workflow, started_at FROM instances
        WHERE started_at > CAST(strftime('%s', 'now') AS REAL) - 3600;
    DROP INDEX instances_started;
    """,
]


def connect(path: Path, durability: str, read_only: str | None) -> sqlite3.Connection:
    """Open the file for the host's one connection (read-only when ``read_only`` says why)."""
    if read_only is not None:
        uri = path.absolute().as_uri()
        try:
            conn = sqlite3.connect(
                f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            if Path(f"{path}-wal").exists():
                raise
            # a WAL database on a read-only disk cannot make its -shm file; with no
            # -wal file either, the file alone holds everything, and cannot change
            conn = sqlite3.connect(
                f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
        conn.execute("PRAGMA busy_timeout=5000")
        return conn
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    sync = "NORMAL" if durability == "normal" else "FULL"
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a read-only file whose schema this version would have to migrate."""
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if (row[0] or 0) != len(MIGRATIONS):
        raise StoreUnavailableError(
            f"{path} is read-only and has schema version {row[0]}, not "
            f"{len(MIGRATIONS)}: make it writable so that the host can migrate it"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations the file lacks, each in a transaction of its own.

    Raises:
        ValidationError: The file is newer than this version of durableflow.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > len(MIGRATIONS):
        raise _ValidationError(
            f"{path} has schema version {current}, newer than this durableflow "
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
