from datetime import timedelta
from typing import TypeAlias

__all__ = ["Duration", "to_seconds"]

# A timedelta, a number of milliseconds, or "<number> <unit>" ("10 seconds", "1.5 hours", "5m").
Duration: TypeAlias = timedelta | int | float | str

def to_seconds(value: Duration, *, what: str = "duration", maximum: float = ...) -> float: ...
