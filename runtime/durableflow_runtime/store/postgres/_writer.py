"""The PostgreSQL writer: fenced writes are queued and applied by one flush loop, one
batch per transaction, each round of the batch plan one multi-row statement per kind;
a write whose outcome is unknown forfeits its lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from durableflow import StorageFullError, StoreUnavailableError

from .._queries import POSTGRES, Queries
from .._rows import StepValues
from ..base import Lease, LeaseLost, child_event_type
from ._batch import NO_LEASE, Op, Round, lost, plan
from ._connection import disk_full, transient
from ._notify import Notifications

log = logging.getLogger("durableflow.postgres")

__all__ = ["GroupCommit"]

Q = Queries(POSTGRES)

# --- the hot path: constant SQL, so every connection prepares each statement once ------
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

_STEP_CONFLICT = _PUT_STEPS[_PUT_STEPS.index("ON CONFLICT") :]

# ``_PUT_STEPS`` for one step (a batch of one: every write of a sequential instance),
# without ``unnest``: the planner's cheaper form of the same fenced upsert.
_PUT_STEP = (
    """
INSERT INTO steps AS s (instance, name, count, seq, type, status, attempts, attempt_log,
    output, error, started_at, ended_at, wake_at, config, host)
SELECT i.key, $3::text, $4::int, $5::int, $6::text, $7::text, $8::int, $9::text, $10::text,
    $11::text, $12::float8, $13::float8, $14::float8, $15::text, $16::text
FROM instances i WHERE i.key = $1 AND i.epoch = $2
FOR NO KEY UPDATE OF i
"""
    + _STEP_CONFLICT
)

_FINISH = """
UPDATE instances i SET status = v.status, output = v.output, error = v.error,
    ended_at = v.ended_at, run_at = NULL, wait_types = NULL, pause_requested = false,
    rollback_to = NULL, owner = NULL, lease_expires = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::float8[])
    AS v(key, epoch, status, output, error, ended_at)
WHERE i.key = v.key AND i.epoch = v.epoch
RETURNING i.key, NULL
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


# Stream chunks and log entries of several instances, one row each, fenced like the
# steps; each chunk tells the other hosts' readers at commit (NOTIFY).
_APPEND_CHUNKS = """
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::int[],
        $6::text[], $7::text[], $8::float8[], $9::text[], $10::text[])
        AS v(key, epoch, stream, step, attempt, encoding, data, created_at, channel, notice)
), fenced AS (
    SELECT v.* FROM v JOIN instances i ON i.key = v.key AND i.epoch = v.epoch
    FOR NO KEY UPDATE OF i
), appended AS (
    INSERT INTO stream_chunks (instance, stream, idx, step, attempt, encoding, data, created_at)
    SELECT f.key, f.stream, coalesce((SELECT max(c.idx) + 1 FROM stream_chunks c
        WHERE c.instance = f.key AND c.stream = f.stream), 0),
        f.step, f.attempt, f.encoding, f.data, f.created_at
    FROM fenced f
    RETURNING instance, idx
)
SELECT a.instance, a.idx, pg_notify(f.channel, f.notice)
FROM appended a JOIN fenced f ON f.key = a.instance
"""

_APPEND_LOGS = """
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::int[], $8::float8[], $9::text[])
        AS v(key, epoch, level, message, fields, step, attempt, created_at, run_key)
), fenced AS (
    SELECT v.* FROM v JOIN instances i ON i.key = v.key AND i.epoch = v.epoch
    FOR NO KEY UPDATE OF i
), appended AS (
    INSERT INTO instance_logs (instance, level, message, fields, step, attempt, created_at,
        run_key)
    SELECT key, level, message, fields, step, attempt, created_at, run_key FROM fenced
    ON CONFLICT (instance, run_key) DO NOTHING
)
SELECT key, NULL FROM fenced
"""

_LOCK_PARENTS = (
    "SELECT key FROM instances WHERE key = ANY($1::bigint[]) ORDER BY key FOR NO KEY UPDATE"
)
_INSERT_ENDS = (
    "INSERT INTO events (instance, type, payload, created_at)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])"
)
# Wakes the parents waiting for one of the ends; separate from the lock, so that it sees
# a suspension committed while the lock was awaited.
_WAKE_PARENTS = """
UPDATE instances i SET run_at = v.now
FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS v(key, type, now)
WHERE i.key = v.key AND i.status = 'waiting' AND v.type = ANY(i.wait_types)
RETURNING i.workflow, i.id
"""


class GroupCommit(Notifications):
    """The write path of :class:`PostgresStore` (which sets the state)."""

    reconnect_timeout: float
    _writer_conn: Any
    _queue: list[Op]
    _wakeup: asyncio.Event
    _idle: asyncio.Event
    _to_release: dict[int, Lease]

    def _drop_held(self, lease: Lease) -> None:
        if self._held.get(lease.key) == lease:
            del self._held[lease.key]

    def _forfeit(self, lease: Lease) -> None:
        """Give up a lease whose last write's outcome is unknown: expire it when possible."""
        self._drop_held(lease)
        self._to_release[lease.key] = lease

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    # --- the writer: group commit -----------------------------------------------------
    def _enqueue(self, op: Op) -> None:
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
                        op.future.set_exception(lost(op.lease, "the store closed"))
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

    async def _commit(self, batch: list[Op]) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = 0.05
        rounds = plan(batch)
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
                if transient(exc):
                    await self._drop_writer()
                full: StoreUnavailableError | None = None
                if disk_full(exc):
                    # nothing of the batch was applied; stop the activations, which resume
                    # from their stored steps once their leases pass on
                    full = StorageFullError(f"the disk of PostgreSQL is full: {exc}")
                    why = full.message
                elif transient(exc) and not committing:
                    now = loop.time()
                    deadline = deadline if deadline is not None else now + self.reconnect_timeout
                    if now < deadline and not self._closing:
                        self.stats["retries"] += 1
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    why = f"PostgreSQL unavailable for {self.reconnect_timeout:g}s: {exc}"
                elif transient(exc):
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
                    if op.lease is NO_LEASE:
                        failure = full or StoreUnavailableError(why)
                    else:
                        self._forfeit(op.lease)
                        self.stats["leases_lost"] += 1
                        failure = lost(op.lease, why)
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
        self, conn: Any, round: Round, outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        if round.steps:
            await self._put_steps(conn, round.steps, outcomes)
        if round.finishes:
            await self._update_many(conn, _FINISH, round.finishes, outcomes)
            ends = [
                (
                    op.parent[0],
                    child_event_type(op.lease.workflow, op.lease.id),
                    op.parent[1],
                    op.args[3],
                )
                for op in round.finishes
                if op.parent is not None and outcomes[id(op)][0]
            ]
            if ends:
                await self._tell_parents(conn, ends)
        if round.suspends:
            await self._update_many(conn, _SUSPEND, round.suspends, outcomes)
        if round.chunks:
            await self._update_many(conn, _APPEND_CHUNKS, round.chunks, outcomes)
        if round.logs:
            await self._update_many(conn, _APPEND_LOGS, round.logs, outcomes)
        for op in round.calls:
            assert op.fn is not None
            try:
                outcomes[id(op)] = (True, await op.fn(conn))
            except LeaseLost as exc:
                outcomes[id(op)] = (False, exc)

    async def _put_steps(
        self, conn: Any, ops: list[Op], outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        # the last write of a step supersedes the earlier ones queued in the same batch
        latest: dict[tuple[int, str, int], Op] = {}
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
                outcomes[id(op)] = (False, lost(op.lease))

    async def _write_steps(
        self, conn: Any, rows: Sequence[tuple[Lease, StepValues]]
    ) -> set[tuple[int, str, int]]:
        if len(rows) == 1:
            lease, values = rows[0]
            result = await conn.fetch(_PUT_STEP, lease.key, lease.epoch, *values, self.host_id)
            return {(r[0], r[1], r[2]) for r in result}
        columns: list[list[Any]] = [[] for _ in range(15)]
        for lease, values in rows:
            columns[0].append(lease.key)
            columns[1].append(lease.epoch)
            for i, value in enumerate(values):
                columns[2 + i].append(value)
        result = await conn.fetch(_PUT_STEPS, *columns, self.host_id)
        return {(r[0], r[1], r[2]) for r in result}

    @staticmethod
    async def _update_many(
        conn: Any, sql: str, ops: list[Op], outcomes: dict[int, tuple[bool, Any]]
    ) -> None:
        """Run ``sql`` once over ``unnest`` of the ops' ``(key, epoch, *args)`` columns.

        Each row it returns, ``(key, value)``, gives that instance's op its result; an op
        whose instance returns none has lost its lease.
        """
        rows = [(op.lease.key, op.lease.epoch, *op.args) for op in ops]
        columns = [list(column) for column in zip(*rows, strict=True)]
        returned = {r[0]: r[1] for r in await conn.fetch(sql, *columns)}
        for op in ops:
            key = op.lease.key
            outcomes[id(op)] = (True, returned[key]) if key in returned else (False, lost(op.lease))

    async def _tell_parents(self, conn: Any, ends: list[tuple[int, str, str, float]]) -> None:
        """Leave each parent the event of its child's end ``(parent, type, payload, now)``
        and wake those that wait for it, in ``conn``'s transaction. The parents' rows are
        locked first (in key order), which orders the events against their suspensions
        as ``send_event`` does."""
        keys = sorted({end[0] for end in ends})
        alive = {r[0] for r in await conn.fetch(_LOCK_PARENTS, keys)}
        ends = [end for end in ends if end[0] in alive]  # a deleted parent is told nothing
        if not ends:
            return
        columns = [list(column) for column in zip(*ends, strict=True)]
        await conn.execute(_INSERT_ENDS, *columns)
        woken = await conn.fetch(_WAKE_PARENTS, columns[0], columns[1], columns[3])
        for workflow, id in {(r[0], r[1]) for r in woken}:
            await self._notify(conn, "wake", workflow, id)

    @staticmethod
    async def _fence(conn: Any, lease: Lease) -> bool:
        """Lock the instance's row if ``lease`` is current; its ``pause_requested``."""
        row = await conn.fetchrow(Q.fence, lease.key, lease.epoch)
        if row is None:
            raise lost(lease)
        return bool(row[0])
