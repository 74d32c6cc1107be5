"""Streams and logs on the engine's side: the writers steps get, the run-level log with its
replay rule, and the readers the bindings and the HTTP API use.

A chunk is written durably before ``write()`` returns; then the engine's listeners are
told, which wakes this host's readers at once. Readers on other hosts hear of it through
the store (PostgreSQL ``NOTIFY``, sent in the chunk's own statement), and look again now
and then in case a notification was lost.

``run()`` replays from its start on every activation, so ``step.log`` must not log again
what an earlier activation logged. An entry is keyed by where ``run()`` was when it
logged it: the restart generation, the number of steps ``run()`` had entered, and how many
entries it had logged since. While replay has not caught up with the stored history, the
entry was logged before and is skipped; once it has, the entry is written with its key,
and the store ignores a key it holds already (an activation cut off by a crash after the
entry was stored but before the next step was).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durableflow import NotFoundError, ValidationError
from durableflow._output import LogEntry, LogLevel, OutputSink, StreamChunk, StreamWriter
from durableflow._serde import dumps, loads

from ..store._output import ChunkRow, LogRow, NewChunk, NewLog
from ..store.base import FINAL_STATUSES

if TYPE_CHECKING:
    from ._activation import _Activation
    from ._engine import Engine

__all__ = [
    "StepOutput",
    "StreamHub",
    "chunk_of",
    "entry_of",
    "log_entry",
    "read_stream",
]

#: The Python logger that instance log entries are forwarded to.
workflow_log = logging.getLogger("durableflow.workflow")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: Chunks a reader fetches per query.
READ_BATCH = 500
#: Seconds between a reader's looks at the store when no change was announced (the
#: instance may have ended on another host, or a notification been lost).
RECHECK = 1.0


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def chunk_of(row: ChunkRow) -> StreamChunk:
    """The reader's view of a stored chunk."""
    data = base64.b64decode(row.data) if row.encoding == "base64" else loads(row.data)
    return StreamChunk(
        index=row.index, data=data, step=row.step, attempt=row.attempt, time=_time(row.created_at)
    )


def entry_of(row: LogRow) -> LogEntry:
    """The reader's view of a stored log entry."""
    from durableflow._output import check_level

    return LogEntry(
        seq=row.seq,
        time=_time(row.created_at),
        level=check_level(row.level),
        message=row.message,
        fields=loads(row.fields),
        step=row.step,
        attempt=row.attempt,
    )


def log_entry(
    act: _Activation,
    level: LogLevel,
    message: str,
    fields: dict[str, Any],
    *,
    step: str | None,
    attempt: int | None,
    run_key: str | None = None,
) -> None:
    """Queue a log entry for the store (in order with the instance's other writes, not
    awaited) and forward it to the ``durableflow.workflow`` logger.

    Raises:
        SerializationError: A field is not JSON-representable.
    """
    data = dumps(fields, what=lambda: f"the fields of log message {message!r}")
    act.check_size(data, f"the fields of log message {message!r}")
    entry = NewLog(
        level, message, data.decode(), step, attempt, act.engine.clock.now(), run_key=run_key
    )
    future = act.engine.store.append_log(act.lease, entry)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    where = f"{act.spec.name}/{act.lease.id}"
    if step is not None:
        where += f" step {step!r} attempt {attempt}"
    workflow_log.log(
        _LEVELS[level],
        "%s: %s",
        where,
        message,
        extra={
            "workflow": act.spec.name,
            "instance": act.lease.id,
            "step": step,
            "attempt": attempt,
            "fields": fields,
        },
    )


class _EngineStreamWriter(StreamWriter):
    """A step attempt's writer on one stream."""

    def __init__(self, output: StepOutput, name: str) -> None:
        self._output = output
        self.name = name
        self._step = output.step
        self._attempt = output.attempt

    async def write(self, chunk: Any) -> None:
        self._output.check_open()
        act = self._output.act
        what = f"a chunk of stream {self.name!r} (step {self._step!r})"
        if isinstance(chunk, bytes | bytearray | memoryview):
            raw = bytes(chunk)
            act.check_size(raw, what)
            encoding, text = "base64", base64.b64encode(raw).decode()
        else:
            data = dumps(chunk, what=what)
            act.check_size(data, what)
            encoding, text = "json", data.decode()
        now = act.engine.clock.now()
        chunk_row = NewChunk(self.name, self._step, self._attempt, encoding, text, now)
        index = await act.engine.store.append_chunk(act.lease, chunk_row)
        stored = ChunkRow(index, self._step, self._attempt, encoding, text, now)
        act.engine.stream_hub.publish((act.spec.name, act.lease.id, self.name), stored)
        act.engine.notify(act.spec.name, act.lease.id, None)


class StepOutput(OutputSink):
    """What ``ctx.stream`` and ``ctx.log`` write to, for one attempt of one step."""

    def __init__(self, act: _Activation, step: str, attempt: int) -> None:
        self.act = act
        self.step = step
        self.attempt = attempt
        self.closed = False

    def close(self) -> None:
        """The attempt has ended: its writers and its log refuse anything more."""
        self.closed = True

    def check_open(self) -> None:
        if self.closed:
            raise ValidationError(
                f"step {self.step!r} attempt {self.attempt} has ended: write to its streams "
                "and log from inside the step"
            )

    def stream(self, name: str) -> StreamWriter:
        return _EngineStreamWriter(self, name)

    def log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        self.check_open()
        log_entry(self.act, level, message, fields, step=self.step, attempt=self.attempt)


class StreamHub:
    """Hands each chunk written on this host to this host's readers of its stream, so that
    a reader that has caught up takes it from memory, not with a query per chunk. A reader
    whose buffer has a gap (it fell behind, or the chunk was written on another host)
    reads from the store instead."""

    def __init__(self) -> None:
        self._readers: dict[tuple[str, str, str], list[collections.deque[ChunkRow]]] = {}

    def subscribe(self, key: tuple[str, str, str]) -> collections.deque[ChunkRow]:
        buffer: collections.deque[ChunkRow] = collections.deque(maxlen=READ_BATCH)
        self._readers.setdefault(key, []).append(buffer)
        return buffer

    def unsubscribe(self, key: tuple[str, str, str], buffer: collections.deque[ChunkRow]) -> None:
        readers = self._readers.get(key)
        if readers is not None:
            readers[:] = [b for b in readers if b is not buffer]
            if not readers:
                del self._readers[key]

    def publish(self, key: tuple[str, str, str], row: ChunkRow) -> None:
        for buffer in self._readers.get(key, ()):
            buffer.append(row)


async def read_stream(
    engine: Engine, workflow: str, id: str, stream: str, start: int
) -> AsyncGenerator[ChunkRow, None]:
    """The chunks of a stream from index ``start`` on, as they are written; ends when the
    instance has ended and every chunk was read.

    Raises:
        NotFoundError: No such instance (or it was deleted while being read).
    """
    engine.spec(workflow)
    changed = asyncio.Event()
    # the instance's row is read again only when its status may have changed: a chunk's
    # notification carries no status
    recheck = True

    def listener(wf: str, iid: str, status: str | None) -> None:
        nonlocal recheck
        if wf == workflow and iid == id:
            if status is not None:
                recheck = True
            changed.set()

    hub_key = (workflow, id, stream)
    # subscribed before the first read: a chunk committed meanwhile is in one or the other
    buffer = engine.stream_hub.subscribe(hub_key)
    engine.add_listener(listener)
    try:
        next_index = start
        key = 0
        ended = False
        while True:
            changed.clear()
            if recheck:
                recheck = False
                row = await engine.store.get_instance(workflow, id)
                if row is None:
                    raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
                key, ended = row.key, row.status in FINAL_STATUSES
            while buffer and buffer[0].index < next_index:
                buffer.popleft()  # read from the store already
            if not ended and buffer and buffer[0].index == next_index:
                while buffer and buffer[0].index == next_index:
                    chunk = buffer.popleft()
                    next_index += 1
                    yield chunk
            else:
                while True:
                    rows = await engine.store.read_chunks(key, stream, next_index, READ_BATCH)
                    for chunk in rows:
                        yield chunk
                        next_index = chunk.index + 1
                    if len(rows) < READ_BATCH:
                        break
            if ended:
                return  # read from the store after the end was seen: nothing can follow
            if buffer:
                continue
            try:
                await asyncio.wait_for(changed.wait(), RECHECK)
            except TimeoutError:
                recheck = True  # it may have ended on another host
    finally:
        engine.remove_listener(listener)
        engine.stream_hub.unsubscribe(hub_key, buffer)
