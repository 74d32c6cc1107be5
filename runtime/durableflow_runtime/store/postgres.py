"""The PostgreSQL store: several hosts share one database and coordinate through it.

How the hosts stay out of each other's way:

* **Claims.** A host takes runnable instances with ``UPDATE ... WHERE key IN (SELECT ...
  FOR UPDATE SKIP LOCKED)``, which bumps the instance's ``epoch`` and gives the host a
  lease (``owner``, ``lease_expires``). Instances whose lease expired are runnable too:
  that is how another host takes over from one that died or stalled.
* **Leases.** The store renews the leases it holds every ``lease_seconds / 3`` until the
  instance suspends, finishes, or is terminated or restarted, so the engine knows nothing
  of them. A renewal that finds the epoch moved drops the lease and stops the activation.
* **Fencing.** Every write of a running instance names its lease's epoch and locks the
  instance row for the rest of its transaction; when the epoch moved on the write does
  nothing and raises :class:`LeaseLost`. A host that comes back from a stall commits
  nothing for instances another host took over.
* **Group commit.** Fenced writes are queued and applied by one flush loop, one batch per
  transaction. Within a batch, writes of one instance keep their call order; writes of
  different instances are grouped into one multi-row statement per kind, so a batch of a
  thousand step results is a handful of round trips and one commit.
* **Push, with polling behind it.** ``LISTEN/NOTIFY`` tells the other hosts about new
  instances, events that wake an instance, and pause / resume / terminate / restart of
  instances they run; a poll every ``poll_interval`` covers lost notifications.
* **Outages.** A write that fails before its commit (the server restarted, a deadlock)
  is retried for up to ``reconnect_timeout`` seconds; the pool reconnects and the LISTEN
  connection is re-established. A call made for a client (create, read, control, send an
  event) is retried for ``unavailable_timeout`` seconds only (5 by default), then raises
  :class:`StoreUnavailableError` (HTTP 503), so that the answer comes back well inside a
  client's timeout. A full disk (SQLSTATE 53100 ``disk_full``) is not retried: it raises
  :class:`StorageFullError` (HTTP 507), and a running instance's write that meets it
  forfeits its lease, so the instance resumes from its stored steps once space is back. A fenced write whose commit outcome is unknown forfeits
  its lease (:class:`LeaseLost`): the instance is replayed from its stored steps, which
  is always safe. Other writes whose outcome is unknown raise
  :class:`StoreUnavailableError`, so the caller can check and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import asyncpg
import attrs
import orjson

from durableflow import (
    InstanceExistsError,
    InvalidTransitionError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    ValidationError,
)

from ._rows import INSTANCE_COLUMNS, event_output, instance_from_row
from .base import (
    FINAL_STATUSES,
    FINISHED,
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
    redact_url,
)
from .transitions import control_statements, control_transition, numbered

__all__ = ["MIGRATIONS", "PostgresStore", "StoreUnavailableError"]

log = logging.getLogger("durableflow.postgres")

T = TypeVar("T")

#: Versioned schema migrations; entry ``n - 1`` takes the schema to version ``n``.
MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE instances (
        key bigserial PRIMARY KEY,
        workflow text NOT NULL,
        id text NOT NULL,
        status text NOT NULL,
        params text,
        output text,
        error text,
        created_at double precision NOT NULL,
        started_at double precision,
        ended_at double precision,
        run_at double precision,
        epoch bigint NOT NULL DEFAULT 0,
        generation bigint NOT NULL DEFAULT 0,
        pause_requested boolean NOT NULL DEFAULT false,
        wait_types text[],
        owner text,
        lease_expires timestamptz,
        UNIQUE (workflow, id)
    );
    CREATE INDEX instances_run_at ON instances (run_at) WHERE run_at IS NOT NULL;
    CREATE INDEX instances_leased ON instances (lease_expires)
        WHERE status IN ('running', 'waitingForPause');
    CREATE INDEX instances_by_status ON instances (workflow, status, key);
    CREATE INDEX instances_by_key ON instances (workflow, key);
    CREATE TABLE steps (
        instance bigint NOT NULL,
        name text NOT NULL,
        count integer NOT NULL,
        seq integer NOT NULL,
        type text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL,
        attempt_log text NOT NULL,
        output text,
        error text,
        started_at double precision,
        ended_at double precision,
        wake_at double precision,
        config text,
        host text,
        PRIMARY KEY (instance, name, count)
    );
    CREATE TABLE events (
        seq bigserial PRIMARY KEY,
        instance bigint NOT NULL,
        type text NOT NULL,
        payload text,
        created_at double precision NOT NULL,
        consumed_by text
    );
    CREATE INDEX events_pending ON events (instance, type, seq) WHERE consumed_by IS NULL;
    CREATE INDEX events_by_instance ON events (instance);
    """,
    # 2: retention finds finished instances by end time
    """
    CREATE INDEX instances_ended ON instances (ended_at) WHERE ended_at IS NOT NULL;
    """,
]

_LEASED = "('running', 'waitingForPause')"

# --- the hot path: constant SQL, so every connection prepares each statement once ------
_CLAIM = f"""
WITH due AS (
    SELECT key FROM instances WHERE run_at <= $1
    ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT key FROM instances WHERE status IN {_LEASED} AND lease_expires < now()
    LIMIT $2 FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT key FROM due UNION ALL SELECT key FROM expired LIMIT $2
)
UPDATE instances i SET
    status = CASE WHEN i.pause_requested THEN 'waitingForPause' ELSE 'running' END,
    run_at = NULL, wait_types = NULL, epoch = i.epoch + 1,
    started_at = coalesce(i.started_at, $1),
    owner = $3, lease_expires = now() + make_interval(secs => $4)
FROM picked WHERE i.key = picked.key
RETURNING i.workflow, i.id, i.key, i.epoch
"""

_CLAIM_ROWS = _CLAIM.replace(
    "RETURNING i.workflow, i.id, i.key, i.epoch",
    "RETURNING " + ", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(",")),
)

_PUT_STEPS = """
INSERT INTO steps AS s (instance, name, count, seq, type, status, attempts, attempt_log,
    output, error, started_at, ended_at, wake_at, config, host)
SELECT v.instance, v.name, v.count, v.seq, v.type, v.status, v.attempts, v.attempt_log,
    v.output, v.error, v.started_at, v.ended_at, v.wake_at, v.config, $16
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[],
    $7::text[], $8::int[], $9::text[], $10::text[], $11::text[], $12::float8[],
    $13::float8[], $14::float8[], $15::text[])
    AS v(instance, epoch, name, count, seq, type, status, attempts, attempt_log, output,
         error, started_at, ended_at, wake_at, config)
JOIN instances i ON i.key = v.instance AND i.epoch = v.epoch
FOR NO KEY UPDATE OF i
ON CONFLICT (instance, name, count) DO UPDATE SET
    seq = EXCLUDED.seq, type = EXCLUDED.type, status = EXCLUDED.status,
    attempts = EXCLUDED.attempts, attempt_log = EXCLUDED.attempt_log,
    output = EXCLUDED.output, error = EXCLUDED.error, started_at = EXCLUDED.started_at,
    ended_at = EXCLUDED.ended_at, wake_at = EXCLUDED.wake_at, config = EXCLUDED.config,
    host = EXCLUDED.host
RETURNING s.instance, s.name, s.count
"""

_FINISH = """
UPDATE instances i SET status = v.status, output = v.output, error = v.error,
    ended_at = v.ended_at, run_at = NULL, wait_types = NULL, pause_requested = false,
    owner = NULL, lease_expires = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::float8[])
    AS v(key, epoch, status, output, error, ended_at)
WHERE i.key = v.key AND i.epoch = v.epoch
RETURNING i.key
"""

# A suspension that waits for a timer only. One with no wake-up time is made runnable at
# once rather than left waiting for nothing (a pause that was taken back while the
# activation was already stopping for it).
_SUSPEND = """
UPDATE instances i SET
    status = CASE WHEN i.pause_requested THEN 'paused' ELSE 'waiting' END,
    run_at = CASE WHEN i.pause_requested THEN NULL ELSE coalesce(v.run_at, v.now) END,
    wait_types = NULL, pause_requested = false, owner = NULL, lease_expires = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::float8[])
    AS v(key, epoch, run_at, now)
WHERE i.key = v.key AND i.epoch = v.epoch
RETURNING i.key, i.status
"""

_FENCE = "SELECT pause_requested FROM instances WHERE key = $1 AND epoch = $2 FOR NO KEY UPDATE"

# Run as a statement of its own after _FENCE, so that its snapshot includes every event
# committed before this transaction got the instance's row lock.
_SUSPEND_WAITING = """
UPDATE instances SET status = 'waiting', wait_types = $3, owner = NULL, lease_expires = NULL,
    run_at = CASE WHEN EXISTS (SELECT 1 FROM events WHERE instance = $1
        AND type = ANY($3::text[]) AND consumed_by IS NULL) THEN $4::float8 ELSE $2::float8 END
WHERE key = $1
"""
_SUSPEND_PAUSED = """
UPDATE instances SET status = 'paused', run_at = NULL, wait_types = NULL,
    pause_requested = false, owner = NULL, lease_expires = NULL
WHERE key = $1
"""

_CONSUME_EVENT = """
UPDATE events SET consumed_by = $3 WHERE seq = (
    SELECT seq FROM events WHERE instance = $1 AND type = $2 AND consumed_by IS NULL
    ORDER BY seq LIMIT 1)
RETURNING seq, type, payload, created_at
"""

# Renewal goes through the writer, so it never waits on (or skips) a row lock the writer
# holds. Per held lease: renewed?, pause asked?, and the epoch and status as they were.
_RENEW = f"""
WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS h(key, epoch)
), renewed AS (
    UPDATE instances i SET lease_expires = now() + make_interval(secs => $3)
    FROM held WHERE i.key = held.key AND i.epoch = held.epoch AND i.status IN {_LEASED}
    RETURNING i.key, i.pause_requested
)
SELECT held.key, renewed.key IS NOT NULL, coalesce(renewed.pause_requested, false),
    i.epoch, i.status
FROM held LEFT JOIN renewed ON renewed.key = held.key LEFT JOIN instances i ON i.key = held.key
"""

# Releasing a lease is expiring it: the next claim on any host takes the instance over.
_RELEASE = f"""
UPDATE instances i SET lease_expires = now() - interval '1 second'
FROM unnest($1::bigint[], $2::bigint[]) AS h(key, epoch)
WHERE i.key = h.key AND i.epoch = h.epoch AND i.status IN {_LEASED}
RETURNING i.key
"""

# One statement, so one transaction. SKIP LOCKED: hosts pruning at the same time take
# different instances and never wait on each other, nor on a control action holding an
# instance's row (the row is re-checked once locked: a restarted instance is not finished).
_DELETE_FINISHED = """
WITH doomed AS (
    SELECT key FROM instances
    WHERE ended_at < $1 AND status = ANY($2::text[]) AND ($3::text IS NULL OR workflow = $3)
    ORDER BY ended_at LIMIT $4 FOR UPDATE SKIP LOCKED
), steps_gone AS (
    DELETE FROM steps WHERE instance IN (SELECT key FROM doomed)
), events_gone AS (
    DELETE FROM events WHERE instance IN (SELECT key FROM doomed)
)
DELETE FROM instances WHERE key IN (SELECT key FROM doomed) RETURNING key
"""

_ANY_EXPIRED = (
    f"SELECT EXISTS (SELECT 1 FROM instances WHERE status IN {_LEASED} AND lease_expires < now())"
)

_RECHECK_LOCKED = 0.05  # seconds before looking again at a due instance another host locks
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_OWN_OPTIONS = {
    "schema",
    "lease_seconds",
    "poll_interval",
    "pool_size",
    "reconnect_timeout",
    "unavailable_timeout",
}


def _disk_full(exc: BaseException) -> bool:
    """PostgreSQL could not write for lack of space (SQLSTATE 53100, ``disk_full``)."""
    return isinstance(exc, asyncpg.exceptions.DiskFullError)


def _transient(exc: BaseException) -> bool:
    """A failure that left nothing applied and may pass: retry after reconnecting."""
    if _disk_full(exc):
        return False  # space comes back when a person frees it, not in a few seconds
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed" and the like; not bad data or bad configuration
        return not isinstance(exc, asyncpg.exceptions.DataError | ValueError)
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError  # shutdown, starting up, cancelled
        | asyncpg.exceptions.TransactionRollbackError  # deadlock, serialization
        | asyncpg.exceptions.InsufficientResourcesError  # too many connections
        | asyncpg.exceptions.IdleInTransactionSessionTimeoutError
        | asyncpg.exceptions.InvalidCatalogNameError  # database being recreated
        # a connection left in a broken protocol state by a failure; the pool replaces it
        | asyncpg.exceptions._base.InternalClientError
        | OSError,
    )


class _UnknownOutcome(Exception):
    """A commit failed in a way that does not say whether it happened."""


def _text(data: bytes | None) -> str | None:
    return data.decode() if data is not None else None


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


_STEP_HAS_HOST = "host" in attrs.fields_dict(StepRow)

# (name, count, seq, type, status, attempts, attempt_log, output, error, started_at,
#  ended_at, wake_at, config): a step as bound to the statement, taken when the write is
# called, because the engine keeps changing its StepRow while the write waits.
_StepValues = tuple[
    str,
    int,
    int,
    str,
    str,
    int,
    str,
    str | None,
    str | None,
    float | None,
    float | None,
    float | None,
    str | None,
]


def _step_values(step: StepRow) -> _StepValues:
    return (
        step.name,
        step.count,
        step.seq,
        step.type,
        step.status,
        step.attempts,
        orjson.dumps(step.attempt_log).decode(),
        _text(step.output),
        _json(step.error),
        step.started_at,
        step.ended_at,
        step.wake_at,
        _json(step.config),
    )


class _Op:
    """One queued fenced write."""

    __slots__ = ("args", "fn", "future", "kind", "lease", "releases", "step")

    def __init__(
        self,
        kind: str,
        lease: Lease,
        future: asyncio.Future[Any],
        *,
        step: _StepValues | None = None,
        args: tuple[Any, ...] = (),
        fn: Callable[[Any], Awaitable[Any]] | None = None,
        releases: bool = False,
    ) -> None:
        self.kind = kind  # "step" | "finish" | "suspend" | "call"
        self.lease = lease
        self.future = future
        self.step = step
        self.args = args
        self.fn = fn
        self.releases = releases  # a success ends the lease (suspend, finish)


def _lost(lease: Lease, why: str = "") -> LeaseLost:
    suffix = f": {why}" if why else ""
    return LeaseLost(f"{lease.workflow}/{lease.id} (epoch {lease.epoch}){suffix}")


# The lease of writer operations that belong to no instance (lease renewal).
_NO_LEASE = Lease("", "", -1, 0)


class _Round:
    """Writes of different instances applied together: one statement per kind."""

    __slots__ = ("calls", "finishes", "steps", "suspends")

    def __init__(self) -> None:
        self.steps: list[_Op] = []
        self.finishes: list[_Op] = []
        self.suspends: list[_Op] = []
        self.calls: list[_Op] = []

    def statements(self) -> int:
        """How many statements the round takes; a call takes several."""
        grouped = bool(self.steps) + bool(self.finishes) + bool(self.suspends)
        return grouped + 2 * len(self.calls)


def _plan(batch: list[_Op]) -> list[_Round]:
    """Order a batch into rounds that keep each instance's writes in call order.

    Each instance's writes are cut into segments, in call order: a run of step writes of
    one lease is one segment, anything else is a segment of its own. Round ``r`` holds the
    ``r``-th segment of every instance, so one instance's writes keep their order and
    different instances' writes share statements.
    """
    segments: dict[int, list[list[_Op]]] = {}
    for op in batch:
        segs = segments.setdefault(op.lease.key, [])
        last = segs[-1] if segs else None
        if (
            last is not None
            and op.kind == "step"
            and last[0].kind == "step"
            and last[0].lease.epoch == op.lease.epoch
        ):
            last.append(op)
        else:
            segs.append([op])
    rounds = [_Round() for _ in range(max(len(s) for s in segments.values()))]
    for segs in segments.values():
        for round, seg in zip(rounds, segs, strict=False):
            kind = seg[0].kind
            if kind == "step":
                round.steps.extend(seg)
            elif kind == "finish":
                round.finishes.extend(seg)
            elif kind == "suspend":
                round.suspends.extend(seg)
            else:
                round.calls.extend(seg)
    return rounds


class PostgresStore(Store):
    """A store in one PostgreSQL database, shared by any number of hosts.

    Args:
        dsn: ``postgresql://user:password@host:port/database``; the query options
            ``schema``, ``lease_seconds``, ``poll_interval``, ``pool_size`` and
            ``reconnect_timeout`` are read here, the others go to asyncpg.
        schema: Keep the tables in this schema (created if missing) instead of the
            connection's default; lets several independent deployments share a database.
        lease_seconds: How long a claim lasts without renewal; a host that stops for longer
            loses its instances to the others.
        poll_interval: Seconds between polls for work, behind ``LISTEN/NOTIFY``.
        pool_size: Connections per host (one is the writer's at a time, one listens apart).
        reconnect_timeout: How long a running instance's write waits for the database to
            come back.
        unavailable_timeout: How long a call made for a client (create, read, control,
            event) waits for the database before it raises ``StoreUnavailableError``.
        host_id: This host's name in leases and in each step's ``host``; default
            ``hostname-pid-random``.

    Raises:
        ValidationError: A bad option.
    """

    single_host = False

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lease_seconds: float | None = None,
        poll_interval: float | None = None,
        pool_size: int | None = None,
        reconnect_timeout: float | None = None,
        unavailable_timeout: float | None = None,
        host_id: str | None = None,
    ) -> None:
        parsed = urlparse(dsn)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ValidationError(f"not a PostgreSQL url: {redact_url(dsn)!r}")
        query = dict(parse_qsl(parsed.query))
        own = {k: query.pop(k) for k in list(query) if k in _OWN_OPTIONS}
        self._dsn = urlunparse(parsed._replace(query=urlencode(query)))
        self.schema = schema if schema is not None else own.get("schema")
        if self.schema is not None and not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValidationError(
                f"schema must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 "
                f"characters), not {self.schema!r}"
            )
        self.lease_seconds = _positive(
            "lease_seconds", lease_seconds, own.get("lease_seconds"), 10.0
        )
        self.poll_interval = _positive(
            "poll_interval", poll_interval, own.get("poll_interval"), 2.0
        )
        self.reconnect_timeout = _positive(
            "reconnect_timeout", reconnect_timeout, own.get("reconnect_timeout"), 30.0
        )
        self.unavailable_timeout = _positive(
            "unavailable_timeout", unavailable_timeout, own.get("unavailable_timeout"), 5.0
        )
        size = pool_size if pool_size is not None else own.get("pool_size", 10)
        try:
            self.pool_size = int(size)
        except (TypeError, ValueError):
            raise ValidationError(f"pool_size must be an integer, not {size!r}") from None
        if self.pool_size < 2:
            raise ValidationError(f"pool_size must be at least 2, not {self.pool_size}")
        self.host_id = host_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        #: Counters for operators and tests.
        self.stats: dict[str, int] = {
            "batches": 0,
            "writes": 0,
            "retries": 0,
            "leases_lost": 0,
            "fenced": 0,
            "notifications": 0,
        }
        self.channel = ""
        self._pool: Any = None
        self._writer_conn: Any = None
        self._listener: Any = None
        self._listen_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: list[_Op] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._held: dict[int, Lease] = {}
        self._to_release: dict[int, Lease] = {}
        self._pause_seen: set[tuple[int, int]] = set()
        self._subscribers: list[Callable[[str, str, str], None]] = []
        self._closing = False
        # (engine time, loop time) of the last claim that took fewer than asked
        self._short_claim: tuple[float, float] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://user@host/db?schema=...&lease_seconds=...``."""
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self._dsn)!r}, schema={self.schema!r})"

    # --- life cycle -------------------------------------------------------------------
    def _server_settings(self) -> dict[str, str]:
        settings = {
            "application_name": f"durableflow:{self.host_id}"[:63],
            # a host stopped in the middle of a transaction must not keep its row locks
            # (and so its instances) from the others for longer than a lease
            "idle_in_transaction_session_timeout": str(int(self.lease_seconds * 1000)),
        }
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def open(self) -> None:
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                # no floor: a pool with one retries its lost connection on its own and
                # logs a traceback a second while the database is down; acquire connects
                min_size=0,
                max_size=self.pool_size,
                server_settings=self._server_settings(),
                reset=_keep_session,
                # a server that does not answer (a dropped route) fails a connect in time
                timeout=self.unavailable_timeout,
            )
        except Exception as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(self._dsn)}: {exc}"
            ) from exc
        try:
            await self._migrate()  # the pool's first connection, too
            schema = self.schema or await self._pool.fetchval("SELECT current_schema()")
            self.channel = f"durableflow.{schema}"[:63]
        except BaseException as exc:
            await self._pool.close()
            self._pool = None
            if isinstance(exc, Exception) and (_transient(exc) or isinstance(exc, TimeoutError)):
                raise StoreUnavailableError(
                    f"cannot connect to PostgreSQL at {redact_url(self._dsn)}: {exc}"
                ) from exc
            raise
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="durableflow-pg-writer"),
            asyncio.create_task(self._keep_leases(), name="durableflow-pg-leases"),
            asyncio.create_task(self._poll(), name="durableflow-pg-poll"),
        ]
        try:
            await self._listen()
        except Exception as exc:
            log.warning("LISTEN failed (%s); relying on polling until it reconnects", exc)
            self._listen_lost()

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn:
            lock = f"durableflow:migrate:{self.schema or ''}"
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
            try:
                if self.schema is not None:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
                )
                current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
                if current > len(MIGRATIONS):
                    raise ValidationError(
                        f"the database has schema version {current}, newer than this "
                        f"durableflow ({len(MIGRATIONS)}); upgrade durableflow"
                    )
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    async with conn.transaction():
                        await conn.execute(MIGRATIONS[version - 1])
                        await conn.execute(
                            "INSERT INTO schema_version (version) VALUES ($1)", version
                        )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

    async def close(self) -> None:
        if self._pool is None:
            return
        # everything acknowledged or queued is written before the connections go
        writer = self._tasks[0] if self._tasks else None
        while not self._idle.is_set() and writer is not None and not writer.done():
            idle = asyncio.ensure_future(self._idle.wait())
            await asyncio.wait([idle, writer], return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
        self._closing = True
        tasks = [*self._tasks, *([self._listen_task] if self._listen_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._listen_task = None
        for op in self._queue:  # only when the writer died: never strand a caller
            if not op.future.done():
                op.future.set_exception(_lost(op.lease, "the store closed"))
        self._queue = []
        # leases of activations cut off by the shutdown: hand them over at once
        self._to_release.update(self._held)
        self._held.clear()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self._release_forfeited()
        await self._drop_writer()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.close(), 2.0)
            self._listener = None
        try:
            await asyncio.wait_for(self._pool.close(), 5.0)
        except Exception:
            self._pool.terminate()
        self._pool = None

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Be told ``(workflow, id, what)`` when another host changes an instance.

        ``what`` is ``pause``, ``resume``, ``terminate`` or ``restart`` for an instance
        this host may be running, and ``create``, ``wake``, ``poll`` or ``expired`` when
        something may have become runnable.
        """
        self._subscribers.append(callback)

    def _emit(self, workflow: str, id: str, what: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(workflow, id, what)
            except Exception:
                log.exception("a store subscriber failed")

    # --- connections ------------------------------------------------------------------
    def _pool_or_fail(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def _call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` on a pooled connection; retry while the database is away."""
        return await self._retrying(fn, transaction=False)

    async def _transact(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in a transaction; retry while nothing can have been applied."""
        return await self._retrying(fn, transaction=True)

    async def _retrying(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool) -> T:
        loop = asyncio.get_running_loop()
        # a client waits on this call: answer within unavailable_timeout, found or not
        deadline = loop.time() + self.unavailable_timeout
        delay = 0.05
        while True:
            try:
                remaining = max(deadline - loop.time(), 0.01)
                async with self._pool_or_fail().acquire(timeout=remaining) as conn:
                    if not transaction:
                        return await fn(conn)
                    tr = conn.transaction()
                    await tr.start()
                    try:
                        result = await fn(conn)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await tr.rollback()
                        raise
                    try:
                        await tr.commit()
                    except Exception as exc:
                        if _transient(exc):
                            raise _UnknownOutcome(str(exc)) from exc
                        raise
                    return result
            except _UnknownOutcome as exc:
                raise StoreUnavailableError(
                    f"the connection to PostgreSQL failed while committing; the write may "
                    f"or may not have been applied: {exc}"
                ) from exc.__cause__
            except Exception as exc:
                if _disk_full(exc):
                    raise StorageFullError(
                        f"the disk of PostgreSQL at {redact_url(self._dsn)} is full (disk_full, "
                        f"SQLSTATE 53100): the write was not applied. Free space on the "
                        f"database server; writes resume by themselves. {exc}"
                    ) from exc
                if not (_transient(exc) or isinstance(exc, TimeoutError)) or self._closing:
                    raise
                now = loop.time()
                if now >= deadline:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {redact_url(self._dsn)} did not answer within "
                        f"{self.unavailable_timeout:g}s ([storage] unavailable_timeout): {exc}. "
                        "Nothing acknowledged was lost; check the database and try again."
                    ) from exc
                self.stats["retries"] += 1
                await asyncio.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 1.0)

    # --- LISTEN/NOTIFY ----------------------------------------------------------------
    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn, server_settings=self._server_settings())
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(lambda _conn: self._listen_lost())
        self._listener = conn

    def _listen_lost(self) -> None:
        self._listener = None
        if self._closing or (self._listen_task is not None and not self._listen_task.done()):
            return
        self._listen_task = asyncio.create_task(self._relisten(), name="durableflow-pg-listen")

    async def _relisten(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._listen()
            except Exception as exc:
                log.debug("LISTEN reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._emit("", "", "poll")  # catch up on what was missed meanwhile
            return

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)  # asyncpg passes the payload as a str; its stubs say object
        try:
            msg = orjson.loads(text)
            host, workflow, id, what = msg["h"], msg["w"], msg["i"], msg["a"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed notification: %r", text[:200])
            return
        if host == self.host_id:
            return  # this host's engine acted on its own change already
        self.stats["notifications"] += 1
        key, epoch = msg.get("k"), msg.get("e")
        if what in ("pause", "resume", "terminate", "restart") and key is not None:
            held = self._held.get(key)
            if held is not None and epoch is not None:
                if held.epoch > epoch:
                    # about an earlier activation: this host claimed the instance since
                    what = "wake"
                elif what in ("terminate", "restart"):
                    del self._held[key]
        self._emit(workflow, id, what)

    def _notice(self, what: str, workflow: str, id: str, key: int = 0, epoch: int = 0) -> str:
        return orjson.dumps(
            {"h": self.host_id, "w": workflow, "i": id, "a": what, "k": key, "e": epoch}
        ).decode()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if self._listener is None and (self._listen_task is None or self._listen_task.done()):
                self._listen_lost()
            self._emit("", "", "poll")

    # --- leases -----------------------------------------------------------------------
    def _drop_held(self, lease: Lease) -> None:
        if self._held.get(lease.key) == lease:
            del self._held[lease.key]

    def _forfeit(self, lease: Lease) -> None:
        """Give up a lease whose last write's outcome is unknown: expire it when possible."""
        self._drop_held(lease)
        self._to_release[lease.key] = lease

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._renew()
                await self._release_forfeited()
                if await self._pool_or_fail().fetchval(_ANY_EXPIRED):
                    self._emit("", "", "expired")
            except (Exception, LeaseLost) as exc:
                if isinstance(exc, LeaseLost | StoreUnavailableError) or _transient(exc):
                    log.debug("lease upkeep: database unavailable: %s", exc)
                else:
                    log.exception("lease upkeep failed")

    async def _renew(self) -> None:
        held = list(self._held.values())
        self._pause_seen &= {(h.key, h.epoch) for h in held}
        if not held:
            return
        keys, epochs = [h.key for h in held], [h.epoch for h in held]

        async def renew(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(_RENEW, keys, epochs, self.lease_seconds)
            return rows

        future: asyncio.Future[list[Any]] = self._future()
        self._enqueue(_Op("call", _NO_LEASE, future, fn=renew))
        state = {r[0]: (r[1], r[2], r[3], r[4]) for r in await future}
        for lease in held:
            if self._held.get(lease.key) != lease:
                continue  # released or claimed again meanwhile
            renewed, paused, epoch, status = state.get(lease.key, (False, False, None, None))
            if renewed:
                if paused and (lease.key, lease.epoch) not in self._pause_seen:
                    # a pause whose notification this host may have missed
                    self._pause_seen.add((lease.key, lease.epoch))
                    self._emit(lease.workflow, lease.id, "pause")
            elif epoch != lease.epoch:
                # claimed elsewhere, terminated or restarted: stop the activation; the
                # engine's way to drop one whose lease is gone is a terminate notice
                del self._held[lease.key]
                self.stats["leases_lost"] += 1
                self._emit(lease.workflow, lease.id, "terminate")
            elif status not in ("running", "waitingForPause"):
                del self._held[lease.key]  # it suspended or finished in this same batch
            # else: changed by a transaction that committed while this one waited for the
            # row; the next renewal sees what it did

    async def _release_forfeited(self) -> None:
        if not self._to_release:
            return
        leases = list(self._to_release.values())
        async with self._pool_or_fail().acquire() as conn, conn.transaction():
            released = await conn.fetch(
                _RELEASE, [lease.key for lease in leases], [lease.epoch for lease in leases]
            )
            if released:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", self.channel, self._notice("expired", "", "")
                )
        for lease in leases:
            if self._to_release.get(lease.key) == lease:
                del self._to_release[lease.key]
        if released:
            self._emit("", "", "expired")

    # --- the writer: group commit -----------------------------------------------------
    def _enqueue(self, op: _Op) -> None:
        if self._pool is None or self._closing:
            op.future.set_exception(RuntimeError("the PostgreSQL store is closed"))
            return
        self._queue.append(op)
        self._idle.clear()
        self._wakeup.set()

    async def _flush_loop(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # one turn of the loop lets the writers just woken by the last batch queue
            # their next writes, so that they join this batch
            await asyncio.sleep(0)
            batch, self._queue = self._queue, []
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(_lost(op.lease, "the store closed"))
                raise
            except BaseException as exc:  # pragma: no cover - a bug; never strand a caller
                log.exception("the writer failed")
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(exc)

    async def _writer(self) -> Any:
        """The writer's connection, held across batches (no pool round trip per batch)."""
        if self._writer_conn is not None and self._writer_conn.is_closed():
            await self._drop_writer()
        if self._writer_conn is None:
            self._writer_conn = await self._pool_or_fail().acquire()
        return self._writer_conn

    async def _drop_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None and self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)  # a broken one is closed by the pool

    async def _commit(self, batch: list[_Op]) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = 0.05
        rounds = _plan(batch)
        # one statement is atomic on its own: no BEGIN and COMMIT round trips for it
        single = len(rounds) == 1 and rounds[0].statements() == 1
        while True:
            committing = False
            outcomes: dict[int, tuple[bool, Any]] = {}
            try:
                conn = await self._writer()
                if single:
                    committing = True  # from here on, it may have been applied
                    await self._run_round(conn, rounds[0], outcomes)
                else:
                    tr = conn.transaction()
                    await tr.start()
                    try:
                        for round in rounds:
                            await self._run_round(conn, round, outcomes)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await tr.rollback()
                        raise
                    committing = True
                    await tr.commit()
            except Exception as exc:
                if _transient(exc):
                    await self._drop_writer()
                full: StoreUnavailableError | None = None
                if _disk_full(exc):
                    # nothing of the batch was applied; stop the activations, which resume
                    # from their stored steps once their leases pass on
                    full = StorageFullError(f"the disk of PostgreSQL is full: {exc}")
                    why = full.message
                elif _transient(exc) and not committing:
                    now = loop.time()
                    deadline = deadline if deadline is not None else now + self.reconnect_timeout
                    if now < deadline and not self._closing:
                        self.stats["retries"] += 1
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    why = f"PostgreSQL unavailable for {self.reconnect_timeout:g}s: {exc}"
                elif _transient(exc):
                    why = f"the outcome of the commit is unknown: {exc}"
                elif len(batch) > 1:
                    # one write broke the transaction: apply them one by one to find it
                    for op in batch:
                        await self._commit([op])
                    return
                else:
                    op = batch[0]
                    if not op.future.done():
                        op.future.set_exception(exc)
                    return
                for op in batch:
                    failure: BaseException
                    if op.lease is _NO_LEASE:
                        failure = full or StoreUnavailableError(why)
                    else:
                        self._forfeit(op.lease)
                        self.stats["leases_lost"] += 1
                        failure = _lost(op.lease, why)
                    if not op.future.done():
                        failure.__cause__ = exc
                        op.future.set_exception(failure)
                return
            except BaseException:
                await self._drop_writer()  # cancelled mid-transaction: never reuse it
                raise
            self.stats["batches"] += 1
            self.stats["writes"] += len(batch)
            # settle in one go, with no await between the commit and the lease bookkeeping
            for op in batch:
                ok, value = outcomes[id(op)]
                if op.releases or not ok:
                    self._drop_held(op.lease)
                if not ok and isinstance(value, LeaseLost):
                    self.stats["fenced"] += 1
                if op.future.done():
                    continue
                if ok:
                    op.future.set_result(value)
                else:
                    op.future.set_exception(value)
            return

    async def _run_round(
        self, conn: Any, round: _Round, outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        if round.steps:
            await self._put_steps(conn, round.steps, outcomes)
        if round.finishes:
            await self._finish_many(conn, round.finishes, outcomes)
        if round.suspends:
            await self._suspend_many(conn, round.suspends, outcomes)
        for op in round.calls:
            assert op.fn is not None
            try:
                outcomes[id(op)] = (True, await op.fn(conn))
            except LeaseLost as exc:
                outcomes[id(op)] = (False, exc)

    async def _put_steps(
        self, conn: Any, ops: list[_Op], outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        # the last write of a step supersedes the earlier ones queued in the same batch
        latest: dict[tuple[int, str, int], _Op] = {}
        for op in ops:
            assert op.step is not None
            latest[(op.lease.key, op.step[0], op.step[1])] = op
        written = await self._write_steps(
            conn, [(op.lease, op.step) for op in latest.values() if op.step is not None]
        )
        for op in ops:
            assert op.step is not None
            if (op.lease.key, op.step[0], op.step[1]) in written:
                outcomes[id(op)] = (True, None)
            else:
                outcomes[id(op)] = (False, _lost(op.lease))

    async def _write_steps(
        self, conn: Any, rows: Sequence[tuple[Lease, _StepValues]]
    ) -> set[tuple[int, str, int]]:
        columns: list[list[Any]] = [[] for _ in range(15)]
        for lease, values in rows:
            columns[0].append(lease.key)
            columns[1].append(lease.epoch)
            for i, value in enumerate(values):
                columns[2 + i].append(value)
        result = await conn.fetch(_PUT_STEPS, *columns, self.host_id)
        return {(r[0], r[1], r[2]) for r in result}

    async def _finish_many(
        self, conn: Any, ops: list[_Op], outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        columns: list[list[Any]] = [[] for _ in range(6)]
        for op in ops:
            for i, value in enumerate((op.lease.key, op.lease.epoch, *op.args)):
                columns[i].append(value)
        done = {r[0] for r in await conn.fetch(_FINISH, *columns)}
        for op in ops:
            ok = op.lease.key in done
            outcomes[id(op)] = (True, None) if ok else (False, _lost(op.lease))

    async def _suspend_many(
        self, conn: Any, ops: list[_Op], outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        columns: list[list[Any]] = [[] for _ in range(4)]
        for op in ops:
            for i, value in enumerate((op.lease.key, op.lease.epoch, *op.args)):
                columns[i].append(value)
        status = {r[0]: r[1] for r in await conn.fetch(_SUSPEND, *columns)}
        for op in ops:
            new = status.get(op.lease.key)
            outcomes[id(op)] = (True, new) if new is not None else (False, _lost(op.lease))

    @staticmethod
    async def _fence(conn: Any, lease: Lease) -> bool:
        """Lock the instance's row if ``lease`` is current; its ``pause_requested``."""
        row = await conn.fetchrow(_FENCE, lease.key, lease.epoch)
        if row is None:
            raise _lost(lease)
        return bool(row[0])

    # --- instances --------------------------------------------------------------------
    async def create_instances(self, rows: Sequence[NewInstance]) -> None:
        if not rows:
            return
        self._short_claim = None

        async def op(conn: Any) -> None:
            created = await conn.fetch(
                "INSERT INTO instances (workflow, id, status, params, created_at, run_at)"
                " SELECT v.w, v.i, 'queued', v.p, v.c, v.c FROM unnest($1::text[],"
                " $2::text[], $3::text[], $4::float8[]) AS v(w, i, p, c)"
                " ON CONFLICT (workflow, id) DO NOTHING RETURNING workflow, id",
                [r.workflow for r in rows],
                [r.id for r in rows],
                [_text(r.params) for r in rows],
                [r.created_at for r in rows],
            )
            if len(created) != len(rows):
                made = {(r[0], r[1]) for r in created}
                seen: set[tuple[str, str]] = set()
                for row in rows:
                    ident = (row.workflow, row.id)
                    if ident not in made or ident in seen:
                        raise InstanceExistsError(
                            f"instance {row.id!r} of workflow {row.workflow!r} already exists"
                        )
                    seen.add(ident)
            await conn.execute(
                "SELECT pg_notify($1, $2)",
                self.channel,
                self._notice("create", rows[0].workflow, rows[0].id),
            )

        await self._transact(op)

    async def get_instance(self, workflow: str, id: str) -> InstanceRow | None:
        row = await self._call(
            lambda conn: conn.fetchrow(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = $1 AND id = $2",
                workflow,
                id,
            )
        )
        return instance_from_row(row) if row is not None else None

    async def list_instances(
        self, workflow: str, *, status: str | None, limit: int, cursor: int | None
    ) -> list[InstanceRow]:
        sql = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = $1"
        args: list[Any] = [workflow]
        if status is not None:
            args.append(status)
            sql += f" AND status = ${len(args)}"
        if cursor is not None:
            args.append(cursor)
            sql += f" AND key < ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY key DESC LIMIT ${len(args)}"
        rows = await self._call(lambda conn: conn.fetch(sql, *args))
        return [instance_from_row(r) for r in rows]

    async def load_steps(self, key: int) -> list[StepRow]:
        steps = await self._call(lambda conn: self._fetch_steps(conn, [key]))
        return steps.get(key, [])

    async def _fetch_steps(self, conn: Any, keys: list[int]) -> dict[int, list[StepRow]]:
        rows = await conn.fetch(
            "SELECT instance, name, count, seq, type, status, attempts, attempt_log, output,"
            " error, started_at, ended_at, wake_at, config, host FROM steps"
            " WHERE instance = ANY($1::bigint[]) ORDER BY instance, seq",
            keys,
        )
        found: dict[int, list[StepRow]] = {}
        for r in rows:
            extra: dict[str, Any] = {"host": r[14]} if _STEP_HAS_HOST else {}
            found.setdefault(r[0], []).append(
                StepRow(
                    name=r[1],
                    count=r[2],
                    seq=r[3],
                    type=r[4],
                    status=r[5],
                    attempts=r[6],
                    attempt_log=orjson.loads(r[7]),
                    output=r[8].encode() if r[8] is not None else None,
                    error=orjson.loads(r[9]) if r[9] is not None else None,
                    started_at=r[10],
                    ended_at=r[11],
                    wake_at=r[12],
                    config=orjson.loads(r[13]) if r[13] is not None else None,
                    **extra,
                )
            )
        return found

    async def step_hosts(self, key: int) -> dict[tuple[str, int], str | None]:
        """Which host last wrote each step of an instance: ``{(name, count): host}``."""
        rows = await self._call(
            lambda conn: conn.fetch("SELECT name, count, host FROM steps WHERE instance = $1", key)
        )
        return {(r[0], r[1]): r[2] for r in rows}

    # --- scheduling -------------------------------------------------------------------
    async def recover(self, now: float) -> None:
        """Nothing to do: an instance a dead host left running is claimed when its lease
        expires."""

    async def claim(self, now: float, limit: int) -> list[Lease]:
        rows = await self._call(
            lambda conn: conn.fetch(_CLAIM, now, limit, self.host_id, self.lease_seconds)
        )
        leases = [Lease(r[0], r[1], r[2], r[3]) for r in rows]
        for lease in leases:
            self._held[lease.key] = lease
        self._note_claim(now, limit, len(leases))
        return leases

    async def claim_work(self, now: float, limit: int) -> list[Claimed]:
        """``claim``, with each claimed instance's row and history: two round trips in all."""
        rows = await self._call(
            lambda conn: conn.fetch(_CLAIM_ROWS, now, limit, self.host_id, self.lease_seconds)
        )
        self._note_claim(now, limit, len(rows))
        if not rows:
            return []
        instances = [instance_from_row(r) for r in rows]
        leases = [Lease(i.workflow, i.id, i.key, i.epoch) for i in instances]
        for lease in leases:
            self._held[lease.key] = lease
        keys = [lease.key for lease in leases]
        try:
            steps = await self._call(lambda conn: self._fetch_steps(conn, keys))
        except BaseException:
            for lease in leases:  # never launched: hand them back
                self._forfeit(lease)
            raise
        return [
            Claimed(lease, row, steps.get(lease.key, []))
            for lease, row in zip(leases, instances, strict=True)
        ]

    def _note_claim(self, now: float, limit: int, taken: int) -> None:
        short = taken < limit
        self._short_claim = (now, asyncio.get_running_loop().time()) if short else None

    async def next_run_at(self) -> float | None:
        value = await self._call(
            lambda conn: conn.fetchval("SELECT min(run_at) FROM instances WHERE run_at IS NOT NULL")
        )
        if value is None:
            return None
        short = self._short_claim
        if (
            short is not None
            and value <= short[0]
            and asyncio.get_running_loop().time() - short[1] < _RECHECK_LOCKED
        ):
            # due at the claim just made, yet not taken: another host's transaction holds
            # it; look again shortly rather than at once, over and over
            return short[0] + _RECHECK_LOCKED
        return float(value)

    # --- fenced writes ----------------------------------------------------------------
    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def put_step(self, lease: Lease, step: StepRow) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._future()
        self._enqueue(_Op("step", lease, future, step=_step_values(step)))
        return future

    def take_event(
        self, lease: Lease, step: StepRow, type: str, now: float
    ) -> asyncio.Future[EventRow | None]:
        values = _step_values(step)
        consumer = f"{step.name}#{step.count}"

        async def op(conn: Any) -> EventRow | None:
            await self._fence(conn, lease)
            row = await conn.fetchrow(_CONSUME_EVENT, lease.key, type, consumer)
            event = None
            stored = values
            if row is not None:
                event = EventRow(
                    row[0], row[1], row[2].encode() if row[2] is not None else None, row[3]
                )
                stored = (
                    *values[:4],
                    "complete",
                    values[5],
                    values[6],
                    event_output(event).decode(),
                    None,
                    values[9],
                    now,
                    None,
                    values[12],
                )
            if not await self._write_steps(conn, [(lease, stored)]):
                raise _lost(lease)
            return event

        future: asyncio.Future[EventRow | None] = self._future()
        self._enqueue(_Op("call", lease, future, fn=op))
        return future

    async def pending_events(self, lease: Lease, types: Sequence[str]) -> dict[str, float]:
        rows = await self._call(
            lambda conn: conn.fetch(
                "SELECT type, min(created_at) FROM events WHERE instance = $1"
                " AND type = ANY($2::text[]) AND consumed_by IS NULL GROUP BY type",
                lease.key,
                list(types),
            )
        )
        return {r[0]: float(r[1]) for r in rows}

    def suspend(
        self, lease: Lease, run_at: float | None, wait_types: Sequence[str], now: float
    ) -> asyncio.Future[str]:
        future: asyncio.Future[str] = self._future()
        if not wait_types:
            self._enqueue(_Op("suspend", lease, future, args=(run_at, now), releases=True))
            return future
        types = list(wait_types)

        async def op(conn: Any) -> str:
            if await self._fence(conn, lease):
                await conn.execute(_SUSPEND_PAUSED, lease.key)
                return "paused"
            await conn.execute(_SUSPEND_WAITING, lease.key, run_at, types, now)
            return "waiting"

        self._enqueue(_Op("call", lease, future, fn=op, releases=True))
        return future

    def finish(
        self,
        lease: Lease,
        status: str,
        output: bytes | None,
        error: dict[str, str] | None,
        now: float,
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._future()
        args = (status, _text(output), _json(error), now)
        self._enqueue(_Op("finish", lease, future, args=args, releases=True))
        return future

    # --- control ----------------------------------------------------------------------
    async def control(
        self, workflow: str, id: str, action: ControlAction, now: float
    ) -> InstanceRow:
        async def op(conn: Any) -> InstanceRow:
            row = await conn.fetchrow(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = $1 AND id = $2"
                " FOR NO KEY UPDATE",
                workflow,
                id,
            )
            if row is None:
                raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
            inst = instance_from_row(row)
            await _apply_control(conn, inst, action, now)
            after = instance_from_row(
                await conn.fetchrow(
                    f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE key = $1", inst.key
                )
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)",
                self.channel,
                self._notice(action, workflow, id, after.key, after.epoch),
            )
            return after

        after = await self._transact(op)
        self._short_claim = None
        held = self._held.get(after.key)
        if held is not None and held.epoch < after.epoch:
            del self._held[after.key]  # this host's engine cancels the activation itself
        return after

    async def send_event(
        self, workflow: str, id: str, type: str, payload: bytes | None, now: float
    ) -> None:
        async def op(conn: Any) -> None:
            # the row lock orders this against a suspension checking for pending events
            row = await conn.fetchrow(
                "SELECT key, status FROM instances WHERE workflow = $1 AND id = $2"
                " FOR NO KEY UPDATE",
                workflow,
                id,
            )
            if row is None:
                raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
            if row[1] in FINAL_STATUSES:
                raise InvalidTransitionError(
                    f"instance {id!r} is {row[1]}: it takes no more events"
                )
            await conn.execute(
                "INSERT INTO events (instance, type, payload, created_at) VALUES ($1, $2, $3, $4)",
                row[0],
                type,
                _text(payload),
                now,
            )
            woken = await conn.fetchval(
                "UPDATE instances SET run_at = $1 WHERE key = $2 AND status = 'waiting'"
                " AND $3 = ANY(wait_types) RETURNING key",
                now,
                row[0],
                type,
            )
            if woken is not None:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", self.channel, self._notice("wake", workflow, id)
                )

        await self._transact(op)
        self._short_claim = None

    # --- retention --------------------------------------------------------------------
    async def delete_finished(
        self,
        ended_before: float,
        *,
        statuses: Sequence[str] = FINISHED,
        workflow: str | None = None,
        limit: int = PRUNE_BATCH,
    ) -> int:
        rows = await self._call(
            lambda conn: conn.fetch(_DELETE_FINISHED, ended_before, list(statuses), workflow, limit)
        )
        return len(rows)


async def _apply_control(conn: Any, inst: InstanceRow, action: ControlAction, now: float) -> None:
    transition = control_transition(inst.status, action, inst.id)
    lease_reset = ", owner = NULL, lease_expires = NULL"
    for sql, args in control_statements(transition.effect, inst.key, now, lease_reset):
        await conn.execute(numbered(sql), *args)


async def _keep_session(_conn: Any) -> None:
    """Pool reset hook: the store changes no session state, so nothing to reset (asyncpg's
    default would cost a round trip each time a connection goes back to the pool)."""


def _positive(name: str, given: float | None, from_url: str | None, default: float) -> float:
    raw: Any = given if given is not None else from_url if from_url is not None else default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValidationError(f"{name} must be positive, not {raw!r}")
    return value
