"""``[[schedules]]``: workflows started on a clock, parsed and computed here.

A cron expression is evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ (typed,
maintained, written for Healthchecks' cron monitoring): five fields, or six with a
leading seconds field, in the schedule's time zone from :mod:`zoneinfo`, with Debian
cron's behaviour at daylight-saving changes (a daily job in a skipped hour runs once at
the end of the gap, one in a repeated hour runs once). docs/schedules.md says why it was
chosen over croniter.

Each tick is one instance whose id is ``{name}-{YYYYMMDDHHMMSS}`` (the tick in UTC): every
host starts the same id and the store keeps one, so ``n`` hosts make one instance per
tick. The engine's :class:`~durableflow_runtime.engine.ScheduleRunner` does the ticking.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from durableflow import ValidationError
from durableflow._types import check_id

__all__ = ["CATCH_UP", "ScheduleConfig", "instance_id", "parse_schedules"]

CatchUp = Literal["latest", "all", "none"]
CATCH_UP: tuple[CatchUp, ...] = ("latest", "all", "none")
_KEYS = ("name", "workflow", "cron", "timezone", "params", "catch_up")
#: A schedule's name leaves room in a 100-character id for ``-YYYYMMDDHHMMSS``.
MAX_NAME = 100 - 15


def instance_id(name: str, tick: float) -> str:
    """The id of the instance a schedule starts at ``tick`` (epoch seconds)."""
    return f"{name}-{datetime.fromtimestamp(tick, UTC):%Y%m%d%H%M%S}"


@attrs.frozen
class ScheduleConfig:
    """One ``[[schedules]]`` entry.

    Attributes:
        name: Its name, the prefix of its instances' ids (default: the workflow's name).
        workflow: The workflow it starts.
        cron: Five fields, or six with a leading seconds field.
        timezone: The IANA time zone the fields are read in.
        params: The params of each instance it starts.
        catch_up: After downtime, start the ``latest`` missed tick, ``all`` of them, or
            ``none``.
    """

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    params: Any = None
    catch_up: CatchUp = "latest"

    def ticks(self, after: float, until: float | None = None) -> Iterator[float]:
        """The ticks after ``after`` (epoch seconds), up to ``until`` when given."""
        start = datetime.fromtimestamp(after, ZoneInfo(self.timezone))
        for moment in CronSim(self.cron, start):
            tick = moment.timestamp()
            if until is not None and tick > until:
                return
            yield tick

    def next_tick(self, after: float) -> float | None:
        """The first tick after ``after``, or ``None`` if there is none (``0 0 30 2 *``)."""
        return next(self.ticks(after), None)


def parse_schedules(
    entries: Sequence[object], workflows: set[str] | Mapping[str, Any]
) -> list[ScheduleConfig]:
    """Check the ``[[schedules]]`` entries of a config.

    Raises:
        ValidationError: A message naming the schedule and what is wrong with it.
    """
    schedules: list[ScheduleConfig] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"schedules[{index}]"
        if not isinstance(entry, dict):
            raise ValidationError(f"{where} must be a table, not {entry!r}")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise ValidationError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in {where} "
                f"(allowed: {', '.join(_KEYS)})"
            )
        workflow = entry.get("workflow")
        if not isinstance(workflow, str) or workflow not in workflows:
            raise ValidationError(
                f"{where}: workflow must name a [[workflows]] entry, not {workflow!r}"
            )
        name = entry.get("name", workflow)
        try:
            check_id(name, what="schedule name", max_length=MAX_NAME)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.message}") from None
        where = f"schedule {name!r}"
        if name in names:
            raise ValidationError(f"schedule name {name!r} is used twice")
        names.add(name)
        schedules.append(_schedule(entry, name, workflow, where))
    return schedules


def _schedule(entry: Mapping[str, Any], name: str, workflow: str, where: str) -> ScheduleConfig:
    cron = entry.get("cron")
    if not isinstance(cron, str):
        raise ValidationError(f"{where}: cron must be a string such as '0 9 * * MON-FRI'")
    if len(cron.split()) not in (5, 6):
        raise ValidationError(
            f"{where}: cron {cron!r} must have five fields (minute hour day month weekday), "
            "or six with a leading seconds field"
        )
    timezone = entry.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str) or not timezone:
            raise ZoneInfoNotFoundError
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{where}: timezone {timezone!r} is not an IANA time zone such as 'Europe/Paris'"
        ) from None
    try:
        CronSim(cron, datetime.now(zone))
    except CronSimError as exc:
        raise ValidationError(f"{where}: cron {cron!r} is invalid: {exc}") from None
    catch_up = entry.get("catch_up", "latest")
    if catch_up not in CATCH_UP:
        raise ValidationError(
            f"{where}: catch_up must be one of {', '.join(map(repr, CATCH_UP))}, not {catch_up!r}"
        )
    return ScheduleConfig(
        name=name,
        workflow=workflow,
        cron=cron,
        timezone=timezone,
        params=entry.get("params"),
        catch_up=catch_up,
    )
