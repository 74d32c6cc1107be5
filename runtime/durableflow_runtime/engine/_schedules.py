"""The schedule runner: one task per host that starts an instance at every cron tick.

Every host runs it. They agree without talking: a tick's instance id is derived from the
tick (``{name}-{YYYYMMDDHHMMSS}``), so the second host to create it gets
``InstanceExistsError`` and moves on. What the hosts share lives in the store: whether a
schedule is paused (read at every tick, so a pause on one host stops all) and the last
tick done (so a host that starts after downtime knows what was missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durableflow import InstanceExistsError, NotFoundError, StoreUnavailableError

from ..schedules import ScheduleConfig, instance_id

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("durableflow.schedules")

__all__ = ["MAX_CATCH_UP", "ScheduleRunner"]

#: ``catch_up = "all"`` starts at most this many missed ticks per schedule (the latest).
MAX_CATCH_UP = 1000


class ScheduleRunner:
    """Starts the instances of an engine's schedules.

    Args:
        engine: The engine that creates them (its store and clock).
        schedules: The ``[[schedules]]`` of the config.
    """

    def __init__(self, engine: Engine, schedules: Sequence[ScheduleConfig]) -> None:
        self.engine = engine
        self.schedules = {s.name: s for s in schedules}
        #: per schedule, the last tick this host has dealt with
        self._cursor: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def get(self, name: str) -> ScheduleConfig:
        """A schedule by name.

        Raises:
            NotFoundError: No such schedule.
        """
        try:
            return self.schedules[name]
        except KeyError:
            raise NotFoundError(f"no schedule named {name!r}") from None

    def start(self) -> None:
        """Catch up, then tick (the store is open)."""
        if self.schedules:
            self._task = asyncio.create_task(self._run(), name="durableflow-schedules")

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- what the API shows --------------------------------------------------------
    async def describe(self) -> list[dict[str, Any]]:
        """Each schedule with its state: ``name``, ``workflow``, ``cron``, ``timezone``,
        ``catch_up``, ``paused``, ``next_instance`` (ISO time of the next tick, ``None``
        while paused) and ``last_tick``."""
        states = await self.engine.store.schedule_states()
        now = self.engine.clock.now()
        result = []
        for schedule in self.schedules.values():
            state = states.get(schedule.name)
            paused = state is not None and state.paused
            last = state.last_tick if state is not None else None
            upcoming = None if paused else schedule.next_tick(max(now, last or now))
            result.append(
                {
                    "name": schedule.name,
                    "workflow": schedule.workflow,
                    "cron": schedule.cron,
                    "timezone": schedule.timezone,
                    "catch_up": schedule.catch_up,
                    "paused": paused,
                    "next_instance": _iso(upcoming),
                    "last_tick": _iso(last),
                }
            )
        return result

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """Pause or resume a schedule on every host; its description afterwards.

        Raises:
            NotFoundError: No such schedule.
        """
        self.get(name)
        await self.engine.store.set_schedule_paused(name, paused, self.engine.clock.now())
        [info] = [s for s in await self.describe() if s["name"] == name]
        return info

    # --- ticking -------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._catch_up()
                break
            except StoreUnavailableError as exc:
                log.warning("schedules: cannot read their state yet (%s); retrying", exc)
                await asyncio.sleep(1.0)
        clock = self.engine.clock
        while True:
            upcoming = [
                tick
                for name, schedule in self.schedules.items()
                if (tick := schedule.next_tick(self._cursor[name])) is not None
            ]
            if not upcoming:
                return
            await clock.sleep_until(min(upcoming))
            try:
                await self._tick(clock.now())
            except StoreUnavailableError as exc:
                log.warning("schedules: the store is unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
            except Exception:
                # the clock must keep going: the tick is tried again (its id dedupes)
                log.exception("schedules: a tick failed; retrying")
                await asyncio.sleep(1.0)

    async def _catch_up(self) -> None:
        """Start what was missed while no host ran, as each schedule's ``catch_up`` says."""
        states = await self.engine.store.schedule_states()
        now = self.engine.clock.now()
        for name, schedule in self.schedules.items():
            state = states.get(name)
            self._cursor[name] = now
            if state is None or state.paused or state.last_tick is None:
                continue  # new (nothing was missed) or paused (nothing is due)
            if schedule.catch_up == "none":
                continue
            missed = list(schedule.ticks(state.last_tick, now))
            if schedule.catch_up == "latest":
                missed = missed[-1:]
            elif len(missed) > MAX_CATCH_UP:
                log.warning(
                    "schedule %r missed %d ticks; starting the latest %d",
                    name,
                    len(missed),
                    MAX_CATCH_UP,
                )
                missed = missed[-MAX_CATCH_UP:]
            for tick in missed:
                await self._start(schedule, tick, late=True)

    async def _tick(self, now: float) -> None:
        due = {
            name: ticks
            for name, schedule in self.schedules.items()
            if (ticks := list(schedule.ticks(self._cursor[name], now)))
        }
        if not due:
            return
        states = await self.engine.store.schedule_states()
        for name, ticks in due.items():
            state = states.get(name)
            if state is None or not state.paused:
                for tick in ticks:
                    await self._start(self.schedules[name], tick)
            self._cursor[name] = ticks[-1]

    async def _start(self, schedule: ScheduleConfig, tick: float, late: bool = False) -> None:
        """Create the tick's instance unless another host did; record the tick (``late``:
        a tick missed while no host ran)."""
        id = instance_id(schedule.name, tick)
        try:
            await self.engine.create(schedule.workflow, [(id, schedule.params)])
        except InstanceExistsError:
            pass  # another host started this tick
        except StoreUnavailableError:
            raise
        except Exception:
            # bad params were refused at start-up; anything else must not stop the clock
            log.exception("schedule %r: starting %s failed", schedule.name, id)
        else:
            what = "caught up with" if late else "started"
            log.info("schedule %r %s %s", schedule.name, what, id)
        await self.engine.store.mark_schedule_tick(schedule.name, tick)


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
