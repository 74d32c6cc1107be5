"""Typing cases for streams and instance logs: ctx.stream, ctx.log, step.log, and the
readers on bindings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, assert_type

from durableflow import (
    LogEntry,
    LogLevel,
    StepContext,
    StreamChunk,
    StreamWriter,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInstance,
    WorkflowStep,
)


class Talker(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        step.log("started", level="debug", order="o-1", attempt_budget=3)

        async def speak(ctx: StepContext) -> int:
            writer = ctx.stream("tokens")
            assert_type(writer, StreamWriter)
            assert_type(ctx.stream(), StreamWriter)
            await writer.write({"token": "hi"})
            await writer.write("text")
            await writer.write(b"bytes")
            ctx.log("spoke", level="warning", chunks=3)
            return 3

        return await step.do("speak", speak)


async def read(instance: WorkflowInstance) -> None:
    reader = instance.stream("tokens", start=0)
    assert_type(reader, AsyncIterator[StreamChunk])
    async for chunk in instance.stream():
        assert_type(chunk.index, int)
        assert_type(chunk.data, Any)
        assert_type(chunk.attempt, int)
        assert_type(chunk.time, datetime)
    entries = await instance.logs()
    assert_type(entries, list[LogEntry])
    for entry in entries:
        assert_type(entry.level, LogLevel)
        assert_type(entry.step, str | None)
        assert_type(entry.attempt, int | None)
        assert_type(entry.fields, Mapping[str, Any])


async def must_fail(step: WorkflowStep, ctx: StepContext, instance: WorkflowInstance) -> None:
    # run() cannot write to a stream: only a step's context has one.
    step.stream("tokens")  # type: ignore[attr-defined]
    # An unknown level.
    step.log("x", level="loud")  # type: ignore[arg-type]
    ctx.log("x", level="fatal")  # type: ignore[arg-type]
    # The message is positional and a str.
    ctx.log(message="x")  # type: ignore[call-arg]
    step.log(42)  # type: ignore[arg-type]
    # write is a coroutine: it must be awaited.
    ctx.stream().write("x")  # type: ignore[unused-coroutine]
    # A stream is named by a str, read from an int index.
    ctx.stream(1)  # type: ignore[arg-type]
    instance.stream("tokens", start="0")  # type: ignore[arg-type]
    # The readers take keywords as declared, nothing else.
    instance.stream(name="tokens", offset=1)  # type: ignore[call-arg]
