"""Restart from a step, delete and bulk actions, over a real host's HTTP API, its Client,
SyncClient and CLI, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import durableflow
from durableflow import BulkResult, NotFoundError, StepRef, ValidationError
from tests.helpers import eventually, eventually_sync
from tests.integration.conftest import (
    Api,
    HostFactory,
    HostProcess,
    _pg,
    copy_project,
    project_host,
    run_cli,
    storage_args,
)

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).with_name("control_project")


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """``serve`` arguments for a fresh store of each kind."""
    schema = f"control_{os.getpid()}_{time.monotonic_ns()}"
    yield storage_args(request.param, schema)
    if request.param == "postgres":
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def control_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    """One host on the control project, shared by this module's tests, on each store."""
    project = copy_project(tmp_path_factory.mktemp("control") / "project", PROJECT)
    with project_host(request.param, project, "control") as host:
        yield host


@pytest.fixture
async def api(control_host: HostProcess) -> Any:
    async with aiohttp.ClientSession(headers=control_host.headers()) as session:
        yield Api(session, control_host.url)


def _order(tmp: Path, name: str) -> dict[str, str]:
    return {"log": str(tmp / f"{name}.log"), "fix": str(tmp / f"{name}.fixed")}


def _touch(path: str) -> None:
    Path(path).write_text("yes")


def _ran(params: dict[str, str]) -> list[str]:
    path = Path(params["log"])
    return path.read_text().splitlines() if path.exists() else []


def _steps(detail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["name"], s["status"]) for s in detail["steps"]]


async def test_restart_from_a_failed_step_keeps_what_came_before(api: Api, tmp_path: Path) -> None:
    """Restart from the failed step re-runs it and what follows; earlier steps and the
    event their wait took are kept, not run again."""
    params = _order(tmp_path, "o1")
    base = "/api/workflows/orders/instances"
    await api.ok("POST", base, {"id": "o1", "params": params}, status=201)
    await api.ok("POST", f"{base}/o1/events/approve", {"by": "ann"}, status=202)
    failed = await api.wait_status("orders", "o1", "errored")
    assert failed["error"]["message"] == "card declined"
    _touch(params["fix"])

    answer = await api.ok("POST", f"{base}/o1/restart", {"from": {"name": "charge card"}})
    assert answer == {"id": "o1", "status": "queued"}
    done = await api.wait_status("orders", "o1", "complete")
    assert done["output"] == ["reserved", {"by": "ann"}, "charged", "shipped"]
    assert done["error"] is None
    assert _ran(params) == ["reserve", "charge card", "charge card", "ship"]
    assert _steps(done) == [
        ("reserve", "complete"),
        ("approval", "complete"),
        ("charge card", "complete"),
        ("ship", "complete"),
    ]


async def test_restart_from_a_wait_drops_the_event_it_took(api: Api, tmp_path: Path) -> None:
    """Restart from a wait_for_event drops the event that wait consumed (as Cloudflare
    does): the instance waits for a new one, and a pending event stays pending."""
    params = _order(tmp_path, "o2")
    _touch(params["fix"])
    base = "/api/workflows/orders/instances"
    await api.ok("POST", base, {"id": "o2", "params": params}, status=201)
    await api.ok("POST", f"{base}/o2/events/approve", {"by": "first"}, status=202)
    await api.wait_status("orders", "o2", "complete")

    from_wait = {"from": {"name": "approval", "count": 1, "type": "wait_for_event"}}
    await api.ok("POST", f"{base}/o2/restart", from_wait)
    waiting = await api.wait_status("orders", "o2", "waiting")
    assert _steps(waiting) == [("reserve", "complete"), ("approval", "waiting")]
    await api.ok("POST", f"{base}/o2/events/approve", {"by": "second"}, status=202)
    done = await api.wait_status("orders", "o2", "complete")
    assert done["output"][1] == {"by": "second"}
    assert _ran(params) == ["reserve", "charge card", "ship", "charge card", "ship"]


async def test_restart_from_an_unknown_step_is_refused(api: Api, tmp_path: Path) -> None:
    """A step that is not in the history, or a malformed one, is a 400 naming it, and the
    instance is left as it was."""
    params = _order(tmp_path, "o3")
    base = "/api/workflows/orders/instances"
    await api.ok("POST", base, {"id": "o3", "params": params}, status=201)
    await api.wait_status("orders", "o3", "waiting")
    for body, words in [
        ({"from": {"name": "ship"}}, ["'ship'", "no such step"]),
        ({"from": {"name": "reserve", "count": 2}}, ["'reserve'", "#2", "has 1"]),
        ({"from": {"name": "reserve", "type": "sleep"}}, ["sleep step 'reserve'"]),
        ({"from": {"name": "reserve", "type": "nap"}}, ["type", "'nap'"]),
        ({"from": {"name": "reserve", "count": 0}}, ["count", "0"]),
        ({"from": {"name": "reserve", "step": 1}}, ["step"]),
        ({"from": "reserve"}, ["'from'"]),
        ({"from_step": {"name": "reserve"}}, ["from_step"]),
    ]:
        status, answer = await api.call("POST", f"{base}/o3/restart", body)
        assert status == 400, (body, answer)
        for word in words:
            assert word in answer["error"]["message"], (body, answer)
    detail = await api.ok("GET", f"{base}/o3")
    assert detail["status"] == "waiting"
    assert _steps(detail) == [("reserve", "complete"), ("approval", "waiting")]
    status, _ = await api.call("POST", f"{base}/nobody/restart", {"from": {"name": "reserve"}})
    assert status == 404


async def test_delete_removes_everything_and_frees_the_id(api: Api) -> None:
    """DELETE answers 204, then the instance, its history and its pending events are gone
    (404), and the id starts a fresh instance."""
    base = "/api/workflows/collector/instances"
    await api.ok("POST", base, {"id": "d1"}, status=201)
    await api.wait_status("collector", "d1", "waiting")
    await api.ok("POST", f"{base}/d1/pause", status=200)
    await api.ok("POST", f"{base}/d1/events/go", {"n": "old"}, status=202)  # stays pending

    status, body = await api.call("DELETE", f"{base}/d1")
    assert (status, body) == (204, None)
    status, body = await api.call("GET", f"{base}/d1")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await api.call("DELETE", f"{base}/d1")
    assert status == 404, body
    listed = await api.ok("GET", f"{base}?id_prefix=d1")
    assert listed["instances"] == []

    await api.ok("POST", base, {"id": "d1"}, status=201)
    fresh = await api.wait_status("collector", "d1", "waiting")  # the old event went too
    assert _steps(fresh) == [("wait for go", "waiting")]
    await api.ok("POST", f"{base}/d1/events/go", {"n": "new"}, status=202)
    done = await api.wait_status("collector", "d1", "complete")
    assert done["output"] == {"got": {"n": "new"}}


async def test_delete_a_running_instance_abandons_its_attempt(
    api: Api, control_host: HostProcess, tmp_path: Path
) -> None:
    """A running instance is deleted at once; its in-flight attempt is abandoned without
    an error in the host's log, and the id can run again."""
    base = "/api/workflows/blocker/instances"
    params = {"gate": str(tmp_path / "gate"), "started": str(tmp_path / "started")}
    await api.ok("POST", base, {"id": "busy", "params": params}, status=201)
    await eventually(lambda: Path(params["started"]).exists(), message="the step started")
    status, _ = await api.call("DELETE", f"{base}/busy")
    assert status == 204
    cancelled = Path(params["started"]).with_suffix(".cancelled")
    await eventually(cancelled.exists, message="the in-flight attempt is cancelled")
    _touch(params["gate"])
    status, _ = await api.call("GET", f"{base}/busy")
    assert status == 404
    await api.ok("POST", base, {"id": "busy", "params": params}, status=201)
    done = await api.wait_status("blocker", "busy", "complete")
    assert done["output"] == "passed"
    assert [s["attempts"] for s in done["steps"]] == [1]
    assert "Traceback" not in control_host.output()


async def test_bulk_actions_answer_per_instance(api: Api) -> None:
    """Bulk pause, resume, terminate and delete by ids and by status: each instance is
    applied or skipped with its reason."""
    base = "/api/workflows/collector/instances"
    for id in ("b1", "b2", "b3"):
        await api.ok("POST", base, {"id": id}, status=201)
        await api.wait_status("collector", id, "waiting")

    paused = await api.ok(
        "POST", f"{base}/actions", {"action": "pause", "ids": ["b1", "b2", "nope", "b1"]}
    )
    assert paused["results"] == [
        {"id": "b1", "result": "applied", "reason": None, "status": "paused"},
        {"id": "b2", "result": "applied", "reason": None, "status": "paused"},
        {"id": "nope", "result": "skipped", "reason": "not found", "status": None},
    ]
    assert (paused["applied"], paused["skipped"], paused["more"]) == (2, 1, False)

    resumed = await api.ok("POST", f"{base}/actions", {"action": "resume", "status": "paused"})
    assert sorted(r["id"] for r in resumed["results"]) == ["b1", "b2"]
    assert {r["result"] for r in resumed["results"]} == {"applied"}

    await api.ok("POST", f"{base}/b3/terminate")
    terminated = await api.ok(
        "POST", f"{base}/actions", {"action": "terminate", "ids": ["b1", "b3"]}
    )
    [b1, b3] = terminated["results"]
    assert b1 == {"id": "b1", "result": "applied", "reason": None, "status": "terminated"}
    assert b3["result"] == "skipped" and b3["status"] == "terminated"
    assert "cannot terminate" in b3["reason"]

    deleted = await api.ok("POST", f"{base}/actions", {"action": "delete", "status": "terminated"})
    assert sorted(r["id"] for r in deleted["results"]) == ["b1", "b3"]
    assert {r["status"] for r in deleted["results"]} == {None}
    listed = await api.ok("GET", f"{base}?id_prefix=b")
    assert [i["id"] for i in listed["instances"]] == ["b2"]

    for body, word in [
        ({"action": "delete", "ids": ["b2"], "status": "waiting"}, "exactly one"),
        ({"action": "delete"}, "exactly one"),
        ({"action": "explode", "ids": ["b2"]}, "explode"),
        ({"ids": ["b2"]}, "action"),
        ({"action": "delete", "ids": []}, "empty"),
        ({"action": "delete", "ids": [f"x{i}" for i in range(1001)]}, "1000"),
        ({"action": "delete", "ids": ["bad id"]}, "ids[0]"),
        ({"action": "delete", "status": "sleepy"}, "sleepy"),
        ({"action": "delete", "ids": "b2"}, "list"),
    ]:
        status, answer = await api.call("POST", f"{base}/actions", body)
        assert status == 400, (body, answer)
        assert word in answer["error"]["message"], (body, answer)
    await api.ok("DELETE", f"{base}/b2", status=204)


async def test_client_and_sync_client(control_host: HostProcess, tmp_path: Path) -> None:
    """Client and SyncClient restart from a step, delete, bulk and delete_batch; a step
    not in the history is a ValidationError naming it."""
    params = _order(tmp_path, "c1")
    async with durableflow.Client(control_host.url) as client:
        orders = client.workflow("orders")
        inst = await orders.create(id="c1", params=params)
        await inst.send_event(type="approve", payload="ok")
        await eventually(lambda: _status_is(inst, "errored"), message="c1 errored", timeout=15.0)
        with pytest.raises(ValidationError, match="'charge'"):
            await inst.restart(from_step=StepRef("charge"))
        with pytest.raises(ValidationError, match="count"):
            await inst.restart(from_step={"name": "charge card", "count": 0})
        _touch(params["fix"])
        await inst.restart(from_step=StepRef("charge card", count=1, type="do"))
        assert await inst.result(timeout=15) == ["reserved", "ok", "charged", "shipped"]
        assert _ran(params) == ["reserve", "charge card", "charge card", "ship"]

        collector = client.workflow("collector")
        created = [await collector.create(id=f"cl{i}") for i in range(3)]
        results = await collector.bulk("terminate", ids=["cl0", "cl1", "missing"])
        assert results[:2] == [
            BulkResult("cl0", "applied", None, "terminated"),
            BulkResult("cl1", "applied", None, "terminated"),
        ]
        assert results[2] == BulkResult("missing", "skipped", "not found", None)
        assert await collector.delete_batch(["cl0", "cl1", "missing"]) == ["cl0", "cl1"]
        await created[2].delete()
        with pytest.raises(NotFoundError):
            await created[2].delete()
        with pytest.raises(ValidationError, match="exactly one"):
            await collector.bulk("delete")
        await inst.delete()

    with durableflow.SyncClient(control_host.url) as sync:
        orders_sync = sync.workflow("orders")
        params = _order(tmp_path, "s1")
        _touch(params["fix"])
        sinst = orders_sync.create(id="s1", params=params)
        sinst.send_event(type="approve", payload="yes")
        assert sinst.result(timeout=15)[3] == "shipped"
        sinst.restart(from_step={"name": "ship"})
        assert sinst.result(timeout=15)[3] == "shipped"
        assert _ran(params) == ["reserve", "charge card", "ship", "ship"]
        with pytest.raises(ValidationError, match="'nap'"):
            sinst.restart(from_step=StepRef("nap", type="sleep"))
        assert [r.result for r in orders_sync.bulk("restart", ids=["s1"])] == ["applied"]
        assert orders_sync.delete_batch(["s1"]) == ["s1"]
        with pytest.raises(NotFoundError):
            sinst.delete()


async def _status_is(inst: durableflow.WorkflowInstance, status: str) -> bool:
    return (await inst.status()).status == status


def test_cli(control_host: HostProcess, tmp_path: Path) -> None:
    """The CLI restarts from a step, deletes, acts in bulk, describes a workflow and
    deletes all its instances."""
    url = ["--url", control_host.url]
    params = _order(tmp_path, "k1")
    trig = run_cli("trigger", "orders", "--id", "k1", "--params", json.dumps(params), *url)
    assert trig.returncode == 0, trig.stderr
    run_cli("instances", "send-event", "orders", "k1", "--type", "approve", *url)

    _wait(lambda: _status_of(control_host, "k1") == "errored")
    bad = run_cli("instances", "restart", "orders", "k1", "--from-step", "nope", *url)
    assert bad.returncode == 1 and "'nope'" in bad.stderr
    usage = run_cli("instances", "restart", "orders", "k1", "--count", "2", *url)
    assert usage.returncode == 2 and "--from-step" in usage.stderr
    _touch(params["fix"])
    ok = run_cli(
        "instances", "restart", "orders", "k1", "--from-step", "charge card", "--count", "1",
        "--type", "do", *url,
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == "k1: queued", ok.stderr

    _wait(lambda: _status_of(control_host, "k1") == "complete")
    assert _ran(params) == ["reserve", "charge card", "charge card", "ship"]

    for id in ("k2", "k3"):
        run_cli("trigger", "collector", "--id", id, *url)
    bulk = run_cli("instances", "bulk", "terminate", "collector", "--id", "k2", "--id", "zz", *url)
    assert bulk.returncode == 0, bulk.stderr
    assert "k2" in bulk.stdout and "applied" in bulk.stdout and "not found" in bulk.stdout
    neither = run_cli("instances", "bulk", "delete", "collector", *url)
    assert neither.returncode == 2
    gone = run_cli("instances", "delete", "collector", "k2", *url)
    assert gone.returncode == 0 and "deleted k2" in gone.stdout

    described = run_cli("workflows", "describe", "collector", "--json", *url)
    assert described.returncode == 0, described.stderr
    data = json.loads(described.stdout)
    assert data["class_name"] == "CollectorWorkflow" and data["binding"] == "COLLECTOR"
    assert data["counts"].get("waiting", 0) + data["counts"].get("queued", 0) >= 1
    human = run_cli("workflows", "describe", "orders", *url)
    assert "OrderWorkflow" in human.stdout and "complete" in human.stdout

    refused = run_cli("workflows", "delete", "collector", *url)
    assert refused.returncode != 0  # no --yes and no terminal to confirm on
    deleted = run_cli("workflows", "delete", "collector", "--yes", *url)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout, deleted.stderr
    counts = control_host.get_json("/api/workflows/collector")["counts"]
    assert counts == {}


def _status_of(host: HostProcess, id: str) -> str:
    status: str = host.get_json(f"/api/workflows/orders/instances/{id}")["status"]
    return status


def _wait(predicate: Any, timeout: float = 15.0) -> None:
    eventually_sync(predicate, timeout=timeout, message="the instance's status")


async def test_restart_from_survives_a_kill_9(
    hosts: HostFactory, store_args: list[str], tmp_path: Path
) -> None:
    """A restart from a step, then kill -9 while the instance waits: the new host replays
    the kept history (no step runs twice) and finishes from the restart point."""
    project = copy_project(tmp_path / "project", PROJECT)
    host = hosts.start(project, *store_args)
    params = _order(tmp_path, "k9")
    _touch(params["fix"])
    base = "/api/workflows/orders/instances"
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        await api.ok("POST", base, {"id": "k9", "params": params}, status=201)
        await api.ok("POST", f"{base}/k9/events/approve", "first", status=202)
        await api.wait_status("orders", "k9", "complete")
        await api.ok(
            "POST", f"{base}/k9/restart", {"from": {"name": "approval", "type": "wait_for_event"}}
        )
        await api.wait_status("orders", "k9", "waiting")
    host.stop(signal.SIGKILL)

    host = hosts.start(project, *store_args)
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        waiting = await api.wait_status("orders", "k9", "waiting")
        assert _steps(waiting) == [("reserve", "complete"), ("approval", "waiting")]
        await api.ok("POST", f"{base}/k9/events/approve", "second", status=202)
        done = await api.wait_status("orders", "k9", "complete")
    assert done["output"] == ["reserved", "second", "charged", "shipped"]
    assert _ran(params) == ["reserve", "charge card", "ship", "charge card", "ship"]


async def test_delete_on_one_host_stops_the_attempt_on_another(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """Two hosts on one PostgreSQL: a bulk delete sent to one host cancels the in-flight
    attempts of the instances the other host runs, and the ids are gone on both."""
    schema = f"control_mh_{os.getpid()}_{time.monotonic_ns()}"
    args = await asyncio.to_thread(storage_args, "postgres", schema)
    try:
        first = hosts.start(copy_project(tmp_path / "one", PROJECT), *args)
        second = hosts.start(copy_project(tmp_path / "two", PROJECT), *args)
        base = "/api/workflows/blocker/instances"
        ids = [f"m{n}" for n in range(8)]
        started = {id: tmp_path / f"{id}.started" for id in ids}
        async with aiohttp.ClientSession() as session:
            api = Api(session, first.url)
            other = Api(session, second.url)
            for half, creator in ((ids[:4], api), (ids[4:], other)):  # each host runs some
                batch = [
                    {
                        "id": id,
                        "params": {"gate": str(tmp_path / "gate"), "started": str(started[id])},
                    }
                    for id in half
                ]
                await creator.ok("POST", f"{base}/batch", {"instances": batch}, status=201)
            await eventually(
                lambda: all(p.exists() for p in started.values()), message="every step started"
            )
            runners = set()
            for id in ids:
                detail = await api.ok("GET", f"{base}/{id}")
                runners |= {s["host"] for s in detail["steps"]}
            assert None not in runners and len(runners) == 2, runners
            answer = await api.ok("POST", f"{base}/actions", {"action": "delete", "ids": ids})
            assert answer["applied"] == len(ids)
            await eventually(
                lambda: all(p.with_suffix(".cancelled").exists() for p in started.values()),
                message="every in-flight attempt is cancelled, on both hosts",
            )
            for id in ids:
                for host_api in (api, other):
                    status, _ = await host_api.call("GET", f"{base}/{id}")
                    assert status == 404
        for host in (first, second):
            assert "Traceback" not in host.output()
    finally:
        await asyncio.to_thread(_pg, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
