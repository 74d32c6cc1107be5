"""The PostgreSQL schema: its migrations, and how a database is migrated (once, by
whichever host gets the advisory lock first)."""

from __future__ import annotations

from typing import Any

from durableflow import ValidationError

__all__ = ["MIGRATIONS", "migrate"]

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
    # 3: the traceparent of the request that created an instance (tracing)
    """
    ALTER TABLE instances ADD COLUMN trace text;
    """,
    # 4: rollback: the status a rolling-back instance ends with (errored, terminated), and
    # how many times run() was retried under the workflow's run_retries; a rolling-back
    # instance holds a lease too
    """
    ALTER TABLE instances ADD COLUMN rollback_to text;
    ALTER TABLE instances ADD COLUMN run_retries integer NOT NULL DEFAULT 0;
    DROP INDEX instances_leased;
    CREATE INDEX instances_leased ON instances (lease_expires)
        WHERE status IN ('running', 'waitingForPause', 'rollingBack');
    """,
    # 5: streams written by steps, and instance logs
    """
    CREATE TABLE stream_chunks (
        instance bigint NOT NULL,
        stream text NOT NULL,
        idx integer NOT NULL,
        step text NOT NULL,
        attempt integer NOT NULL,
        encoding text NOT NULL,
        data text NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (instance, stream, idx)
    );
    CREATE TABLE instance_logs (
        seq bigserial PRIMARY KEY,
        instance bigint NOT NULL,
        level text NOT NULL,
        message text NOT NULL,
        fields text NOT NULL,
        step text,
        attempt integer,
        created_at double precision NOT NULL,
        run_key text,
        UNIQUE (instance, run_key)
    );
    CREATE INDEX instance_logs_by_instance ON instance_logs (instance, seq);
    """,
    # 6: child workflows: the key of the instance that started one
    """
    ALTER TABLE instances ADD COLUMN parent bigint;
    CREATE INDEX instances_by_parent ON instances (parent) WHERE parent IS NOT NULL;
    """,
    # 7: hooks and webhooks: tokens that resume an instance's wait, unique in the store
    """
    CREATE TABLE hooks (
        token text PRIMARY KEY,
        instance bigint NOT NULL,
        kind text NOT NULL,
        step text NOT NULL,
        count integer NOT NULL,
        channel text NOT NULL,
        verify text,
        created_at double precision NOT NULL,
        consumed_at double precision
    );
    CREATE INDEX hooks_by_instance ON hooks (instance);
    """,
    # 8: flow control (priority, concurrency keys, starts per period) and schedules
    """
    ALTER TABLE instances ADD COLUMN priority integer NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN concurrency_key text;
    CREATE INDEX instances_due ON instances (workflow, run_at)
        WHERE run_at IS NOT NULL;
    CREATE INDEX instances_started ON instances (workflow, started_at)
        WHERE started_at IS NOT NULL;
    CREATE TABLE schedules (
        name text PRIMARY KEY,
        paused boolean NOT NULL DEFAULT false,
        last_tick double precision
    );
    """,
    # 9: host identities: a restarted host takes back its own leases at once; the
    # generation fences an older process that still runs under the same identity
    """
    CREATE TABLE hosts (
        host_id text PRIMARY KEY,
        generation bigint NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 10: the version of the workflow class that created an instance (safe deploys)
    """
    ALTER TABLE instances ADD COLUMN version text;
    """,
    # 11: a rate limit counts the starts of its own workflow, written by the claim of a
    # rate-limited workflow only, instead of an index over every instance's start; the
    # last hour's starts (the longest period) carry over
    """
    CREATE TABLE flow_starts (workflow text NOT NULL, at double precision NOT NULL);
    CREATE INDEX flow_starts_by_workflow ON flow_starts (workflow, at);
    INSERT INTO flow_starts (workflow, at) SELECT workflow, started_at FROM instances
        WHERE started_at > extract(epoch FROM now()) - 3600;
    DROP INDEX instances_started;
    """,
]


async def migrate(conn: Any, schema: str | None) -> None:
    """Create ``schema`` if given and apply the migrations the database lacks.

    Raises:
        ValidationError: The database is newer than this version of durableflow.
    """
    lock = f"durableflow:migrate:{schema or ''}"
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
    try:
        if schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if current > len(MIGRATIONS):
            raise ValidationError(
                f"the database has schema version {current}, newer than this "
                f"durableflow ({len(MIGRATIONS)}); upgrade durableflow"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version - 1])
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
