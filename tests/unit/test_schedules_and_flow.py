"""Schedules' cron arithmetic and flow control's pick, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from durableflow import ValidationError
from durableflow_runtime.config import parse_rate
from durableflow_runtime.schedules import ScheduleConfig, instance_id, parse_schedules
from durableflow_runtime.store._flow import FlowPlan, queued_run_at, why_blocked
from durableflow_runtime.store.base import FlowLimits, FlowUsage

PARIS = ZoneInfo("Europe/Paris")


def _at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    tz: ZoneInfo | None = None,
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz or UTC).timestamp()


def test_instance_ids_name_the_tick_in_utc() -> None:
    """A tick's instance id is the schedule's name and the tick in UTC, without colons."""
    assert instance_id("report", _at(2026, 3, 2, 8, 0, 5)) == "report-20260302080005"


def test_ticks_follow_the_time_zone_across_daylight_saving() -> None:
    """A daily 02:30 in Paris runs once on the day the clock skips that hour (at 03:00)
    and once on the day it repeats it; a six-field cron ticks on seconds."""
    daily = ScheduleConfig(name="d", workflow="w", cron="30 2 * * *", timezone="Europe/Paris")
    spring = list(daily.ticks(_at(2026, 3, 28, 12, tz=PARIS), _at(2026, 3, 30, 12, tz=PARIS)))
    assert [datetime.fromtimestamp(t, PARIS).strftime("%d %H:%M") for t in spring] == [
        "29 03:00",
        "30 02:30",
    ]
    autumn = list(daily.ticks(_at(2026, 10, 24, 12, tz=PARIS), _at(2026, 10, 25, 12, tz=PARIS)))
    assert len(autumn) == 1
    seconds = ScheduleConfig(name="s", workflow="w", cron="*/15 * * * * *")
    assert list(seconds.ticks(_at(2026, 1, 1), _at(2026, 1, 1, 0, 1))) == [
        _at(2026, 1, 1, 0, 0, s) for s in (15, 30, 45)
    ] + [_at(2026, 1, 1, 0, 1)]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"workflow": "nope", "cron": "* * * * *"}, "workflow must name a [[workflows]] entry"),
        ({"workflow": "w", "cron": "0 25 * * *"}, "schedule 'w': cron '0 25 * * *' is invalid"),
        ({"workflow": "w", "cron": "0 9 * *"}, "must have five fields"),
        ({"workflow": "w", "cron": "0 9 * * *", "timezone": "Paris"}, "not an IANA time zone"),
        ({"workflow": "w", "cron": "0 9 * * *", "catch_up": "some"}, "catch_up must be one of"),
        ({"workflow": "w", "cron": "0 9 * * *", "name": "a:b"}, "schedule name"),
        ({"workflow": "w", "cron": "0 9 * * *", "every": 1}, "unknown key(s) 'every'"),
    ],
)
def test_bad_schedules_name_what_is_wrong(entry: dict[str, object], message: str) -> None:
    """Every mistake in a [[schedules]] entry is one message naming it."""
    with pytest.raises(ValidationError) as caught:
        parse_schedules([entry], {"w"})
    assert message in caught.value.message


def test_two_schedules_may_not_share_a_name() -> None:
    """Schedule names are their instances' id prefix: one per name."""
    entry = {"workflow": "w", "cron": "0 9 * * *"}
    with pytest.raises(ValidationError, match="schedule name 'w' is used twice"):
        parse_schedules([entry, entry], {"w"})


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/minute", (100, 60.0)), ("5/second", (5, 1.0)), ("2/hours", (2, 3600.0))],
)
def test_rates_parse(text: str, rate: tuple[int, float]) -> None:
    """A rate is starts per second, minute or hour."""
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "0/minute", "ten/minute", "5/day", 5])
def test_bad_rates_are_refused(text: object) -> None:
    """Anything else names the value."""
    with pytest.raises(ValidationError, match="rate_limit must be"):
        parse_rate(text)


def test_pick_holds_every_limit_and_says_when_to_look_again() -> None:
    """The pick takes candidates in order while the workflow, its keys and its rate allow,
    and skips the ones a full key or the rate holds back without stopping."""
    flow = FlowLimits(max_concurrency=5, key_concurrency=1, rate=(2, 60.0), label="2/minute")
    plan = FlowPlan.measure(flow, 100.0, 1, [("a", 1)], (1, 70.0))
    candidates = [(1, True, "a"), (2, True, "b"), (3, True, "c"), (4, False, "c"), (5, False, None)]
    # 1: key "a" is full; 2 takes the rate's last start; 3 (new) waits for the rate; 4
    # (resumed, so not a start) takes key "c"; 5 has no key
    assert plan.pick(candidates, room=10) == [2, 4, 5]
    assert plan.executing == 4
    assert plan.blocked_until == 70.0 + 60.0  # when the oldest start leaves the minute
    assert FlowPlan.measure(flow, 100.0, 5, [], None).pick(candidates, room=10) == []


def test_why_blocked_names_the_limit() -> None:
    """The detail's blocked names the limit that holds the instance back."""
    flow = FlowLimits(max_concurrency=20, key_concurrency=2, rate=(100, 60.0), label="100/minute")
    assert (
        why_blocked(flow, FlowUsage(20, 0, 0, None), None, True) == "concurrency limit 20 reached"
    )
    assert why_blocked(flow, FlowUsage(3, 2, 0, None), "k", True) == (
        "concurrency limit 2 reached for key 'k'"
    )
    assert why_blocked(flow, FlowUsage(3, 0, 100, 1.0), "k", True) == (
        "rate limit 100/minute reached"
    )
    assert why_blocked(flow, FlowUsage(3, 0, 100, 1.0), "k", False) is None


def test_priority_orders_queued_instances_first() -> None:
    """A higher priority sorts first whatever the age; within one, the older first."""
    assert queued_run_at(1000.0, 1) < queued_run_at(1.0, 0) < queued_run_at(2.0, 0)
