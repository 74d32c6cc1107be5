"""Streams and logs on the wire: the JSON of chunks and log entries matches the OpenAPI
schemas, and the clients' reader splits JSON lines and resumes where it stopped."""

from __future__ import annotations

import base64

import orjson

from durableflow._http import StreamCursor
from durableflow_runtime.openapi import build_openapi
from durableflow_runtime.server._output import chunk_json, log_json
from durableflow_runtime.store._output import ChunkRow, LogRow

T0 = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def _properties(schema: str) -> list[str]:
    return list(build_openapi()["components"]["schemas"][schema]["properties"])


def test_chunk_and_log_json_have_the_fields_of_their_schemas_in_order() -> None:
    """``chunk_json`` and ``log_json`` give the fields of StreamChunk and LogEntry."""
    chunk = chunk_json(ChunkRow(0, "speak", 1, "json", '{"i":0}', T0))
    assert list(chunk) == _properties("StreamChunk")
    entry = log_json(LogRow(1, "info", "hi", '{"n":1}', None, None, T0))
    assert list(entry) == _properties("LogEntry")
    assert orjson.loads(orjson.dumps(entry))["fields"] == {"n": 1}


def test_the_cursor_splits_lines_across_reads_and_resumes_after_the_last_chunk() -> None:
    """A line cut between two reads is parsed once complete; a reconnection asks for the
    chunk after the last one read and drops the partial line of the lost connection."""
    cursor = StreamCursor("/api/workflows/w/instances/i", "tokens", 0)
    assert cursor.path == "/api/workflows/w/instances/i/streams/tokens"
    line0 = orjson.dumps(chunk_json(ChunkRow(0, "s", 1, "json", '"a"', T0))) + b"\n"
    raw = base64.b64encode(b"\x00b").decode()
    line1 = orjson.dumps(chunk_json(ChunkRow(1, "s", 2, "base64", raw, T0))) + b"\n"
    assert cursor.feed(line0[:10]) == []
    [first] = cursor.feed(line0[10:] + line1[:5])
    assert (first.index, first.data, first.attempt) == (0, "a", 1)
    assert cursor.query() == {"from": "1"}
    [second] = cursor.feed(line1)
    assert (second.index, second.data, second.attempt) == (1, b"\x00b", 2)
    assert cursor.next_index == 2
