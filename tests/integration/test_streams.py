"""Streams through a real host on both stores: SSE and NDJSON readers, resumption after a
disconnect, chunks of retried attempts, the Client's reader, and readers on another host."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import durableflow
from tests.helpers import eventually

from .conftest import PG_DSN, HostFactory, HostProcess, _pg, copy_project, require_postgres

STREAMS_PROJECT = Path(__file__).with_name("streams_project")
TALKER = "/api/workflows/talker/instances"


def storage_args(kind: str, schema: str) -> list[str]:
    """The ``serve`` arguments of a host on ``kind`` (a fresh PostgreSQL schema)."""
    if kind == "sqlite":
        return []
    require_postgres(_pg("SELECT 1"))
    separator = "&" if "?" in PG_DSN else "?"
    return ["--storage", f"{PG_DSN}{separator}schema={schema}&lease_seconds=2&poll_interval=0.5"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def streams_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    """One host on the streams project, shared by the module's tests, on each store."""
    project = copy_project(tmp_path_factory.mktemp("streams") / "project", STREAMS_PROJECT)
    schema = f"streams_{os.getpid()}_{time.monotonic_ns()}"
    factory = HostFactory()
    try:
        yield factory.start(project, *storage_args(request.param, schema))
    finally:
        factory.close()
        if request.param == "postgres":
            _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def session(streams_host: HostProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=streams_host.url) as session:
        yield session


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """The events of an SSE answer, each as its fields (``id``, ``event``, ``data``)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


async def create(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> str:
    async with session.post(path, json=body) as response:
        assert response.status == 201, await response.text()
        created: str = (await response.json())["id"]
        return created


async def status_of(session: aiohttp.ClientSession, path: str) -> str:
    async with session.get(path + "/status") as response:
        status: str = (await response.json())["status"]
        return status


async def test_sse_reader_resumes_after_a_disconnect_without_loss_or_duplication(
    session: aiohttp.ClientSession,
) -> None:
    """An SSE reader that disconnects after three chunks and reconnects with
    Last-Event-ID gets every chunk once, the later ones live, then an ``end`` event."""
    id = await create(session, TALKER, {"params": {"first": 5, "then": 5}})
    path = f"{TALKER}/{id}/streams/tokens"
    got: list[dict[str, Any]] = []
    async with session.get(path) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for event in sse_events(response):
            chunk = json.loads(event["data"])
            assert event["id"] == str(chunk["index"])
            got.append(chunk)
            if len(got) == 3:
                break  # the reader goes away mid-stream

    async def waiting() -> bool:
        return await status_of(session, f"{TALKER}/{id}") == "waiting"

    await eventually(waiting, message="the instance waits for go")
    ended: dict[str, str] | None = None
    async with session.get(path, headers={"Last-Event-ID": str(got[-1]["index"])}) as response:
        events = sse_events(response)
        for _ in range(2):  # what was written while the reader was away
            got.append(json.loads((await anext(events))["data"]))
        # the rest is written now, while the reader is connected
        async with session.post(f"{TALKER}/{id}/events/go", json={}) as sent:
            assert sent.status == 202
        async for event in events:
            if event.get("event") == "end":
                ended = event
                break
            got.append(json.loads(event["data"]))
    assert [c["index"] for c in got] == list(range(10))
    assert [c["data"] for c in got] == [{"i": i} for i in range(10)]
    assert {(c["step"], c["attempt"]) for c in got} == {("speak", 1), ("more", 1)}
    assert ended is not None and json.loads(ended["data"]) == {"status": "complete"}


async def test_ndjson_reader_from_an_index_and_bytes_chunks(
    session: aiohttp.ClientSession,
) -> None:
    """``Accept: application/x-ndjson`` gives JSON lines; ``?from=N`` starts at index N;
    str chunks come back as JSON strings and bytes as base64; the answer ends with the
    instance."""
    id = await create(session, TALKER, {"params": {"first": 3, "then": 2}})
    async with session.post(f"{TALKER}/{id}/events/go", json={}) as sent:
        assert sent.status == 202
    headers = {"Accept": "application/x-ndjson"}
    async with session.get(f"{TALKER}/{id}/streams/tokens?from=3", headers=headers) as response:
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in (await response.read()).splitlines()]
    assert [(c["index"], c["data"]) for c in lines] == [(3, {"i": 3}), (4, {"i": 4})]
    past_every_chunk = f"{TALKER}/{id}/streams/tokens?from={10**18 - 1}"
    async with session.get(past_every_chunk, headers=headers) as response:
        assert response.status == 200 and await response.read() == b""
    async with session.get(f"{TALKER}/{id}/streams/default", headers=headers) as response:
        text, raw = [json.loads(line) for line in (await response.read()).splitlines()]
    assert (text["data"], text["encoding"]) == ("plain text", "json")
    assert raw["encoding"] == "base64" and base64.b64decode(raw["data"]) == b"\x00\xffbytes"
    async with session.get(f"{TALKER}/{id}/streams") as response:
        listed = (await response.json())["streams"]
    assert [(s["name"], s["chunks"]) for s in listed] == [("default", 2), ("tokens", 5)]


async def test_bad_reader_requests_are_400_or_404_json(session: aiohttp.ClientSession) -> None:
    """A bad start, a bad stream name and an unknown instance are JSON errors."""
    id = await create(session, TALKER, {"params": {"first": 1, "then": 0}})
    for path, headers in [
        (f"{TALKER}/{id}/streams/tokens?from=-1", {}),
        (f"{TALKER}/{id}/streams/tokens?from=x", {}),
        (f"{TALKER}/{id}/streams/tokens", {"Last-Event-ID": "abc"}),
        (f"{TALKER}/{id}/streams/bad%20name", {}),
    ]:
        async with session.get(path, headers=headers) as response:
            assert response.status == 400, path
            assert "error" in await response.json()
    async with session.get(f"{TALKER}/nope/streams/tokens") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_client_reads_streams_and_chunks_of_retried_attempts(
    streams_host: HostProcess,
) -> None:
    """``Client`` reads a stream with ``async for`` (live, then to the end); a retried
    attempt's chunk stays, marked with its attempt; ``logs()`` has every attempt's entry."""
    async with durableflow.Client(streams_host.url) as client:
        retrier = client.workflow("retrier")
        instance = await retrier.create()
        chunks = [c async for c in instance.stream()]
        assert [(c.index, c.data, c.attempt, c.step) for c in chunks] == [
            (0, "attempt 1", 1, "flaky"),
            (1, "attempt 2", 2, "flaky"),
        ]
        assert await instance.result(timeout=30) == 2
        logs = await instance.logs()
        assert [(e.message, e.level, e.step, e.attempt) for e in logs] == [
            ("trying", "error", "flaky", 1),
            ("trying", "info", "flaky", 2),
        ]
        talker = client.workflow("talker")
        other = await talker.create(params={"first": 2, "then": 1})
        reader = other.stream("tokens", start=1)
        first = await anext(reader)
        assert (first.index, first.data) == (1, {"i": 1})
        await other.send_event(type="go")
        assert [(c.index, c.data) async for c in reader] == [(2, {"i": 2})]


@pytest.fixture
def pg_args() -> Iterator[list[str]]:
    """``serve`` arguments for hosts sharing a fresh PostgreSQL schema."""
    schema = f"streams_x_{os.getpid()}_{time.monotonic_ns()}"
    yield storage_args("postgres", schema)
    _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_readers_on_another_host_get_chunks_live(
    tmp_path: Path, hosts: HostFactory, pg_args: list[str]
) -> None:
    """Two hosts on one PostgreSQL: a reader on each gets every chunk once, whichever
    host runs the instance (the other hears of each chunk through NOTIFY)."""
    a = hosts.start(copy_project(tmp_path / "a", STREAMS_PROJECT), *pg_args)
    b = hosts.start(copy_project(tmp_path / "b", STREAMS_PROJECT), *pg_args)
    async with durableflow.Client(a.url) as on_a, durableflow.Client(b.url) as on_b:
        instance = await on_a.workflow("talker").create(params={"first": 2, "then": 3})
        readers = [
            (await client.workflow("talker").get(instance.id)).stream("tokens")
            for client in (on_a, on_b)
        ]
        for reader in readers:
            assert (await anext(reader)).index == 0
        await instance.send_event(type="go")
        for reader in readers:
            assert [c.index async for c in reader] == [1, 2, 3, 4]


class KitTalker(durableflow.WorkflowEntrypoint[Any, Any]):
    """Writes two chunks, waits for "go", writes one more."""

    async def run(
        self, event: durableflow.WorkflowEvent[Any], step: durableflow.WorkflowStep
    ) -> Any:
        step.log("begin")

        async def speak(ctx: durableflow.StepContext) -> None:
            await ctx.stream("tokens").write("a")
            await ctx.stream("tokens").write(b"b")
            ctx.log("spoke", n=2)

        await step.do("speak", speak)
        await step.wait_for_event("go", "go")

        async def last(ctx: durableflow.StepContext) -> None:
            await ctx.stream("tokens").write({"c": 3})

        await step.do("last", last)
        step.log("end")


async def test_in_process_binding_and_testing_kit_read_streams_and_logs(tmp_path: Path) -> None:
    """The in-process binding follows a stream live; the kit's probe reads what is stored
    and the log, and a restart of the engine replays without logging again."""
    from durableflow.testing import WorkflowTestEnvironment

    database = tmp_path / "kit.db"
    async with WorkflowTestEnvironment({"TALK": KitTalker}, database=database) as env:
        probe = env.introspect("k1")
        instance = await env.workflow(KitTalker).create(id="k1")
        await probe.wait_for_status("waiting")
        assert [c.data for c in await probe.get_stream("tokens")] == ["a", b"b"]
        reader = instance.stream("tokens")
        assert (await anext(reader)).data == "a"
    async with WorkflowTestEnvironment({"TALK": KitTalker}, database=database) as env:
        probe = env.introspect("k1")
        instance = await env.workflow(KitTalker).get("k1")
        reader = instance.stream("tokens", start=1)
        assert (await anext(reader)).data == b"b"
        await instance.send_event(type="go")
        assert [c.data async for c in reader] == [{"c": 3}]
        await probe.wait_for_status("complete")
        entries = await probe.get_logs()
        assert [(e.message, e.step) for e in entries] == [
            ("begin", None),
            ("spoke", "speak"),
            ("end", None),
        ]
        assert entries == await instance.logs()


def test_sync_client_iterates_a_stream_and_reads_logs(streams_host: HostProcess) -> None:
    """``SyncClient``'s instance reads a stream with a plain ``for`` loop, from a start
    index, to the end of the instance, and reads the log."""
    with durableflow.SyncClient(streams_host.url) as client:
        instance = client.workflow("retrier").create()
        assert [(c.index, c.data) for c in instance.stream("default", start=1)] == [
            (1, "attempt 2")
        ]
        assert [e.attempt for e in instance.logs()] == [1, 2]


class LateWriter(durableflow.WorkflowEntrypoint[Any, Any]):
    """Keeps its step's context and writes after the step has ended."""

    async def run(
        self, event: durableflow.WorkflowEvent[Any], step: durableflow.WorkflowStep
    ) -> Any:
        kept: list[durableflow.StepContext] = []

        async def keep(ctx: durableflow.StepContext) -> int:
            kept.append(ctx)
            return 1

        await step.do("keep", keep)
        refused = []
        try:
            await kept[0].stream().write("late")
        except durableflow.ValidationError as exc:
            refused.append(exc.message)
        try:
            kept[0].log("late")
        except durableflow.ValidationError as exc:
            refused.append(exc.message)
        return refused


async def test_a_step_context_writes_nothing_after_its_attempt(tmp_path: Path) -> None:
    """A writer or log kept beyond the step's attempt refuses with a clear error."""
    from durableflow.testing import WorkflowTestEnvironment

    async with WorkflowTestEnvironment({"LATE": LateWriter}) as env:
        instance = await env.workflow(LateWriter).create(id="l-1")
        refused = await instance.result()
        assert len(refused) == 2 and all("has ended" in m for m in refused), refused
        assert [c async for c in instance.stream()] == []


async def test_deleting_an_instance_ends_its_readers(streams_host: HostProcess) -> None:
    """A reader of an instance that is deleted meanwhile gets the end of the stream (SSE:
    an ``end`` event with a null status) and the Client's reader a NotFoundError."""
    async with aiohttp.ClientSession(base_url=streams_host.url) as session:
        id = await create(session, TALKER, {"params": {"first": 1, "then": 0}})
        async with session.get(f"{TALKER}/{id}/streams/tokens") as response:
            events = sse_events(response)
            assert json.loads((await anext(events))["data"])["index"] == 0
            async with durableflow.Client(streams_host.url) as client:
                instance = await client.workflow("talker").get(id)
                reader = instance.stream("tokens", start=1)
                pending = asyncio.ensure_future(anext(reader))
                await instance.delete()
                with pytest.raises(durableflow.NotFoundError):
                    await pending
            end = await anext(events)
            assert end["event"] == "end" and json.loads(end["data"]) == {"status": None}
