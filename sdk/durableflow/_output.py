"""What an instance tells the world while it runs: stream chunks and log entries.

Steps write to named streams (``ctx.stream("tokens").write(chunk)``) and log
(``ctx.log(...)``); ``run()`` logs with ``step.log(...)``. The host implements the
:class:`OutputSink` behind them and stores both with the instance; readers get
:class:`StreamChunk` and :class:`LogEntry` records.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, get_args

import attrs

from ._errors import ValidationError

__all__ = [
    "LOG_LEVELS",
    "LogEntry",
    "LogLevel",
    "OutputSink",
    "StreamChunk",
    "StreamWriter",
    "check_level",
    "check_stream_name",
    "chunk_from_json",
    "log_from_json",
]

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)


def check_stream_name(name: object) -> str:
    """Validate a stream name: 1-64 characters of ``[A-Za-z0-9_-]``, not starting with ``-``.

    Raises:
        ValidationError: Anything else.
    """
    from ._types import check_id

    return check_id(name, what="stream name", max_length=64)


def check_level(level: object) -> LogLevel:
    """Validate a log level.

    Raises:
        ValidationError: Not one of ``debug``, ``info``, ``warning``, ``error``.
    """
    for known in LOG_LEVELS:
        if level == known:
            return known
    raise ValidationError(f"invalid log level {level!r}: use one of {', '.join(LOG_LEVELS)}")


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)).astimezone(UTC)


@attrs.frozen
class StreamChunk:
    """One chunk of an instance's stream, as a reader gets it.

    Attributes:
        index: Its 0-based position in the stream (the SSE event id).
        data: What the step wrote: a JSON value, a ``str`` or ``bytes``.
        step: The name of the step that wrote it.
        attempt: The attempt of that step that wrote it (a retried attempt's chunks stay).
        time: When it was written (UTC).
    """

    index: int
    data: Any
    step: str
    attempt: int
    time: datetime


@attrs.frozen
class LogEntry:
    """One entry of an instance's log.

    Attributes:
        seq: Its position in the instance's log (pages go by it).
        time: When it was logged (UTC).
        level: ``debug``, ``info``, ``warning`` or ``error``.
        message: The message.
        fields: The keyword fields given with it.
        step: The step that logged it, or ``None`` when ``run()`` did.
        attempt: That step's attempt, or ``None`` for ``run()``.
    """

    seq: int
    time: datetime
    level: LogLevel
    message: str
    fields: Mapping[str, Any]
    step: str | None
    attempt: int | None


def chunk_from_json(data: Mapping[str, Any]) -> StreamChunk:
    """A chunk from its JSON form (the HTTP API's SSE ``data`` and NDJSON lines)."""
    value = data.get("data")
    if data.get("encoding") == "base64":
        value = base64.b64decode(str(value))
    return StreamChunk(
        index=int(data["index"]),
        data=value,
        step=str(data["step"]),
        attempt=int(data["attempt"]),
        time=_time(data["time"]),
    )


def log_from_json(data: Mapping[str, Any]) -> LogEntry:
    """A log entry from its JSON form (an item of ``GET .../logs``)."""
    attempt = data.get("attempt")
    return LogEntry(
        seq=int(data["seq"]),
        time=_time(data["time"]),
        level=check_level(data["level"]),
        message=str(data["message"]),
        fields=dict(data.get("fields") or {}),
        step=data.get("step"),
        attempt=None if attempt is None else int(attempt),
    )


class StreamWriter(abc.ABC):
    """Writes chunks to one stream of the instance; from ``ctx.stream(name)`` in a step."""

    name: str

    @abc.abstractmethod
    async def write(self, chunk: Any) -> None:
        """Append a chunk, durably: when this returns, readers can see it.

        Args:
            chunk: A ``str``, ``bytes``, or anything JSON-representable (attrs classes
                are unstructured).

        Raises:
            SerializationError: The chunk is not JSON-representable.
            LimitExceededError: It is over the payload size limit.
        """

    def __repr__(self) -> str:
        return f"<StreamWriter {self.name!r}>"


class OutputSink(abc.ABC):
    """The host's side of ``ctx.stream``, ``ctx.log`` and ``step.log``."""

    @abc.abstractmethod
    def stream(self, name: str) -> StreamWriter:
        """A writer on the stream ``name`` (already validated)."""

    @abc.abstractmethod
    def log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        """Record a log entry (already validated); must not block."""
