"""Retention: a background task that deletes finished instances past a given age.

``[storage] retention = "30 days"`` starts one :class:`RetentionSweeper` per host. Each
sweep deletes instances that ended (``complete``, ``errored``, ``terminated``) longer
ago than the retention, in batches of :data:`~durableflow_runtime.store.base.PRUNE_BATCH`
with a pause between them (:meth:`Store.prune_finished`), so running instances' writes
never wait behind it. Hosts sharing a PostgreSQL database may all sweep: each instance is
deleted by exactly one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .engine import Engine

__all__ = ["RetentionSweeper", "sweep_interval"]

log = logging.getLogger("durableflow.retention")

#: Longest time between sweeps, whatever the retention.
MAX_SWEEP_INTERVAL = 600.0
#: Shortest time between sweeps (a retention of a second sweeps ten times a second).
MIN_SWEEP_INTERVAL = 0.1


def sweep_interval(retention: float) -> float:
    """Seconds between sweeps: a tenth of the retention, between 0.1 s and 10 minutes.

    An instance is thus deleted at most 10% (or 10 minutes) after it reached the age.
    """
    return min(max(retention / 10, MIN_SWEEP_INTERVAL), MAX_SWEEP_INTERVAL)


class RetentionSweeper:
    """Deletes an engine's finished instances once they are ``retention`` seconds old.

    Args:
        engine: The engine whose store and clock it uses.
        retention: Age, in seconds from an instance's end, at which it is deleted.
        interval: Seconds between sweeps (default: :func:`sweep_interval`).
    """

    def __init__(self, engine: Engine, retention: float, interval: float | None = None) -> None:
        self.engine = engine
        self.retention = retention
        self.interval = interval if interval is not None else sweep_interval(retention)
        #: Instances deleted since the start, for operators and tests.
        self.deleted = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep now, then every ``interval`` seconds, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="durableflow-retention")

    async def stop(self) -> None:
        """Stop sweeping; a batch being deleted is rolled back or committed whole."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> int:
        """Delete what has reached the age now; how many instances were deleted."""
        deleted = await self.engine.prune(self.retention)
        self.deleted += deleted
        if deleted:
            log.info(
                "retention: deleted %d finished instance(s) that ended over %gs ago",
                deleted,
                self.retention,
            )
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                # the store is away or full: the next sweep tries again
                log.warning("retention: sweep failed, retrying in %gs: %s", self.interval, exc)
            await asyncio.sleep(self.interval)
