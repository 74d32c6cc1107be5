"""Streams and instance logs in the store: the rows, and the SQL both stores run.

A chunk's index is the stream's length when it is written (``max(idx) + 1``): only the
holder of the instance's lease writes (the statement is fenced by the epoch), and its
writes apply in call order, so the indexes of one stream are 0, 1, 2, ... with no gap.

A log entry from ``run()`` carries a ``run_key`` (its position in the history, see the
engine); a replay writes the same key again and the store ignores it, so an entry is
recorded once however often ``run()`` replays. Entries from steps carry none.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "APPEND_CHUNK",
    "APPEND_LOG",
    "READ_CHUNKS",
    "READ_LOGS",
    "STREAMS_OF",
    "ChunkRow",
    "LogRow",
    "NewChunk",
    "NewLog",
    "StreamInfo",
]


@attrs.frozen
class NewChunk:
    """A chunk to append: ``data`` is JSON text, or base64 text when ``encoding`` is
    ``base64`` (bytes written by the step)."""

    stream: str
    step: str
    attempt: int
    encoding: str
    data: str
    created_at: float


@attrs.frozen
class ChunkRow:
    """A stored chunk."""

    index: int
    step: str
    attempt: int
    encoding: str
    data: str
    created_at: float


@attrs.frozen
class NewLog:
    """A log entry to append; ``fields`` is JSON text."""

    level: str
    message: str
    fields: str
    step: str | None
    attempt: int | None
    created_at: float
    run_key: str | None = None


@attrs.frozen
class LogRow:
    """A stored log entry."""

    seq: int
    level: str
    message: str
    fields: str
    step: str | None
    attempt: int | None
    created_at: float


@attrs.frozen
class StreamInfo:
    """One stream of an instance: its name, how many chunks and how many bytes it holds."""

    name: str
    chunks: int
    bytes: int


# ``?`` placeholders, numbered for PostgreSQL with the dialect's ``sql()``. The appends
# are SQLite's (one row at a time, in its writer's transaction; the instance's key and the
# lease's epoch come last: nothing is written unless the epoch is current); PostgreSQL
# appends many rows in one statement (``postgres/_writer.py``).
APPEND_CHUNK = """
INSERT INTO stream_chunks (instance, stream, idx, step, attempt, encoding, data, created_at)
SELECT i.key, ?1, coalesce((SELECT max(c.idx) + 1 FROM stream_chunks c
    WHERE c.instance = i.key AND c.stream = ?1), 0), ?2, ?3, ?4, ?5, ?6
FROM instances i WHERE i.key = ?7 AND i.epoch = ?8
RETURNING idx
"""

# ON CONFLICT: a replay of run() logs an entry whose run_key is stored already
APPEND_LOG = """
INSERT INTO instance_logs (instance, level, message, fields, step, attempt, created_at, run_key)
SELECT i.key, ?, ?, ?, ?, ?, ?, ? FROM instances i WHERE i.key = ? AND i.epoch = ?
ON CONFLICT (instance, run_key) DO NOTHING
"""

READ_CHUNKS = """
SELECT idx, step, attempt, encoding, data, created_at FROM stream_chunks
WHERE instance = ? AND stream = ? AND idx >= ? ORDER BY idx LIMIT ?
"""

READ_LOGS = """
SELECT seq, level, message, fields, step, attempt, created_at FROM instance_logs
WHERE instance = ? AND seq > ? ORDER BY seq LIMIT ?
"""

STREAMS_OF = """
SELECT stream, count(*), sum(length(data)) FROM stream_chunks WHERE instance = ?
GROUP BY stream ORDER BY stream
"""


def chunk_args(chunk: NewChunk) -> tuple[Any, ...]:
    """A chunk's values, in the order of the columns after ``instance``."""
    return (
        chunk.stream,
        chunk.step,
        chunk.attempt,
        chunk.encoding,
        chunk.data,
        chunk.created_at,
    )


def log_args(entry: NewLog) -> tuple[Any, ...]:
    """A log entry's values, in the order of the columns after ``instance``."""
    return (
        entry.level,
        entry.message,
        entry.fields,
        entry.step,
        entry.attempt,
        entry.created_at,
        entry.run_key,
    )
