"""Durations: ``timedelta``, a number of milliseconds, or ``"<number> <unit>"``.

The one parser of the project: every duration (a retry delay, a timeout, a sleep, a
config setting, a CLI option) goes through :func:`to_seconds`. The grammar is the one
OpenWorkflow accepts, so durations copied from Cloudflare, OpenWorkflow or Vercel code
work unchanged.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from ._errors import ValidationError

__all__ = ["Duration", "to_seconds"]

Duration: TypeAlias = timedelta | int | float | str
"""A length of time: a ``timedelta``, a number of milliseconds, or a string like
``"10 seconds"``, ``"1.5 hours"``, ``"5m"``, ``"100"`` (milliseconds)."""

#: A year is 365.25 days and a month a twelfth of it, as OpenWorkflow and Cloudflare's
#: local engine compute them.
YEAR_SECONDS = 365.25 * 86400.0
MONTH_SECONDS = YEAR_SECONDS / 12

_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 7 * 86400.0),
    (("mo", "month", "months"), MONTH_SECONDS),
    (("y", "yr", "yrs", "year", "years"), YEAR_SECONDS),
):
    for _name in _names:
        _UNITS[_name] = _secs

#: The longest duration anything takes (a sleep has its own, lower limit): 100 years.
MAX_DURATION_SECONDS = 100 * YEAR_SECONDS

# Spaces only around and between the parts: a tab or a newline in a duration is a
# mistake. A sign is matched so that "-5 s" is refused as negative, not as unreadable.
_PATTERN = re.compile(r" *(-?)([0-9]+(?:\.[0-9]+)?|\.[0-9]+) *([A-Za-z]*) *")


def to_seconds(
    value: Duration, *, what: str = "duration", maximum: float = MAX_DURATION_SECONDS
) -> float:
    """Convert a ``Duration`` to seconds.

    Args:
        value: A ``timedelta``, a number of milliseconds, or a string such as
            ``"10 seconds"``, ``"1.5h"``, ``"250 msecs"`` or ``"100"`` (milliseconds).
        what: How to name the value in an error message (the field it came from).
        maximum: The longest duration accepted, in seconds (default: 100 years).

    Returns:
        The duration in seconds (never negative).

    Raises:
        ValidationError: The value is negative, not a finite number, or a string that
            does not parse; the message names ``what`` and the value. It is also a
            ``ValueError``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValidationError(f"invalid {what}: {value!r} is a bool, not a duration")
    elif isinstance(value, int | float):
        seconds = float(value) / 1000.0
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        unit = match.group(3).lower() if match else ""
        if match is None or (unit and unit not in _UNITS):
            raise ValidationError(
                f"invalid {what} {value!r}: expected '<number> <unit>' with a unit such as "
                "ms, s, m, h, d, w, mo or y (or their long forms), or a number of milliseconds"
            )
        seconds = float(match.group(2)) * (_UNITS[unit] if unit else 0.001)
        if match.group(1) == "-" and seconds > 0:
            seconds = -seconds
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
