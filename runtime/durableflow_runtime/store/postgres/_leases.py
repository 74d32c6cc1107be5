"""Leases: the instances this host runs are renewed every ``lease_seconds / 3``, a lease
whose epoch moved stops its activation, forfeited leases are expired for another host to
take, and expired ones are announced."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from durableflow import StoreUnavailableError

from ..base import LeaseLost
from ._batch import NO_LEASE, Op
from ._connection import transient
from ._identity import generation_of
from ._writer import GroupCommit

log = logging.getLogger("durableflow.postgres")

__all__ = ["LEASED", "Leases"]

#: The statuses of an instance that holds a lease.
LEASED = "('running', 'waitingForPause', 'rollingBack')"

# Renewal goes through the writer, so it never waits on (or skips) a row lock the writer
# holds. Per held lease: renewed?, pause asked?, and the epoch and status as they were.
_RENEW = f"""
WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS h(key, epoch)
), renewed AS (
    UPDATE instances i SET lease_expires = now() + make_interval(secs => $3)
    FROM held WHERE i.key = held.key AND i.epoch = held.epoch AND i.status IN {LEASED}
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
WHERE i.key = h.key AND i.epoch = h.epoch AND i.status IN {LEASED}
RETURNING i.key
"""


_ANY_EXPIRED = (
    f"SELECT EXISTS (SELECT 1 FROM instances WHERE status IN {LEASED} AND lease_expires < now())"
)


class Leases(GroupCommit):
    """The lease upkeep of :class:`PostgresStore` (which sets the state)."""

    _pause_seen: set[tuple[int, int]]
    generation: int
    superseded: bool

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._check_generation()
                await self._renew()
                await self._release_forfeited()
                if await self._pool_or_fail().fetchval(_ANY_EXPIRED):
                    self._emit("", "", "expired")
            except (Exception, LeaseLost) as exc:
                if isinstance(exc, LeaseLost | StoreUnavailableError) or transient(exc):
                    log.debug("lease upkeep: database unavailable: %s", exc)
                else:
                    log.exception("lease upkeep failed")

    async def _check_generation(self) -> None:
        """Stop when another process started under this host's identity: hand back the
        leases still held (their writes are fenced already) and claim nothing more."""
        if self.superseded:
            return
        current = await generation_of(self._pool_or_fail(), self.host_id)
        if current is None or current == self.generation:
            return
        log.error(
            "host id %r was taken over by another process (generation %s, this one %s); "
            "this host stops running instances: give each host its own host_id",
            self.host_id,
            current,
            self.generation,
        )
        self.superseded = True
        self.stats["superseded"] = 1
        for lease in list(self._held.values()):
            del self._held[lease.key]
            self._to_release[lease.key] = lease
            self.stats["leases_lost"] += 1
            self._emit(lease.workflow, lease.id, "terminate")

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
        self._enqueue(Op("call", NO_LEASE, future, fn=renew))
        state = {r[0]: (r[1], r[2], r[3], r[4]) for r in await future}
        for lease in held:
            if self._held.get(lease.key) != lease:
                continue  # released or claimed again meanwhile
            renewed, paused, epoch, status = state.get(lease.key, (False, False, None, None))
            if renewed:
                self.stats["lease_renewals"] += 1  # observe: counted for /metrics
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
            elif status not in ("running", "waitingForPause", "rollingBack"):
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
                await self._notify(conn, "expired", "", "")
        for lease in leases:
            if self._to_release.get(lease.key) == lease:
                del self._to_release[lease.key]
        if released:
            self._emit("", "", "expired")
