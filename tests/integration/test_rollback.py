"""Rollback (compensation) and the workflow retry policy on a real host over HTTP, on
SQLite and on PostgreSQL: rollbacks run last-started first, survive a kill -9 in their
middle without running a finished one again, and ``terminate(rollback=True)`` runs them
before ``terminated``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from durableflow import Client, InvalidTransitionError
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
from .test_dashboard import Elements, dump_dom, needs_chromium

PROJECT = Path(__file__).with_name("rollback_project")

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The ``serve`` arguments of one store: the project's SQLite file, or a fresh
    PostgreSQL schema with short leases (a killed host's instances are taken over soon)."""
    if request.param == "sqlite":
        yield []
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"rollback_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    yield ["--storage", f"{PG_DSN}{separator}schema={schema}&lease_seconds=2"]
    _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _start(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> tuple[Path, Path, HostProcess]:
    """A copy of the project, the folder its workflows note their effects in, and a host."""
    project = copy_project(tmp_path / "project", PROJECT)
    folder = tmp_path / "effects"
    folder.mkdir()
    return project, folder, hosts.start(project, *storage)


def _log(folder: Path) -> list[str]:
    path = folder / "log"
    return path.read_text().splitlines() if path.exists() else []


async def _api(url: str) -> tuple[aiohttp.ClientSession, Api]:
    session = aiohttp.ClientSession()
    return session, Api(session, url)


async def test_failed_instance_rolls_back_lifo_across_kill_9(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> None:
    """A failed saga rolls back ship, charge, reserve in that order; a kill -9 while
    charge's rollback runs resumes it on the next host, ship's finished rollback does not
    run again, and the instance ends errored with the original error."""
    project, folder, host = _start(hosts, tmp_path, storage)
    session, api = await _api(host.url)
    async with session:
        created = await api.ok(
            "POST",
            "/api/workflows/saga/instances",
            {"id": "order-1", "params": {"dir": str(folder), "hold": ["charge"]}},
            201,
        )
        assert created["id"] == "order-1"
        detail = await api.wait_status("saga", "order-1", "rollingBack")
        assert detail["error"] == {"name": "NonRetryableError", "message": "no courier"}
        # pausing a rolling-back instance is refused
        status, body = await api.call("POST", "/api/workflows/saga/instances/order-1/pause")
        assert status == 409, body

        await eventually(
            lambda: "undo charge output=120 error=NonRetryableError" in _log(folder),
            message=f"the rollback of charge starts ({_log(folder)})",
        )
    assert host.stop(signal.SIGKILL) == -signal.SIGKILL
    assert "undone ship" in _log(folder)
    assert "undone charge" not in _log(folder)
    (folder / "release").touch()

    host = hosts.start(project, *storage)
    session, api = await _api(host.url)
    async with session:
        detail = await api.wait_status("saga", "order-1", "errored", timeout=30)
    log = _log(folder)
    assert [line for line in log if line.startswith("do ")] == [
        "do reserve",
        "do charge",
        "do ship",
    ]
    assert [line for line in log if line.startswith("undone ")] == [
        "undone ship",
        "undone charge",
        "undone reserve",
    ]
    assert log.count("undo ship output=None error=NonRetryableError") == 1  # not run again
    assert log.count("undo charge output=120 error=NonRetryableError") == 2  # cut off once
    assert detail["error"]["name"] == "NonRetryableError"
    assert "no courier" in detail["error"]["message"]
    rollbacks = {s["name"]: s["rollback"] for s in detail["steps"]}
    assert {name: r["status"] for name, r in rollbacks.items()} == {
        "reserve": "complete",
        "charge": "complete",
        "ship": "complete",
    }
    assert rollbacks["ship"]["attempts"] == 1
    assert rollbacks["charge"]["attempts"] == 2
    assert rollbacks["charge"]["attempt_log"][0]["error"]["name"] == "Interrupted"
    assert all(r["started_at"] and r["ended_at"] for r in rollbacks.values())


async def test_failing_rollback_is_recorded_and_the_others_run(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> None:
    """A rollback that exhausts its rollback_config retries is recorded failed on its
    step; the rollbacks of the earlier steps still run."""
    _, folder, host = _start(hosts, tmp_path, storage)
    session, api = await _api(host.url)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/saga/instances",
            {"id": "order-2", "params": {"dir": str(folder), "fail_undo": ["charge"]}},
            201,
        )
        detail = await api.wait_status("saga", "order-2", "errored", timeout=30)
    steps = {s["name"]: s for s in detail["steps"]}
    charge = steps["charge"]["rollback"]
    assert charge["status"] == "failed"
    assert charge["attempts"] == 2  # rollback_config: limit 1
    assert charge["error"] == {"name": "RuntimeError", "message": "cannot undo charge"}
    assert steps["reserve"]["rollback"]["status"] == "complete"
    assert steps["ship"]["rollback"]["status"] == "complete"
    assert "undone reserve" in _log(folder)
    assert "no courier" in detail["error"]["message"]


async def test_terminate_with_rollback_over_http_client_and_cli(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> None:
    """``terminate`` with ``{"rollback": true}`` (HTTP, Client, CLI ``--rollback``) runs the
    rollbacks, then the instance is terminated; a plain terminate runs none."""
    _, folder, host = _start(hosts, tmp_path, storage)
    session, api = await _api(host.url)
    async with session:
        for id in ("http", "client", "cli", "plain"):
            params = {"dir": str(folder), "hold": ["book"] if id == "http" else []}
            await api.ok("POST", "/api/workflows/held/instances", {"id": id, "params": params}, 201)
        for id in ("http", "client", "cli", "plain"):

            async def sleeping(id: str = id) -> bool:
                detail = await api.ok("GET", f"/api/workflows/held/instances/{id}")
                return bool(detail["steps"]) and detail["steps"][-1]["name"] == "hold"

            await eventually(sleeping, message=f"{id} sleeps")
        status, body = await api.call(
            "POST", "/api/workflows/held/instances/http/terminate", {"rollback": "yes"}
        )
        assert status == 400 and "rollback" in body["error"]["message"]
        answer = await api.ok(
            "POST", "/api/workflows/held/instances/http/terminate", {"rollback": True}
        )
        assert answer["status"] == "rollingBack"
        await eventually(lambda: any(x.startswith("undo book") for x in _log(folder)))
        detail = await api.ok("GET", "/api/workflows/held/instances/http")
        assert detail["status"] == "rollingBack"
        assert detail["error"]["name"] == "Terminated"
        status, body = await api.call("POST", "/api/workflows/held/instances/http/pause")
        assert status == 409, body
        (folder / "release").touch()
        detail = await api.wait_status("held", "http", "terminated")
        assert detail["steps"][0]["rollback"]["status"] == "complete"
        assert detail["error"] is None

        async with Client(host.url) as client:
            instance = await client.workflow("held").get("client")
            await instance.terminate(rollback=True)
            await api.wait_status("held", "client", "terminated")
            with pytest.raises(InvalidTransitionError):
                await instance.terminate(rollback=True)

        result = run_cli("instances", "terminate", "held", "cli", "--rollback", "--url", host.url)
        assert result.returncode == 0, result.stderr
        detail = await api.wait_status("held", "cli", "terminated")
        assert detail["steps"][0]["rollback"]["status"] == "complete"
        described = run_cli("instances", "describe", "held", "cli", "--url", host.url)
        assert described.returncode == 0, described.stderr
        assert "ROLLBACK OF" in described.stdout
        [row] = [line for line in described.stdout.splitlines() if line.startswith("book ")][-1:]
        assert "complete" in row

        await api.ok("POST", "/api/workflows/held/instances/plain/terminate")
        detail = await api.wait_status("held", "plain", "terminated")
        assert detail["steps"][0]["rollback"] is None
    undone = [line for line in _log(folder) if line.startswith("undone")]
    assert sorted(undone) == ["undone book"] * 3


async def test_run_retries_run_again_from_history_then_roll_back(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> None:
    """With ``run_retries``, a failed run() runs again from its history (the finished step
    is not run again) and may complete; once the retries are exhausted, the rollbacks run
    once, and the instance errors."""
    project = copy_project(tmp_path / "project", PROJECT)
    ok_dir, bad_dir = tmp_path / "ok", tmp_path / "bad"
    ok_dir.mkdir()
    bad_dir.mkdir()
    host = hosts.start(project, *storage)
    session, api = await _api(host.url)
    async with session:
        await api.ok(
            "POST",
            "/api/workflows/again/instances",
            {"id": "ok", "params": {"dir": str(ok_dir), "succeed_on": 3}},
            201,
        )
        await api.ok(
            "POST",
            "/api/workflows/again/instances",
            {"id": "bad", "params": {"dir": str(bad_dir)}},
            201,
        )
        ok = await api.wait_status("again", "ok", "complete", timeout=30)
        bad = await api.wait_status("again", "bad", "errored", timeout=30)
    assert ok["output"] == 3
    assert ok["run_retries"] == 2
    assert _log(ok_dir) == ["do first", "do flaky", "do flaky", "do flaky"]
    assert bad["run_retries"] == 2
    assert _log(bad_dir) == [
        "do first",
        "do flaky",
        "do flaky",
        "do flaky",
        "undo first output=1 error=RuntimeError",
        "undone first",
    ]
    assert "flaky run 3" in bad["error"]["message"]


def test_config_rejects_a_bad_run_retries(tmp_path: Path) -> None:
    """A ``run_retries`` that is not a retry policy is a config error naming it."""
    project = copy_project(tmp_path / "project", PROJECT)
    toml = project / "durableflow.toml"
    toml.write_text(
        toml.read_text().replace('limit = 2, delay = "50 ms"', 'limit = -1, delay = "50 ms"')
    )
    result = run_cli("serve", "--port", "0", cwd=project, timeout=60)
    assert result.returncode != 0
    assert "run_retries" in result.stderr + result.stdout


@needs_chromium
async def test_dashboard_draws_rollbacks_on_the_timeline(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """In headless chromium the instance page draws each rollback attempt on its step's
    row, a failed one marked, and offers terminate with rollback while it is allowed."""
    _, folder, host = _start(hosts, tmp_path, [])
    session, api = await _api(host.url)
    async with session:
        params = {"dir": str(folder), "fail_undo": ["charge"]}
        await api.ok("POST", "/api/workflows/saga/instances", {"id": "o-1", "params": params}, 201)
        await api.wait_status("saga", "o-1", "errored", timeout=30)
        await api.ok(
            "POST",
            "/api/workflows/held/instances",
            {"id": "h-1", "params": {"dir": str(folder)}},
            201,
        )
    dom = dump_dom(host.url + "/dashboard#/workflows/saga/instances/o-1", tmp_path / "profile")
    undo = Elements(dom).with_class("undo")
    assert [a["data-rollback"] for a in undo] == ["1", "1", "2", "1"]  # reserve, charge x2, ship
    failed = [a for a in undo if "fail" in a["class"].split()]
    assert len(failed) == 2
    assert all(
        "rollback attempt" in a["title"] and "cannot undo charge" in a["title"] for a in failed
    )
    assert "↶ failed" in dom and "↶ complete" in dom
    dom = dump_dom(host.url + "/dashboard#/workflows/held/instances/h-1", tmp_path / "profile2")
    [button] = [
        a for a in Elements(dom).tags("button") if a.get("data-action") == "terminate_rollback"
    ]
    assert "disabled" not in button


async def test_run_retries_survive_a_kill_9_during_the_back_off(
    hosts: HostFactory, tmp_path: Path, storage: list[str]
) -> None:
    """A host killed while run() waits to be retried: the next host runs it again when
    the back-off is over, without running the finished step again."""
    project, folder, host = _start(hosts, tmp_path, storage)
    session, api = await _api(host.url)
    async with session:
        params = {"dir": str(folder), "succeed_on": 2}
        await api.ok(
            "POST", "/api/workflows/again-slowly/instances", {"id": "a", "params": params}, 201
        )
        detail = await api.wait_status("again-slowly", "a", "waiting")
    assert detail["run_retries"] == 1
    assert detail["error"]["message"].endswith("flaky run 1")
    assert [s["name"] for s in detail["steps"]] == ["first"]  # the failed step was dropped
    assert host.stop(signal.SIGKILL) == -signal.SIGKILL
    host = hosts.start(project, *storage)
    session, api = await _api(host.url)
    async with session:
        detail = await api.wait_status("again-slowly", "a", "complete", timeout=30)
    assert detail["output"] == 2
    assert _log(folder) == ["do first", "do flaky", "do flaky"]
