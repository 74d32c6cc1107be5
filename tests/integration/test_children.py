"""Child workflows through real host processes, on SQLite and on PostgreSQL (two hosts):
fan-out and fan-in, a failing child, a parent killed with kill -9 while its children run,
terminate with and without cascade, start_workflow and a restart of the parent."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from durableflow import Client
from tests.helpers import eventually

from .conftest import (
    PG_DSN,
    Api,
    HostFactory,
    HostProcess,
    _pg,
    copy_project,
    require_postgres,
    run_cli,
)
from .test_dashboard import needs_chromium
from .test_dashboard import page as page

PROJECT = Path(__file__).with_name("children_project")

pytestmark = pytest.mark.slow


class Cluster:
    """The hosts of one test on one store: a fresh SQLite file or PostgreSQL schema."""

    def __init__(self, factory: HostFactory, project: Path, store: str) -> None:
        self.factory = factory
        self.project = project
        self.store = store
        self.args: list[str] = []
        if store == "postgres":
            schema = f"children_{os.getpid()}_{time.monotonic_ns()}"
            self.schema = schema
            separator = "&" if "?" in PG_DSN else "?"
            # a short lease: a killed host's instances pass to another host quickly
            self.args = ["--storage", f"{PG_DSN}{separator}schema={schema}&lease_seconds=2"]

    def start(self) -> HostProcess:
        return self.factory.start(self.project, *self.args)

    def hosts(self) -> list[HostProcess]:
        """Two hosts sharing the store on PostgreSQL (parent and children are claimed by
        either), one on SQLite."""
        return [self.start() for _ in range(2 if self.store == "postgres" else 1)]


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(
    request: pytest.FixtureRequest, hosts: HostFactory, tmp_path: Path
) -> Iterator[Cluster]:
    if request.param == "postgres":
        require_postgres(_pg("SELECT 1"))
    made = Cluster(hosts, copy_project(tmp_path / "project", PROJECT), request.param)
    try:
        yield made
    finally:
        hosts.close()
        if request.param == "postgres":
            _pg(f'DROP SCHEMA IF EXISTS "{made.schema}" CASCADE')


async def _api(host: HostProcess) -> tuple[aiohttp.ClientSession, Api]:
    session = aiohttp.ClientSession()
    return session, Api(session, host.url)


async def _children(api: Api, parent: str) -> list[dict[str, Any]]:
    detail = await api.ok("GET", f"/api/workflows/fanout/instances/{parent}")
    children: list[dict[str, Any]] = detail["children"]
    return children


async def test_a_parent_fans_out_to_a_hundred_children_and_gathers_their_outputs(
    cluster: Cluster,
) -> None:
    """asyncio.gather over 100 run_workflow calls returns every child's output; parent and
    children name each other in their details."""
    host, *_ = cluster.hosts()
    session, api = await _api(host)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/fanout/instances",
            {"id": "p", "params": {"n": 100, "ms": 50}},
            201,
        )
        done = await api.wait_status("fanout", "p", "complete", timeout=120)
        assert done["output"] == 2 * sum(range(100))
        children = done["children"]
        assert len(children) == 100
        assert {c["workflow"] for c in children} == {"child"}
        assert {c["status"] for c in children} == {"complete"}
        steps = {s["name"]: s for s in done["steps"]}
        assert steps["child-7"]["type"] == "run_workflow"
        assert steps["child-7"]["output"] == 14
        child_id = steps["child-7"]["child"]["id"]
        child = await api.ok("GET", f"/api/workflows/child/instances/{child_id}")
        assert child["parent"] == {"workflow": "fanout", "id": "p", "status": "complete"}
        assert child["output"] == 14 and child["children"] == []
        listed = await api.ok("GET", "/api/workflows/child/instances?limit=1000")
        assert len(listed["instances"]) == 100, "one child per run_workflow call"


async def test_a_failing_child_raises_child_workflow_error_in_the_parent(cluster: Cluster) -> None:
    """A child that errors raises ChildWorkflowError carrying its error into the parent;
    a child that runs past the step's timeout raises it with status running."""
    host, *_ = cluster.hosts()
    session, api = await _api(host)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/fanout/instances",
            {"id": "f", "params": {"n": 5, "fail": 3}},
            201,
        )
        await api.ok(
            "POST",
            "/api/workflows/fanout/instances",
            {"id": "slow", "params": {"n": 2, "ms": 600_000, "timeout": 300}},
            201,
        )
        failed = await api.wait_status("fanout", "f", "complete", timeout=60)
        step = next(s for s in failed["steps"] if s["name"] == "child-3")
        assert failed["output"] == {
            "failed": step["child"]["id"],
            "status": "errored",
            "error": "NonRetryableError",
        }
        assert step["status"] == "failed"
        assert step["error"] == {"name": "NonRetryableError", "message": "child 3 fails"}
        timed_out = await api.wait_status("fanout", "slow", "complete", timeout=60)
        assert timed_out["output"]["status"] == "running"
        assert timed_out["output"]["error"] == "TimeoutError"
        assert {c["status"] for c in timed_out["children"]} == {"waiting"}, "children go on"


async def test_a_parent_killed_while_its_children_run_resumes_without_duplicate_children(
    cluster: Cluster,
) -> None:
    """kill -9 of the host running a parent while its children run: another host (or the
    restarted one) resumes the parent, which gathers every output; each child exists once."""
    first = cluster.start()
    session, api = await _api(first)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/fanout/instances",
            {"id": "k", "params": {"n": 40, "ms": 1500}},
            201,
        )

        async def some_started() -> bool:
            return len(await _children(api, "k")) >= 10

        await eventually(some_started, timeout=60, message="children to start")
    first.stop(signal.SIGKILL)
    second = cluster.start()
    session, api = await _api(second)
    async with session:
        done = await api.wait_status("fanout", "k", "complete", timeout=120)
        assert done["output"] == 2 * sum(range(40))
        listed = await api.ok("GET", "/api/workflows/child/instances?limit=1000")
        ids = [i["id"] for i in listed["instances"]]
        assert len(ids) == len(set(ids)) == 40, "no child was created twice"
        assert {c["id"] for c in done["children"]} == set(ids)


async def test_terminate_leaves_children_running_unless_cascade(cluster: Cluster) -> None:
    """terminate() leaves the children running; terminate(cascade=True) (Client, also with
    rollback=True) and ``instances terminate --cascade`` (CLI) terminate them with the
    parent."""
    host, *_ = cluster.hosts()
    session, api = await _api(host)
    async with session, Client(host.url) as client:
        for id in ("plain", "cascaded", "by-cli", "rolled"):
            await api.ok(
                "POST",
                "/api/workflows/fanout/instances",
                {"id": id, "params": {"n": 3, "ms": 600_000}},
                201,
            )

        async def all_waiting(id: str) -> bool:
            children = await _children(api, id)
            return len(children) == 3 and {c["status"] for c in children} == {"waiting"}

        for id in ("plain", "cascaded", "by-cli", "rolled"):
            await eventually(functools.partial(all_waiting, id), timeout=60, message=id)
        fanout = client.workflow("fanout")
        await (await fanout.get("plain")).terminate()
        await (await fanout.get("cascaded")).terminate(cascade=True)
        await (await fanout.get("rolled")).terminate(rollback=True, cascade=True)
        cli = run_cli("instances", "terminate", "fanout", "by-cli", "--cascade", "--url", host.url)
        assert cli.returncode == 0, cli.stderr
        assert "by-cli: terminated" in cli.stdout
        plain = await api.wait_status("fanout", "plain", "terminated")
        assert {c["status"] for c in plain["children"]} == {"waiting"}
        for id in ("cascaded", "by-cli", "rolled"):
            detail = await api.wait_status("fanout", id, "terminated")
            assert {c["status"] for c in detail["children"]} == {"terminated"}
        status, answer = await api.call(
            "POST", "/api/workflows/fanout/instances/plain/terminate", {"cascade": "yes"}
        )
        assert status == 400 and "'cascade' must be true or false" in answer["error"]["message"]


async def test_start_workflow_returns_ids_and_a_restart_does_not_rerun_finished_children(
    cluster: Cluster,
) -> None:
    """start_workflow returns each child's id without waiting; a restart of the parent
    gets the same ids and outputs back and runs no finished child again."""
    host, *_ = cluster.hosts()
    session, api = await _api(host)
    async with session:
        await api.ok(
            "POST", "/api/workflows/starter/instances", {"id": "s", "params": {"n": 3}}, 201
        )
        await api.ok(
            "POST", "/api/workflows/fanout/instances", {"id": "r", "params": {"n": 3}}, 201
        )
        detail = await api.wait_status("starter", "s", "waiting", timeout=60)

        async def children_done() -> list[dict[str, Any]] | None:
            found = await api.ok("GET", "/api/workflows/starter/instances/s")
            children: list[dict[str, Any]] = found["children"]
            return (
                children
                if len(children) == 3 and {c["status"] for c in children} == {"complete"}
                else None
            )

        children = await eventually(children_done, timeout=60, message="the started children")
        ids = [c["id"] for c in children]
        await api.ok("POST", "/api/workflows/starter/instances/s/events/done", None, 202)
        assert (await api.wait_status("starter", "s", "complete"))["output"] == ids
        ran = await api.wait_status("fanout", "r", "complete")
        before = {
            c["id"]: (await api.ok("GET", f"/api/workflows/child/instances/{c['id']}"))["ended_at"]
            for c in [*ran["children"], *detail["children"], *children]
        }
        await api.ok("POST", "/api/workflows/starter/instances/s/restart")
        await api.ok("POST", "/api/workflows/fanout/instances/r/restart")
        await api.wait_status("starter", "s", "waiting", timeout=60)
        await api.ok("POST", "/api/workflows/starter/instances/s/events/done", None, 202)
        assert (await api.wait_status("starter", "s", "complete"))["output"] == ids
        again = await api.wait_status("fanout", "r", "complete")
        assert again["output"] == 6
        for id, ended in before.items():
            child = await api.ok("GET", f"/api/workflows/child/instances/{id}")
            assert child["ended_at"] == ended, f"child {id} ran again"
        listed = await api.ok("GET", "/api/workflows/child/instances?limit=1000")
        assert len(listed["instances"]) == 6


@needs_chromium
async def test_the_dashboard_links_parent_and_children_and_terminates_with_cascade(
    hosts: HostFactory,
    tmp_path: Path,
    page: Page,
) -> None:
    """The parent's page lists its children as links, a child's page links back to its
    parent, and Terminate, confirmed twice, terminates the running children too."""
    host = hosts.start(copy_project(tmp_path / "project", PROJECT))
    session, api = await _api(host)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/fanout/instances",
            {"id": "dash", "params": {"n": 2, "ms": 600_000}},
            201,
        )

        async def both_waiting() -> bool:
            children = await _children(api, "dash")
            return len(children) == 2 and {c["status"] for c in children} == {"waiting"}

        await eventually(both_waiting, timeout=60, message="the children")
        await page.goto(host.url + "/dashboard#/workflows/fanout/instances/dash")
        links = page.locator("#children a.child-link")
        await expect(links).to_have_count(2)
        await links.first.click()
        await expect(page.locator("#parent-link")).to_have_text("fanout/dash")
        await page.locator("#parent-link").click()
        await expect(page.locator(".title-row h1")).to_have_text("dash")
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.locator("[data-action=terminate]").click()
        await expect(page.locator(".title-row .badge")).to_have_text("terminated")
        detail = await api.ok("GET", "/api/workflows/fanout/instances/dash")
        assert {c["status"] for c in detail["children"]} == {"terminated"}
