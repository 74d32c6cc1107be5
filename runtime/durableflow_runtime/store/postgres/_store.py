"""The PostgreSQL store's queries: the :class:`Store` methods, on the shared statements of
:mod:`.._queries`, the group commit of :mod:`._writer` and the leases of :mod:`._leases`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import asyncpg
import orjson

from durableflow import InstanceExistsError, StoreUnavailableError, ValidationError
from durableflow._types import StepRef

from .._flow import LONGEST_PERIOD, Blocked, FlowPlan, queued_run_at
from .._output import (
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
from .._queries import CLAIM_SET, POSTGRES, RUNS_ON
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
    NewInstance,
    ScheduleState,
    StepRow,
    Store,
    child_event_type,
    redact_url,
)
from ..transitions import INSTANCE_TABLES
from ._batch import Op, lost
from ._connection import keep_session, learn_types, lost_midway, teach_types, transient
from ._identity import HostSlot, host_slot, take_over
from ._leases import LEASED, Leases
from ._schema import migrate
from ._writer import Q

log = logging.getLogger("durableflow.postgres")

__all__ = ["PostgresStore"]


# Claims the instances due at $1, those whose lease expired, and those due by $7 that
# wait on a timer only (claimed ahead of their wake-up: see ``Store.claim``), up to $2, for
# host $3 with a lease of $4 seconds, of the workflows and versions $6 names (NULL: any:
# see ``Store.runnable``); returns their rows, each with the ``run_at`` it had when it was
# claimed ahead (``ahead_of``). ``claim`` keeps their leases. The due
# instances of the workflows $5 (those with flow limits) are left to ``_claim_limited``;
# an expired lease is taken over whatever its workflow: it holds its slot already.
_RUNNABLE = f"($6::text[] IS NULL OR {RUNS_ON} = ANY($6::text[]))"
_PICK = f"""
WITH due AS (
    SELECT key{{seen}} FROM instances WHERE run_at <= $1 AND workflow <> ALL($5::text[])
    AND {_RUNNABLE}
    ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT key FROM instances WHERE status IN {LEASED} AND lease_expires < now()
    AND {_RUNNABLE}
    LIMIT $2 FOR UPDATE SKIP LOCKED
), ahead AS (
    SELECT key, run_at FROM instances WHERE run_at > $1 AND run_at <= $7
    AND status = 'waiting' AND wait_types IS NULL AND workflow <> ALL($5::text[])
    AND {_RUNNABLE}
    ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT key, NULL::float8 AS ahead_of FROM due
    UNION ALL SELECT key, NULL::float8 FROM expired
    UNION ALL SELECT key, run_at FROM ahead
    LIMIT $2
)"""
_TAKE = f"""
UPDATE instances i SET {CLAIM_SET.replace("?", "$1")},
    owner = $3, lease_expires = now() + make_interval(secs => $4)
FROM picked WHERE i.key = picked.key
RETURNING {", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(","))}, picked.ahead_of
"""
_CLAIM = _PICK.format(seen="") + _TAKE

# The due instances of one limited workflow ($2: their keys) claimed at $1, as _CLAIM.
_CLAIM_KEYS = f"""
UPDATE instances i SET {CLAIM_SET.replace("?", "$1")},
    owner = $3, lease_expires = now() + make_interval(secs => $4)
WHERE i.key = ANY($2::bigint[])
RETURNING {", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(","))}
"""

# ``_CLAIM``, with three more columns: the earliest ``run_at`` of the instances it left
# (``next_run_at``; the same on every row, and on a row of NULLs but that when nothing was
# claimed), whether the instance's steps were read too, and its steps (``_STEPS`` rows,
# as records; NULL: none). They are read with the statement's snapshot, so only for an
# instance that was due and whose row the claim locked as that snapshot has it (the same
# ``xmin``): no one wrote its steps since, as a writer of steps either holds the lease
# (and a due instance has no holder) or changes the row too (a restart). The steps of an
# instance taken over from an expired lease, or changed meanwhile, are read after.
_CLAIM_NEXT = (
    _PICK.format(seen=", xmin AS seen")
    + ", claimed AS ("
    + _TAKE
    + f"""), later AS (
    SELECT min(run_at) AS run_at FROM instances WHERE run_at IS NOT NULL AND {_RUNNABLE}
    AND key NOT IN (SELECT key FROM picked)
), settled AS (
    SELECT due.key FROM due JOIN instances i ON i.key = due.key AND i.xmin = due.seen
)
SELECT claimed.*, later.run_at AS next_run_at, s.key IS NOT NULL AS settled,
    CASE WHEN s.key IS NOT NULL THEN (
        SELECT array_agg(ROW({", ".join(f"st.{c.strip()}" for c in STEP_COLUMNS.split(","))},
            st.host) ORDER BY st.seq)
        FROM steps st WHERE st.instance = claimed.key
    ) END AS steps
FROM later LEFT JOIN claimed ON true LEFT JOIN settled s ON s.key = claimed.key
"""
)
_UNREAD = object()  # _claim: the earliest run_at left was not read

_STEPS = f"SELECT {STEP_COLUMNS}, host FROM steps WHERE instance = ANY($1::bigint[]) ORDER BY instance, seq"

# One statement, so one transaction. SKIP LOCKED: hosts pruning at the same time take
# different instances and never wait on each other, nor on a control action holding an
# instance's row (the row is re-checked once locked: a restarted instance is not finished).
_DELETE_FINISHED = (
    """
WITH doomed AS (
    SELECT key FROM instances
    WHERE ended_at < $1 AND status = ANY($2::text[]) AND ($3::text IS NULL OR workflow = $3)
    ORDER BY ended_at LIMIT $4 FOR UPDATE SKIP LOCKED
)"""
    + "".join(
        f", {table}_gone AS (DELETE FROM {table} WHERE {column} IN (SELECT key FROM doomed))"
        for table, column in INSTANCE_TABLES
    )
    + """
DELETE FROM instances WHERE key IN (SELECT key FROM doomed) RETURNING key
"""
)

_READ_CHUNKS = POSTGRES.sql(READ_CHUNKS)
_READ_LOGS = POSTGRES.sql(READ_LOGS)
_STREAMS_OF = POSTGRES.sql(STREAMS_OF)

# The new rows of a create, from its ten arrays ($1-$10).
_NEW_ROWS = (
    "unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::bigint[],"
    " $7::float8[], $8::int[], $9::text[], $10::text[])"
    " AS v(w, i, p, c, t, parent, r, pr, k, version)"
)
_CREATE = (
    "INSERT INTO instances (workflow, id, status, params, created_at, run_at, trace, parent,"
    " priority, concurrency_key, version) SELECT v.w, v.i, 'queued', v.p, v.c, v.r, v.t,"
    f" v.parent, v.pr, v.k, v.version FROM {_NEW_ROWS}"
    " ON CONFLICT (workflow, id) DO NOTHING RETURNING workflow, id"
)

# ``_CREATE`` for clients, in one statement (so one round trip, with no BEGIN and COMMIT):
# all rows or none (a taken id fails the whole statement), and the notification ($11, $12)
# sent when it commits.
_CREATE_NOTIFY = (
    "WITH created AS ("
    + _CREATE.removesuffix(" ON CONFLICT (workflow, id) DO NOTHING RETURNING workflow, id")
    + ") SELECT pg_notify($11, $12)"
)
# ``_CREATE_NOTIFY`` that also claims the rows for this host ($13 now, $14 the host, $15
# the lease's seconds) when no instance is due at $13 (the claim's own test, on the
# ``run_at`` index): the queue is empty, so no instance is passed over, and the create's
# round trip is the claim's. Otherwise the rows are queued and notified as by
# ``_CREATE_NOTIFY``. Returns the rows, claimed or not.
_CREATE_CLAIM = f"""
WITH idle AS (
    SELECT NOT EXISTS (SELECT 1 FROM instances WHERE run_at <= $13) AS ok
), created AS (
    INSERT INTO instances (workflow, id, status, params, created_at, run_at, trace, parent,
        priority, concurrency_key, version, epoch, started_at, owner, lease_expires)
    SELECT v.w, v.i, CASE WHEN idle.ok THEN 'running' ELSE 'queued' END, v.p, v.c,
        CASE WHEN idle.ok THEN NULL ELSE v.r END, v.t, v.parent, v.pr, v.k, v.version,
        CASE WHEN idle.ok THEN 1 ELSE 0 END, CASE WHEN idle.ok THEN $13 END,
        CASE WHEN idle.ok THEN $14 END,
        CASE WHEN idle.ok THEN now() + make_interval(secs => $15) END
    FROM {_NEW_ROWS}, idle
    RETURNING {INSTANCE_COLUMNS}
), notified AS (
    SELECT pg_notify($11, $12) FROM idle WHERE NOT idle.ok
)
SELECT created.* FROM created LEFT JOIN (SELECT count(*) FROM notified) n ON true
"""
# A rate-limited workflow's claim records its $4 new starts at $3 and drops its starts
# that left the period (at or before $2): one round trip.
_RECORD_STARTS = """
WITH gone AS (DELETE FROM flow_starts WHERE workflow = $1 AND at <= $2)
INSERT INTO flow_starts (workflow, at) SELECT $1, $3 FROM generate_series(1, $4)
"""
# Which of the instances ($1, $2: workflows and ids) exist, with their time and params.
_EXISTING = (
    "SELECT workflow, id, created_at, params FROM instances"
    " WHERE (workflow, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
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
    "host_id",
}


class PostgresStore(Leases, Store):
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
        host_id: This host's name in leases and in each step's ``host``, stable across
            restarts so that a restarted host takes back its own leases at once; default
            the ``DURABLEFLOW_HOST_ID`` environment variable, else ``hostname:slot`` with
            the lowest slot free on this machine (see :mod:`._identity`).

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
        given = host_id or own.get("host_id") or os.environ.get("DURABLEFLOW_HOST_ID")
        if given is not None and not given.strip():
            raise ValidationError("host_id must not be empty")
        #: Set at ``open`` when not given (the slot lock of :func:`._identity.host_slot`).
        self.host_id = given or ""
        self._given_host_id = given
        self._slot: HostSlot | None = None
        #: This process's generation of its identity; a moved one means another process
        #: took the identity over, and this one stops claiming.
        self.generation = 0
        self.superseded = False
        #: Counters for operators and tests.
        self.stats: dict[str, int] = {
            "batches": 0,
            "writes": 0,
            "retries": 0,
            "leases_lost": 0,
            "lease_renewals": 0,  # observe: read by /metrics
            "fenced": 0,
            "notifications": 0,
            "leases_taken_back": 0,
            "superseded": 0,
        }
        self.channel = ""
        self._pool = None
        self._writer_conn = None
        self._listener = None
        self._listen_task = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._held = {}
        self._to_release = {}
        self._pause_seen = set()
        self._subscribers = []
        self._closing = False
        # (engine time, loop time) of the last claim that took fewer than asked
        self._short_claim: tuple[float, float] | None = None
        self._blocked = Blocked()
        self._types: Any = None  # the array types learned at open (see learn_types)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://user@host/db?schema=...&lease_seconds=...``."""
        return cls(url, **options)

    @property
    def connect_dsn(self) -> str:
        """The DSN asyncpg connects with (this store's own query options taken out)."""
        return self._dsn

    def read_only_settings(self) -> dict[str, str]:
        """Session settings of a connection that reads the store without being a host
        (``durableflow check``): this store's schema, and only read-only transactions."""
        return {**self._server_settings(), "default_transaction_read_only": "on"}

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self._dsn)!r}, schema={self.schema!r})"

    # --- life cycle -------------------------------------------------------------------
    async def open(self) -> None:
        self._closing = False
        self.superseded = False
        if self._given_host_id is None and self._slot is None:
            self._slot = host_slot(self._dsn, self.schema)
            self.host_id = self._slot.host_id
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                # no floor: a pool with one retries its lost connection on its own and
                # logs a traceback a second while the database is down; acquire connects
                min_size=0,
                max_size=self.pool_size,
                server_settings=self._server_settings(),
                reset=keep_session,
                init=self._init_connection,
                # a server that does not answer (a dropped route) fails a connect in time
                timeout=self.unavailable_timeout,
            )
        except Exception as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(self._dsn)}: {exc}"
            ) from exc
        try:
            async with self._pool.acquire() as conn:  # the pool's first connection, too
                self._types = await learn_types(conn)
                await migrate(conn, self.schema)
                await conn.execute(Q.flow_starts_expire_all, time.time() - LONGEST_PERIOD)
                self.generation, taken = await take_over(conn, self.host_id)
            self.stats["leases_taken_back"] += taken
            if taken:
                log.info("host %s took back %d leases of its previous run", self.host_id, taken)
            schema = self.schema or await self._pool.fetchval("SELECT current_schema()")
            self.channel = f"durableflow.{schema}"[:63]
        except BaseException as exc:
            await self._pool.close()
            self._pool = None
            self._release_slot()
            if isinstance(exc, Exception) and (transient(exc) or isinstance(exc, TimeoutError)):
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

    async def _init_connection(self, conn: Any) -> None:
        """A new pooled connection: knows the store's array types (see ``learn_types``)."""
        teach_types(conn, self._types)

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
                op.future.set_exception(lost(op.lease, "the store closed"))
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
        self._release_slot()

    def _release_slot(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    # --- instances --------------------------------------------------------------------
    async def create_instances(self, rows: Sequence[NewInstance]) -> None:
        await self._create(rows, None)

    async def create_and_claim(self, rows: Sequence[NewInstance], now: float) -> list[Claimed]:
        claimed = await self._create(rows, now)
        for row in claimed:
            self._held[row.key] = lease_of(row)
        return [Claimed(lease_of(row), row, []) for row in claimed]

    async def _create(
        self, rows: Sequence[NewInstance], claim_at: float | None
    ) -> list[InstanceRow]:
        """Create ``rows`` in one statement; with ``claim_at``, claimed for this host when
        nothing is due then (``_CREATE_CLAIM``): the rows claimed."""
        if not rows:
            return []
        self._short_claim = None
        args: tuple[Any, ...] = (
            [r.workflow for r in rows],
            [r.id for r in rows],
            [text(r.params) for r in rows],
            [r.created_at for r in rows],
            [r.trace for r in rows],
            [r.parent for r in rows],
            [queued_run_at(r.created_at, r.priority) for r in rows],
            [r.priority for r in rows],
            [r.concurrency_key for r in rows],
            [r.version for r in rows],
            self.channel,
            self._notice("create", rows[0].workflow, rows[0].id),
        )
        if claim_at is not None:
            args += (claim_at, self.host_id, self.lease_seconds)
        sent = False  # a try whose connection failed mid-way may have committed

        async def op(conn: Any) -> list[InstanceRow]:
            nonlocal sent
            try:
                if claim_at is None:
                    await conn.execute(_CREATE_NOTIFY, *args)
                    return []
                created = [instance_from_row(r) for r in await conn.fetch(_CREATE_CLAIM, *args)]
                return [row for row in created if row.status == "running"]
            except asyncpg.UniqueViolationError:
                if sent and await self._created_before(conn, rows):
                    # the lost try committed: these rows are this call's own (claimed by
                    # it, if so, they are taken over when that lease expires)
                    return []
                raise await self._taken(conn, rows) from None
            except Exception as exc:
                sent = sent or lost_midway(exc)
                raise

        return await self._call(op)

    async def _taken(self, conn: Any, rows: Sequence[NewInstance]) -> InstanceExistsError:
        """The error for a create of ``rows`` refused as a duplicate: the first row whose
        id is taken, or that the batch itself holds twice."""
        found = await conn.fetch(_EXISTING, [r.workflow for r in rows], [r.id for r in rows])
        taken = {(r[0], r[1]) for r in found}
        seen: set[tuple[str, str]] = set()
        for row in rows:
            ident = (row.workflow, row.id)
            if ident in taken or ident in seen:
                return already_exists(*ident)
            seen.add(ident)
        return already_exists(rows[0].workflow, rows[0].id)  # deleted since

    async def _created_before(self, conn: Any, rows: Sequence[NewInstance]) -> bool:
        """Whether every one of ``rows`` is stored as this create made it (its time and
        params): a try cut off while committing did commit."""
        found = await conn.fetch(_EXISTING, [r.workflow for r in rows], [r.id for r in rows])
        stored = {(r[0], r[1]): (r[2], r[3]) for r in found}
        return all(stored.get((r.workflow, r.id)) == (r.created_at, text(r.params)) for r in rows)

    async def get_instance(self, workflow: str, id: str) -> InstanceRow | None:
        row = await self._call(lambda conn: conn.fetchrow(Q.instance_by_name, workflow, id))
        return instance_from_row(row) if row is not None else None

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
        rows = await self._call(lambda conn: conn.fetch(sql, *args))
        return [instance_from_row(r) for r in rows]

    async def load_steps(self, key: int) -> list[StepRow]:
        rows = await self._call(lambda conn: conn.fetch(_STEPS, [key]))
        return steps_by_instance(rows).get(key, [])

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

    async def _claim(
        self, now: float, limit: int, due: float | None = None, *, later: bool = False
    ) -> tuple[list[InstanceRow], Any, dict[int, list[StepRow]], dict[int, float]]:
        """The claimed rows; with ``later`` (when no flow limit makes it a matter of
        several statements) the earliest ``run_at`` left behind, else ``_UNREAD``; the
        steps of the claimed instances whose steps the claim read (see _CLAIM_NEXT); and
        the ``run_at`` of each instance claimed ahead of it (by key)."""
        if self.superseded:
            return [], _UNREAD, {}, {}  # another process holds this identity now
        limited = self.flow_limits
        one = later and not limited and not self._blocked.until
        until = now if due is None else max(now, due)
        rows = await self._call(
            lambda conn: conn.fetch(
                _CLAIM_NEXT if one else _CLAIM,
                now,
                limit,
                self.host_id,
                self.lease_seconds,
                list(limited),
                None if self.runnable is None else list(self.runnable),
                until,
            )
        )
        left = rows[0][-3] if one else _UNREAD
        instances = [instance_from_row(r) for r in rows if r[0] is not None]
        known = {r[0]: steps_by_instance(r[-1] or ()).get(r[0], []) for r in rows if one and r[-2]}
        at = -4 if one else -1  # the column ahead_of
        ahead = {r[0]: r[at] for r in rows if r[0] is not None and r[at] is not None}
        for workflow, flow in limited.items():
            room = limit - len(instances)
            if room <= 0:
                break
            instances += await self._transact(
                functools.partial(
                    self._claim_limited, workflow=workflow, flow=flow, now=now, room=room
                )
            )
        for row in instances:
            self._held[row.key] = lease_of(row)
        short = len(instances) < limit
        self._short_claim = (now, asyncio.get_running_loop().time()) if short else None
        return instances, left, known, ahead

    async def _claim_limited(
        self, conn: Any, workflow: str, flow: FlowLimits, now: float, room: int
    ) -> list[InstanceRow]:
        """One limited workflow's claim, in the caller's transaction: hosts claiming the
        same workflow take turns on its advisory lock, so each measures what the one
        before it claimed and the limits hold across hosts."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.channel}:flow:{workflow}"
        )
        period = flow.rate[1] if flow.rate is not None else 0.0
        plan = FlowPlan.measure(
            flow,
            now,
            await conn.fetchval(Q.flow_executing, workflow),
            await conn.fetch(Q.flow_executing_by_key, workflow) if flow.key_concurrency else (),
            await conn.fetchrow(Q.flow_started, workflow, now - period) if flow.rate else None,
        )
        sql, args = plan.candidates(Q, workflow, room, self.runnable)
        keys = plan.pick(await conn.fetch(sql + " FOR UPDATE SKIP LOCKED", *args), room)
        self._blocked.note(workflow, plan.blocked_until, now)
        if not keys:
            return []
        if plan.new_starts and flow.rate is not None:
            await conn.execute(_RECORD_STARTS, workflow, now - period, now, plan.new_starts)
        rows = await conn.fetch(_CLAIM_KEYS, now, keys, self.host_id, self.lease_seconds)
        return [instance_from_row(r) for r in rows]

    async def claim(self, now: float, limit: int, due: float | None = None) -> list[Lease]:
        return [lease_of(row) for row in (await self._claim(now, limit, due))[0]]

    async def claim_work(self, now: float, limit: int, due: float | None = None) -> list[Claimed]:
        """``claim``, with each claimed instance's row and history: two round trips in all."""
        instances, _, _, ahead = await self._claim(now, limit, due)
        return await self._with_steps(instances, ahead=ahead)

    async def claim_next(
        self, now: float, limit: int, due: float | None = None
    ) -> tuple[list[Claimed], float | None]:
        """``claim_work`` and ``next_run_at``: the claim statement reads the earliest
        ``run_at`` it leaves behind (unless flow limits make the claim several)."""
        instances, left, known, ahead = await self._claim(now, limit, due, later=True)
        claimed = await self._with_steps(instances, known, ahead)
        if len(claimed) >= limit:
            return claimed, None
        if left is _UNREAD:
            return claimed, await self._next_after(claimed, now)
        return claimed, self._recheck_locked(left)

    async def _with_steps(
        self,
        instances: list[InstanceRow],
        known: dict[int, list[StepRow]] | None = None,
        ahead: dict[int, float] | None = None,
    ) -> list[Claimed]:
        """The claimed ``instances`` with their histories (those not ``known`` read in one
        statement), and the ``run_at`` of those claimed ``ahead`` of it."""
        if not instances:
            return []
        leases = [lease_of(row) for row in instances]
        steps = dict(known or {})
        keys = [lease.key for lease in leases if lease.key not in steps]
        try:
            if keys:
                steps.update(
                    steps_by_instance(await self._call(lambda conn: conn.fetch(_STEPS, keys)))
                )
        except BaseException:
            for lease in leases:  # never launched: hand them back
                self._forfeit(lease)
            raise
        ahead = ahead or {}
        return [
            Claimed(lease, row, steps.get(lease.key, []), ahead.get(lease.key))
            for lease, row in zip(leases, instances, strict=True)
        ]

    async def in_flight_by_version(self, workflow: str) -> dict[str | None, int]:
        rows = await self._call(lambda conn: conn.fetch(Q.in_flight_by_version, workflow))
        return {r[0]: r[1] for r in rows}

    async def status_counts(self, workflow: str) -> dict[str, int]:
        rows = await self._call(lambda conn: conn.fetch(Q.status_counts, workflow))
        return {r[0]: r[1] for r in rows}

    async def instance_counts(self, now: float) -> list[InstanceCount]:
        rows = await self._call(lambda conn: conn.fetch(Q.instance_counts, now))
        return [InstanceCount(*row) for row in rows]

    async def next_run_at(self) -> float | None:
        blocked = self._blocked
        if blocked.until:
            sql, args = Q.next_run_at_unblocked(list(blocked.until), blocked.at, self.runnable)
            found = await self._call(lambda conn: conn.fetchval(sql, *args))
            value = blocked.earliest(found)
        else:
            value = await self._call(
                lambda conn: conn.fetchval(Q.next_run_at, *POSTGRES.can_run_args(self.runnable))
            )
        return self._recheck_locked(value)

    def _recheck_locked(self, value: Any) -> float | None:
        """The earliest ``run_at`` found, ``value``, as the time to claim again."""
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

    async def flow_usage(
        self, workflow: str, concurrency_key: str | None, now: float, period: float
    ) -> FlowUsage:
        async def op(conn: Any) -> FlowUsage:
            executing = await conn.fetchval(Q.flow_executing, workflow)
            for_key = (
                await conn.fetchval(Q.flow_executing_for_key, workflow, concurrency_key)
                if concurrency_key is not None
                else 0
            )
            started, oldest = await conn.fetchrow(Q.flow_started, workflow, now - period)
            return FlowUsage(executing, for_key, started, oldest)

        return await self._call(op)

    # --- schedules --------------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleState]:
        rows = await self._call(lambda conn: conn.fetch(Q.schedule_states))
        return {r[0]: ScheduleState(r[0], bool(r[1]), r[2]) for r in rows}

    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> None:
        await self._call(lambda conn: conn.execute(Q.pause_schedule, name, paused, now))

    async def mark_schedule_tick(self, name: str, tick: float) -> None:
        await self._call(lambda conn: conn.execute(Q.mark_schedule_tick, name, tick))

    # --- fenced writes ----------------------------------------------------------------
    def put_step(self, lease: Lease, step: StepRow) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._future()
        self._enqueue(Op("step", lease, future, step=step_values(step)))
        return future

    def take_event(
        self, lease: Lease, step: StepRow, type: str, now: float
    ) -> asyncio.Future[EventRow | None]:
        values = step_values(step)
        consumer = f"{step.name}#{step.count}"

        async def op(conn: Any) -> EventRow | None:
            await self._fence(conn, lease)
            row = await conn.fetchrow(Q.consume_event, consumer, lease.key, type)
            event = event_from_row(row) if row is not None else None
            stored = with_event(values, event, now) if event is not None else values
            if not await self._write_steps(conn, [(lease, stored)]):
                raise lost(lease)
            return event

        future: asyncio.Future[EventRow | None] = self._future()
        self._enqueue(Op("call", lease, future, fn=op))
        return future

    async def pending_events(self, lease: Lease, types: Sequence[str]) -> dict[str, float]:
        sql, args = Q.pending_events(lease.key, types)
        rows = await self._call(lambda conn: conn.fetch(sql, *args))
        return {r[0]: float(r[1]) for r in rows}

    async def oldest_events(self, lease: Lease, types: Sequence[str]) -> dict[str, EventRow]:
        sql, args = Q.oldest_events(lease.key, types)
        rows = await self._call(lambda conn: conn.fetch(sql, *args))
        return {r[1]: event_from_row(r) for r in rows}

    def suspend(
        self, lease: Lease, run_at: float | None, wait_types: Sequence[str], now: float
    ) -> asyncio.Future[str]:
        future: asyncio.Future[str] = self._future()
        if not wait_types:
            self._enqueue(Op("suspend", lease, future, args=(run_at, now), releases=True))
            return future
        waiting = Q.suspend_waiting(lease.key, run_at, wait_types, now)

        async def op(conn: Any) -> str:
            if await self._fence(conn, lease):
                await conn.execute(Q.suspend_paused, lease.key)
                return "paused"
            await conn.execute(waiting[0], *waiting[1])
            return "waiting"

        self._enqueue(Op("call", lease, future, fn=op, releases=True))
        return future

    def begin_rollback(
        self, lease: Lease, error: dict[str, str], rollback_to: str
    ) -> asyncio.Future[None]:
        async def op(conn: Any) -> None:
            await self._fence(conn, lease)
            await conn.execute(Q.begin_rollback, json_text(error), rollback_to, lease.key)

        future: asyncio.Future[None] = self._future()
        self._enqueue(Op("call", lease, future, fn=op))
        return future

    def suspend_rollback(self, lease: Lease, run_at: float) -> asyncio.Future[None]:
        async def op(conn: Any) -> None:
            await self._fence(conn, lease)
            await conn.execute(Q.suspend_rollback, run_at, lease.key)

        future: asyncio.Future[None] = self._future()
        self._enqueue(Op("call", lease, future, fn=op, releases=True))
        return future

    def retry_run(
        self, lease: Lease, run_at: float, error: dict[str, str], dropped: Sequence[StepRow]
    ) -> asyncio.Future[None]:
        async def op(conn: Any) -> None:
            paused = await self._fence(conn, lease)
            await conn.executemany(
                Q.delete_step, [(lease.key, step.name, step.count) for step in dropped]
            )
            await conn.execute(Q.retry_run, json_text(error), lease.key)
            if paused:
                await conn.execute(Q.suspend_paused, lease.key)
            else:
                await conn.execute(
                    "UPDATE instances SET status = 'waiting', run_at = $1, wait_types = NULL,"
                    " owner = NULL, lease_expires = NULL WHERE key = $2",
                    run_at,
                    lease.key,
                )

        future: asyncio.Future[None] = self._future()
        self._enqueue(Op("call", lease, future, fn=op, releases=True))
        return future

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
        future: asyncio.Future[None] = self._future()
        args = (status, text(output), json_text(error), now)
        told = None if parent is None else (parent, child_payload(status, args[1], args[2]))
        self._enqueue(Op("finish", lease, future, args=args, releases=True, parent=told))
        return future

    async def _tell_parent(
        self, conn: Any, parent: int, workflow: str, id: str, end: str, now: float
    ) -> None:
        """Leave a child's parent the event of the child's end; wake it if it waits."""
        await self._tell_parents(conn, [(parent, child_event_type(workflow, id), end, now)])

    def start_child(
        self, lease: Lease, step: StepRow, child: NewInstance
    ) -> asyncio.Future[Literal["created", "adopted", "taken"]]:
        values = step_values(step)

        async def op(conn: Any) -> Literal["created", "adopted", "taken"]:
            await self._fence(conn, lease)
            created = await conn.fetch(
                _CREATE,
                [child.workflow],
                [child.id],
                [text(child.params)],
                [child.created_at],
                [child.trace],
                [child.parent],
                [queued_run_at(child.created_at, child.priority)],
                [child.priority],
                [child.concurrency_key],
                [child.version],
            )
            outcome: Literal["created", "adopted", "taken"] = "created"
            if not created:
                row = await conn.fetchrow(Q.child_by_name, child.workflow, child.id)
                if row is None or row[1] != lease.key:
                    return "taken"
                outcome = "adopted"
                type = child_event_type(child.workflow, child.id)
                pending = await conn.fetchval(Q.has_pending_event, lease.key, type)
                if row[2] in FINAL_STATUSES and pending is None:
                    end = child_payload(row[2], row[3], row[4])
                    await conn.execute(Q.insert_event, lease.key, type, end, child.created_at)
            else:
                await self._notify(conn, "create", child.workflow, child.id)
            if not await self._write_steps(conn, [(lease, values)]):
                raise lost(lease)
            return outcome

        future: asyncio.Future[Literal["created", "adopted", "taken"]] = self._future()
        self._enqueue(Op("call", lease, future, fn=op))
        return future

    # --- streams and logs -------------------------------------------------------------
    def append_chunk(self, lease: Lease, chunk: NewChunk) -> asyncio.Future[int]:
        notice = self._notice("stream", lease.workflow, lease.id)
        args = (*chunk_args(chunk), self.channel, notice)
        future: asyncio.Future[int] = self._future()
        self._enqueue(Op("chunk", lease, future, args=args))
        return future

    def append_log(self, lease: Lease, entry: NewLog) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._future()
        self._enqueue(Op("log", lease, future, args=log_args(entry)))
        return future

    async def read_chunks(self, key: int, stream: str, start: int, limit: int) -> list[ChunkRow]:
        start = min(start, 2**31 - 1)  # the index column is an integer: none lies beyond
        rows = await self._call(lambda conn: conn.fetch(_READ_CHUNKS, key, stream, start, limit))
        return [ChunkRow(*r) for r in rows]

    async def read_logs(self, key: int, after: int, limit: int) -> list[LogRow]:
        rows = await self._call(lambda conn: conn.fetch(_READ_LOGS, key, after, limit))
        return [LogRow(*r) for r in rows]

    async def list_streams(self, key: int) -> list[StreamInfo]:
        rows = await self._call(lambda conn: conn.fetch(_STREAMS_OF, key))
        return [StreamInfo(r[0], r[1], r[2] or 0) for r in rows]

    # --- control ----------------------------------------------------------------------
    async def control(
        self, workflow: str, id: str, action: ControlAction, now: float
    ) -> InstanceRow:
        async def op(conn: Any) -> InstanceRow:
            row = await conn.fetchrow(Q.lock_instance_by_name, workflow, id)
            key, statements = Q.control(row, workflow, id, action, now)
            for sql, args in statements:
                await conn.execute(sql, *args)
            after = instance_from_row(await conn.fetchrow(Q.instance_by_key, key))
            await self._notify(conn, action, workflow, id, after.key, after.epoch)
            return after

        after = await self._transact(op)
        self._after_control(after)
        return after

    def _after_control(self, after: InstanceRow) -> None:
        self._short_claim = None
        held = self._held.get(after.key)
        if held is not None and held.epoch < after.epoch:
            del self._held[after.key]  # this host's engine cancels the activation itself

    async def restart_from(self, workflow: str, id: str, step: StepRef, now: float) -> InstanceRow:
        async def op(conn: Any) -> InstanceRow:
            row = await conn.fetchrow(Q.lock_instance_by_name, workflow, id)
            if row is None:
                raise not_found(workflow, id)
            inst = instance_from_row(row)
            steps = steps_by_instance(await conn.fetch(_STEPS, [inst.key]))
            for sql, args in Q.restart_from(inst, steps.get(inst.key, []), step, now):
                await conn.execute(sql, *args)
            after = instance_from_row(await conn.fetchrow(Q.instance_by_key, inst.key))
            await self._notify(conn, "restart", workflow, id, after.key, after.epoch)
            return after

        after = await self._transact(op)
        self._after_control(after)
        return after

    async def delete_instance(self, workflow: str, id: str, now: float | None = None) -> bool:
        async def op(conn: Any) -> int | None:
            row = await conn.fetchrow(Q.lock_status_by_name, workflow, id)
            if row is None:
                return None
            parent = await conn.fetchval(Q.waiting_parent, row[0])
            for sql, args in Q.delete_instance(row[0]):
                await conn.execute(sql, *args)
            if parent is not None and now is not None:
                end = child_payload("terminated", None, None)
                await self._tell_parent(conn, parent, workflow, id, end, now)
            await self._notify(conn, "delete", workflow, id, row[0])
            key: int = row[0]
            return key

        key = await self._transact(op)
        if key is None:
            return False
        self._short_claim = None
        self._held.pop(key, None)  # this host's engine cancels the activation itself
        return True

    async def load_events(self, key: int) -> list[EventRow]:
        rows = await self._call(lambda conn: conn.fetch(Q.events_of_instance, key))
        return [event_from_row(r) for r in rows]

    async def terminate(
        self, workflow: str, id: str, now: float, *, cascade: bool = False
    ) -> list[InstanceRow]:
        async def op(conn: Any) -> list[InstanceRow]:
            row = await conn.fetchrow(Q.lock_instance_by_name, workflow, id)
            _, statements = Q.control(row, workflow, id, "terminate", now)  # or raises
            assert row is not None
            doomed = [(instance_from_row(row), statements)]
            if cascade:
                for r in await conn.fetch(Q.running_descendants, row[0]):
                    doomed.append((instance_from_row(r), Q.terminated(r[0], now)))
            after = []
            for inst, statements in doomed:
                for sql, args in statements:
                    await conn.execute(sql, *args)
                if inst.parent is not None:
                    end = child_payload("terminated", None, None)
                    await self._tell_parent(conn, inst.parent, inst.workflow, inst.id, end, now)
                done = instance_from_row(await conn.fetchrow(Q.instance_by_key, inst.key))
                await self._notify(conn, "terminate", done.workflow, done.id, done.key, done.epoch)
                after.append(done)
            return after

        rows = await self._transact(op)
        for done in rows:
            self._after_control(done)
        return rows

    async def relatives(self, row: InstanceRow) -> tuple[InstanceRef | None, list[InstanceRef]]:
        async def op(conn: Any) -> tuple[InstanceRef | None, list[InstanceRef]]:
            parent = None
            if row.parent is not None:
                found = await conn.fetchrow(Q.ref_by_key, row.parent)
                parent = InstanceRef(*found) if found is not None else None
            children = [InstanceRef(*r) for r in await conn.fetch(Q.children_of, row.key)]
            return parent, children

        return await self._call(op)

    async def send_event(
        self, workflow: str, id: str, type: str, payload: bytes | None, now: float
    ) -> None:
        async def op(conn: Any) -> None:
            # the row lock orders this against a suspension checking for pending events
            row = await conn.fetchrow(Q.lock_status_by_name, workflow, id)
            key = takes_events(row, workflow, id)
            await conn.execute(Q.insert_event, key, type, text(payload), now)
            if await conn.fetchval(Q.wake_waiting, now, key, type) is not None:
                await self._notify(conn, "wake", workflow, id)

        await self._transact(op)
        self._short_claim = None

    # --- hooks and webhooks -------------------------------------------------------------
    def register_hook(
        self, lease: Lease, hook: HookRow, step: StepRow | None
    ) -> asyncio.Future[bool]:
        hook_args = hook_values(hook)
        values = step_values(step) if step is not None else None

        async def op(conn: Any) -> bool:
            await self._fence(conn, lease)
            await conn.execute(Q.delete_stale_hook, hook.token)
            if await conn.fetchval(Q.insert_hook, *hook_args) is None:
                return False
            if values is not None and not await self._write_steps(conn, [(lease, values)]):
                raise lost(lease)
            return True

        future: asyncio.Future[bool] = self._future()
        self._enqueue(Op("call", lease, future, fn=op))
        return future

    async def find_hook(self, token: str) -> HookRow | None:
        row = await self._call(lambda conn: conn.fetchrow(Q.hook_by_token, token))
        return hook_from_row(row) if row is not None else None

    async def deliver_hook(
        self, token: str, kind: HookKind, payload: bytes | None, now: float
    ) -> tuple[HookDelivery, HookRow | None]:
        async def op(conn: Any) -> tuple[HookDelivery, HookRow | None]:
            key = await conn.fetchval(Q.hook_instance, token)
            if key is None:
                return "unknown", None
            # the instance's row first, as its activation's writes take it: this orders
            # the delivery against a registration, a timeout or a suspension
            await conn.fetchrow(Q.lock_instance_status, key)
            row = await conn.fetchrow(Q.hook_by_token + " FOR UPDATE OF h", token)
            hook = hook_from_row(row) if row is not None else None
            if hook is None or hook.kind != kind or hook.key != key:
                return "unknown", None
            refusal = hook.refusal()
            if refusal is not None:
                return refusal, hook
            await conn.execute(Q.insert_event, key, hook.channel, text(payload), now)
            await conn.execute(Q.consume_hook, now, token)
            if await conn.fetchval(Q.wake_waiting, now, key, hook.channel) is not None:
                await self._notify(conn, "wake", hook.workflow, hook.instance_id)
            return "delivered", hook

        outcome = await self._transact(op)
        self._short_claim = None
        return outcome

    async def waiting_configs(self, workflow: str, id: str) -> list[dict[str, Any]]:
        rows = await self._call(lambda conn: conn.fetch(Q.waiting_configs, workflow, id))
        return [orjson.loads(r[0]) for r in rows if r[0] is not None]

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


def _positive(name: str, given: float | None, from_url: str | None, default: float) -> float:
    raw: Any = given if given is not None else from_url if from_url is not None else default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValidationError(f"{name} must be positive, not {raw!r}")
    return value
