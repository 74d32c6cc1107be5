import abc
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeAlias

import attrs

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
LOG_LEVELS: tuple[LogLevel, ...]

def check_stream_name(name: object) -> str: ...
def check_level(level: object) -> LogLevel: ...

@attrs.frozen(order=False)
class StreamChunk:
    index: int
    data: Any
    step: str
    attempt: int
    time: datetime

@attrs.frozen(order=False)
class LogEntry:
    seq: int
    time: datetime
    level: LogLevel
    message: str
    fields: Mapping[str, Any]
    step: str | None
    attempt: int | None

def chunk_from_json(data: Mapping[str, Any]) -> StreamChunk: ...
def log_from_json(data: Mapping[str, Any]) -> LogEntry: ...

class StreamWriter(abc.ABC):
    name: str
    @abc.abstractmethod
    async def write(self, chunk: Any) -> None: ...

class OutputSink(abc.ABC):
    @abc.abstractmethod
    def stream(self, name: str) -> StreamWriter: ...
    @abc.abstractmethod
    def log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None: ...
