"""Instance logs through a real host on both stores: once per execution across replays
and a kill -9, paged over HTTP, followed by the CLI, forwarded to the Python logger."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import durableflow
from tests.helpers import eventually

from .conftest import DURABLEFLOW, HostFactory, _pg, copy_project, run_cli
from .test_streams import STREAMS_PROJECT, storage_args

EXPECTED = [
    ("started", "info", None, None, {"first": 2}),
    ("spoke", "info", "speak", 1, {"chunks": 2}),
    ("waiting for go", "info", None, None, {}),
    ("got go", "warning", None, None, {}),
    ("done", "info", None, None, {}),
]


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """``serve`` arguments of a host on each store (a fresh PostgreSQL schema)."""
    schema = f"logs_{os.getpid()}_{time.monotonic_ns()}"
    yield storage_args(request.param, schema)
    if request.param == "postgres":
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def shape(entries: list[durableflow.LogEntry]) -> list[tuple[Any, ...]]:
    return [(e.message, e.level, e.step, e.attempt, dict(e.fields)) for e in entries]


async def waiting(instance: durableflow.WorkflowInstance) -> bool:
    return (await instance.status()).status == "waiting"


@pytest.mark.slow
async def test_logs_are_recorded_once_across_replays_and_a_kill_9(
    tmp_path: Path, hosts: HostFactory, store_args: list[str]
) -> None:
    """run() replays after an event and after a kill -9 of its host; each step.log entry
    is still stored once, in order, and the stream holds each chunk once."""
    project = copy_project(tmp_path / "p", STREAMS_PROJECT)
    first = hosts.start(project, *store_args)
    async with durableflow.Client(first.url) as client:
        instance = await client.workflow("talker").create(params={"first": 2, "then": 1})
        await eventually(lambda: waiting(instance), message="the instance waits for go")
    first.stop(signal.SIGKILL)
    second = hosts.start(project, *store_args)
    async with durableflow.Client(second.url) as client:
        instance = await client.workflow("talker").get(instance.id)
        await instance.send_event(type="go")
        assert await instance.result(timeout=60) == "done"
        assert shape(await instance.logs()) == EXPECTED
        assert [c.data async for c in instance.stream("tokens")] == [{"i": i} for i in range(3)]
    forwarded = [line for line in second.output().splitlines() if "durableflow.workflow" in line]
    assert any(f"talker/{instance.id}: got go" in line for line in forwarded), forwarded
    assert not any("started" in line for line in forwarded), "a replay forwarded an entry again"


async def test_logs_page_and_the_cli_follows_them(
    tmp_path: Path, hosts: HostFactory, store_args: list[str]
) -> None:
    """``GET .../logs`` pages by ``after``; ``durableflow instances logs --follow`` prints
    entries as they come and exits when the instance ends."""
    project = copy_project(tmp_path / "p", STREAMS_PROJECT)
    host = hosts.start(project, *store_args)
    async with durableflow.Client(host.url) as client:
        instance = await client.workflow("talker").create(params={"first": 2, "then": 1})
        await eventually(lambda: waiting(instance), message="the instance waits for go")
        follower = await asyncio.create_subprocess_exec(
            *[DURABLEFLOW, "instances", "logs", "talker", instance.id, "--follow"],
            *["--url", host.url],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await instance.send_event(type="go")
            raw_out, raw_err = await asyncio.wait_for(follower.communicate(), 60)
        finally:
            if follower.returncode is None:
                follower.kill()
        assert follower.returncode == 0, raw_err.decode()
        out = raw_out.decode()
        lines = out.splitlines()
        assert [line.split("] ", 1)[1] for line in lines] == [
            "started first=2",
            "spoke chunks=2",
            "waiting for go",
            "got go",
            "done",
        ]
        assert "WARNING [run()] got go" in lines[3] and "[speak #1]" in lines[1]
        path = f"/api/workflows/talker/instances/{instance.id}/logs"
        page = host.get_json(path + "?limit=2")
        assert [e["message"] for e in page["logs"]] == ["started", "spoke"]
        rest = host.get_json(f"{path}?limit=1000&after={page['next_after']}")
        assert [e["message"] for e in rest["logs"]] == ["waiting for go", "got go", "done"]
        assert rest["next_after"] is None
    listed = run_cli("instances", "logs", "talker", instance.id, "--json", "--url", host.url)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 5


class Twice(durableflow.WorkflowEntrypoint[Any, Any]):
    """Logs from run() around a sleep (which makes run() replay)."""

    async def run(
        self, event: durableflow.WorkflowEvent[Any], step: durableflow.WorkflowStep
    ) -> Any:
        step.log("before")
        step.log("before")  # the same message twice is two entries
        await step.sleep("nap", "1 hour")
        step.log("after", level="debug")
        return "ok"


async def test_a_restart_logs_again_after_the_earlier_run() -> None:
    """A replay logs nothing again; a restart is a new execution whose entries follow."""
    from durableflow.testing import WorkflowTestEnvironment

    async with WorkflowTestEnvironment({"TWICE": Twice}) as env:
        probe = env.introspect("w-1")
        instance = await env.workflow(Twice).create(id="w-1")
        assert await instance.result() == "ok"
        assert [e.message for e in await probe.get_logs()] == ["before", "before", "after"]
        await instance.restart()
        await probe.wait_for_status("complete")
        entries = await probe.get_logs()
        assert [e.message for e in entries] == ["before", "before", "after"] * 2
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
