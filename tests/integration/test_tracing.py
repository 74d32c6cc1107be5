"""OpenTelemetry spans: per activation and step attempt in-process, and from a real host."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.metrics import NO_OBSERVER
from durableflow_runtime.store.sqlite import SqliteStore
from durableflow_runtime.tracing import Tracing

from .conftest import HostFactory, copy_project


class Traced(WorkflowEntrypoint[Any, Any]):
    """A step that fails once, a wait for an event (a second activation), a step."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def shaky(ctx: StepContext) -> int:
            if ctx.attempt == 1:
                raise RuntimeError("first attempt fails")
            return ctx.attempt

        first = await step.do("shaky", {"retries": {"limit": 2, "delay": 0}}, shaky)
        await step.wait_for_event("go", "go", timeout="1 hour")

        async def done() -> str:
            return "done"

        return [first, await step.do("done", done)]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_spans_per_activation_and_attempt_linked_across_replays(tmp_path: Path) -> None:
    """Each activation and each step attempt is a span with its attributes; a failed
    attempt records its error; the second activation links to the first."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = Engine(SqliteStore(tmp_path / "s.db"), [WorkflowSpec("traced", Traced)])
    assert engine.observer is NO_OBSERVER  # off unless the host installs one
    engine.observer = Tracing(engine, provider)
    async with engine:
        instance = await engine.bindings["traced"].create(id="t1")
        await engine.wait(
            "traced", "t1", lambda: _status_is(engine, "waiting"), timeout=10, steps=True
        )
        await instance.send_event(type="go")
        assert await instance.result(timeout=10) == [2, "done"]
    spans = exporter.get_finished_spans()
    activations = [s for s in spans if s.name == "activation traced"]
    steps = [s for s in spans if s.name.startswith("step ")]
    assert len(activations) == 2
    first, second = sorted(activations, key=lambda s: s.start_time or 0)
    assert _attrs(first)["durableflow.instance_id"] == "t1"
    assert _attrs(first)["durableflow.outcome"] == "waiting"
    assert _attrs(second)["durableflow.outcome"] == "complete"
    assert first.context is not None and second.context is not None
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    attempts = [
        (
            _attrs(s)["durableflow.step.name"],
            _attrs(s)["durableflow.step.count"],
            _attrs(s)["durableflow.step.attempt"],
            _attrs(s)["durableflow.outcome"],
        )
        for s in sorted(steps, key=lambda s: s.start_time or 0)
    ]
    assert attempts == [
        ("shaky", 1, 1, "retry"),
        ("shaky", 1, 2, "complete"),
        ("done", 1, 1, "complete"),
    ]
    failed = next(s for s in steps if _attrs(s)["durableflow.outcome"] == "retry")
    assert not failed.status.is_ok
    [exception] = failed.events
    assert exception.name == "exception"
    assert dict(exception.attributes or {})["exception.message"] == "first attempt fails"
    # step spans are children of their activation's span
    for span in steps:
        assert span.parent is not None
        assert span.parent.span_id in {first.context.span_id, second.context.span_id}
        assert _attrs(span)["durableflow.workflow"] == "traced"


async def _status_is(engine: Engine, status: str) -> bool:
    return (await engine.status("traced", "t1")).status == status


async def test_create_with_traceparent_parents_the_first_activation(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """A host with tracing = "otel" makes the first activation of an instance created with a
    W3C traceparent header a child of that trace (spans read from the console exporter)."""
    project = copy_project(tmp_path / "project")
    config = project / "durableflow.toml"
    config.write_text(
        config.read_text().replace(
            'app = "app:routes"', 'app = "app:routes"\n\n[server]\ntracing = "otel"', 1
        )
    )
    host = hosts.start(
        project, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "df-test"}
    )
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent_id = "b7ad6b7169203331"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    async with aiohttp.ClientSession(base_url=host.url) as session:
        async with session.post(
            "/api/workflows/echo/instances",
            json={"id": "traced", "params": {"name": "t"}},
            headers=headers,
        ) as response:
            assert response.status == 201
        async with session.get(
            "/api/workflows/echo/instances/traced/result?timeout=10"
        ) as response:
            assert response.status == 200, await response.text()
    assert host.stop() == 0
    spans = _console_spans(host.output())
    [activation] = [s for s in spans if s["name"] == "activation echo"]
    assert activation["context"]["trace_id"] == "0x" + trace_id
    assert activation["parent_id"] == "0x" + parent_id
    assert activation["attributes"]["durableflow.instance_id"] == "traced"
    assert activation["resource"]["attributes"]["service.name"] == "df-test"
    [greet] = [s for s in spans if s["name"] == "step greet"]
    assert greet["context"]["trace_id"] == "0x" + trace_id
    assert greet["parent_id"] == activation["context"]["span_id"]


def _console_spans(output: str) -> list[dict[str, Any]]:
    """The JSON objects ConsoleSpanExporter printed, among the host's other lines."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    position = 0
    while (start := output.find("{\n", position)) != -1:
        try:
            value, position = decoder.raw_decode(output, start)
        except ValueError:
            position = start + 1
            continue
        if isinstance(value, dict) and "context" in value and "name" in value:
            spans.append(value)
    return spans


class Plain(WorkflowEntrypoint[Any, Any]):
    """One step with the workflow's default config (shared by every instance's step)."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def one() -> int:
            await asyncio.sleep(0.05)  # the other instances' steps start meanwhile
            return 1

        return await step.do("one", one)


async def test_each_step_stores_its_own_activations_traceparent(tmp_path: Path) -> None:
    """A step's stored config carries the traceparent of the activation that ran it, not
    of another instance's whose step had the same config."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = Engine(SqliteStore(tmp_path / "s.db"), [WorkflowSpec("plain", Plain)])
    engine.observer = Tracing(engine, provider)
    async with engine:
        ids = [f"p{n}" for n in range(4)]
        await engine.create("plain", [(id, None) for id in ids])
        for id in ids:
            assert await engine.result("plain", id, timeout=10) == 1
        stored = {id: (await engine.describe("plain", id)).steps[0].config or {} for id in ids}
    activations = {
        _attrs(s)["durableflow.instance_id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "activation plain"
    }
    for id in ids:
        context = activations[id].context
        assert context is not None
        assert stored[id]["trace"].split("-")[2] == format(context.span_id, "016x")
