"""The handlers of an instance's streams and log.

``GET .../streams/{stream}`` answers with Server-Sent Events (``aiohttp-sse``), or with
JSON lines when the client sends ``Accept: application/x-ndjson``. Each chunk is one
event whose ``id`` is the chunk's index, so a reconnecting ``EventSource`` resumes after
the last chunk it got (``Last-Event-ID``); ``?from=N`` starts at index N. The answer ends
when the instance has ended and every chunk was sent (an SSE reader then gets an ``end``
event, so that a browser does not reconnect; its status is ``null`` when the instance was
deleted meanwhile), or when the host shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from durableflow import NotFoundError
from durableflow._output import check_stream_name

from ..store._output import ChunkRow, LogRow, StreamInfo
from ._base import SETTINGS_KEY, ApiError, Handler, _json
from ._models import iso
from ._requests import _engine, _query_int, _workflow

__all__ = ["OUTPUT_ROUTES", "chunk_json", "log_json"]

NDJSON = "application/x-ndjson"
#: Largest page of ``GET .../logs``.
MAX_LOG_PAGE = 1000
#: Seconds between SSE comments that keep an idle connection (and its proxies) open.
SSE_PING = 15.0


def chunk_json(row: ChunkRow) -> dict[str, Any]:
    """A chunk as SSE ``data`` and NDJSON lines carry it (schema ``StreamChunk``)."""
    data: Any = orjson.Fragment(row.data) if row.encoding == "json" else row.data
    return {
        "index": row.index,
        "data": data,
        "encoding": row.encoding,
        "step": row.step,
        "attempt": row.attempt,
        "time": iso(row.created_at),
    }


def log_json(row: LogRow) -> dict[str, Any]:
    """A log entry as ``GET .../logs`` lists it (schema ``LogEntry``)."""
    return {
        "seq": row.seq,
        "time": iso(row.created_at),
        "level": row.level,
        "message": row.message,
        "fields": orjson.Fragment(row.fields),
        "step": row.step,
        "attempt": row.attempt,
    }


def _stream_json(info: StreamInfo) -> dict[str, Any]:
    return {"name": info.name, "chunks": info.chunks, "bytes": info.bytes}


def _start(request: web.Request) -> int:
    """Where a reader starts: after ``Last-Event-ID`` (a reconnecting ``EventSource``),
    else at ``?from=N``, else at 0."""
    start = _query_int(request, "from", 0)  # checked even when Last-Event-ID wins
    if start < 0:
        raise ApiError(400, "invalid_request", f"query parameter 'from' must be >= 0, not {start}")
    last = request.headers.get("Last-Event-ID")
    if last is not None and last.strip():
        if not last.strip().isdigit() or len(last.strip()) > 18:
            raise ApiError(
                400,
                "invalid_request",
                f"header Last-Event-ID must be a chunk index (an integer >= 0), not {last!r}",
            )
        return int(last.strip()) + 1
    return start


async def _until(
    chunks: AsyncGenerator[ChunkRow, None], stopping: asyncio.Event
) -> AsyncIterator[ChunkRow]:
    """``chunks`` until they end or the host starts to shut down."""
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        while not stopping.is_set():
            following = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({following, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                yield following.result()
            except (StopAsyncIteration, NotFoundError):
                return  # the end, or the instance was deleted meanwhile
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
        with contextlib.suppress(RuntimeError):
            await chunks.aclose()


async def list_streams(request: web.Request) -> web.Response:
    """``GET .../instances/{id}/streams``: the instance's streams with their sizes."""
    name = _workflow(request)
    streams = await _engine(request).streams(name, request.match_info["id"])
    return _json({"streams": [_stream_json(s) for s in streams]})


async def read_stream(request: web.Request) -> web.StreamResponse:
    """``GET .../instances/{id}/streams/{stream}``: SSE, or NDJSON on request."""
    name = _workflow(request)
    id = request.match_info["id"]
    stream = check_stream_name(request.match_info["stream"])
    start = _start(request)
    engine = _engine(request)
    await engine.status(name, id)  # 404 as JSON, before the answer starts
    chunks = _until(
        engine.read_stream(name, id, stream, start), request.config_dict[SETTINGS_KEY].stopping
    )
    if NDJSON in request.headers.get("Accept", ""):
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
        await response.prepare(request)
        async for row in chunks:
            await response.write(orjson.dumps(chunk_json(row)) + b"\n")
        await response.write_eof()
        return response
    sse = EventSourceResponse(ping_interval=SSE_PING)
    await sse.prepare(request)
    try:
        async for row in chunks:
            await sse.send(orjson.dumps(chunk_json(row)).decode(), id=str(row.index))
        try:
            status: str | None = (await engine.status(name, id)).status
        except NotFoundError:
            status = None  # deleted while it was read
        await sse.send(orjson.dumps({"status": status}).decode(), event="end")
    finally:
        sse.stop_streaming()
    await sse.write_eof()
    return sse


async def read_logs(request: web.Request) -> web.Response:
    """``GET .../instances/{id}/logs?after=SEQ&limit=N``: one page of the log, oldest first.

    ``next_after`` is the ``after`` of the next page, or ``null`` when this page reached
    the end of what is logged so far (a follower asks again with the last ``seq``).
    """
    name = _workflow(request)
    after = _query_int(request, "after", 0)
    limit = _query_int(request, "limit", 100)
    if after < 0:
        raise ApiError(400, "invalid_request", f"query parameter 'after' must be >= 0, not {after}")
    if not 1 <= limit <= MAX_LOG_PAGE:
        raise ApiError(
            400,
            "invalid_request",
            f"query parameter 'limit' must be from 1 to {MAX_LOG_PAGE}, not {limit}",
        )
    rows = await _engine(request).logs(name, request.match_info["id"], after=after, limit=limit)
    return _json(
        {
            "logs": [log_json(r) for r in rows],
            "next_after": rows[-1].seq if len(rows) == limit else None,
        }
    )


OUTPUT_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/workflows/{name}/instances/{id}/streams", list_streams),
    ("GET", "/api/workflows/{name}/instances/{id}/streams/{stream}", read_stream),
    ("GET", "/api/workflows/{name}/instances/{id}/logs", read_logs),
]
"""The routes of this module, added to ``API_ROUTES``."""
