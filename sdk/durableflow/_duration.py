"""Durations: ``timedelta``, a number of milliseconds, or ``"<number> <unit>"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from ._errors import ValidationError

__all__ = ["Duration", "to_seconds"]

Duration: TypeAlias = timedelta | int | float | str
"""A length of time: a ``timedelta``, a number of milliseconds, or a string like
``"10 seconds"``, ``"1.5 hours"``, ``"5m"``."""

_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("ms", "millisecond", "milliseconds"), 0.001),
    (("s", "second", "seconds"), 1.0),
    (("m", "minute", "minutes"), 60.0),
    (("h", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 7 * 86400.0),
    (("month", "months"), 30 * 86400.0),
    (("y", "year", "years"), 365 * 86400.0),
):
    for _name in _names:
        _UNITS[_name] = _secs

# spaces only around and between the parts: a tab or a newline in a duration is a mistake
#: The longest duration anything takes (a sleep has its own, lower limit): 100 years.
MAX_DURATION_SECONDS = 100 * 365 * 86400.0

_PATTERN = re.compile(r" *([0-9]+(?:\.[0-9]+)?|\.[0-9]+) *([A-Za-z]+) *")


def to_seconds(
    value: Duration, *, what: str = "duration", maximum: float = MAX_DURATION_SECONDS
) -> float:
    """Convert a ``Duration`` to seconds.

    Args:
        value: A ``timedelta``, a number of milliseconds, or a string such as ``"10 seconds"``.
        what: How to name the value in an error message.
        maximum: The longest duration accepted, in seconds (default: 100 years).

    Returns:
        The duration in seconds (never negative).

    Raises:
        ValidationError: The value is negative, not a number, or a string that does not parse.
            It is also a ``ValueError``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValidationError(f"invalid {what}: {value!r} is a bool, not a duration")
    elif isinstance(value, int | float):
        seconds = float(value) / 1000.0
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValidationError(
                f"invalid {what} {value!r}: expected '<number> <unit>' with a unit such as "
                "ms, seconds, minutes, hours, days, weeks, months or years"
            )
        seconds = float(match.group(1)) * _UNITS[unit]
    else:
        raise ValidationError(
            f"invalid {what}: {value!r} (expected a timedelta, milliseconds, or a string)"
        )
    if not math.isfinite(seconds):
        raise ValidationError(f"invalid {what} {value!r}: must be a finite number")
    if seconds < 0:
        raise ValidationError(f"invalid {what} {value!r}: must not be negative")
    if seconds > maximum:
        raise ValidationError(f"invalid {what} {value!r}: at most {maximum / 86400:g} days")
    return seconds
