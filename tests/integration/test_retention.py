"""Retention: ``[storage] retention`` and ``durableflow instances prune`` on a real host."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durableflow_runtime.config import ConfigError, load_config
from durableflow_runtime.retention import sweep_interval
from tests.helpers import eventually_sync

from .conftest import (
    PG_DSN,
    HostFactory,
    HostProcess,
    _pg,
    copy_project,
    require_postgres,
    run_cli,
)


def call(host: HostProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request; ``(status, body)`` whatever the status."""
    return host.call(method, path, body)


def instance(host: HostProcess, workflow: str, id: str) -> tuple[int, Any]:
    return call(host, "GET", f"/api/workflows/{workflow}/instances/{id}")


def create(host: HostProcess, workflow: str, id: str, params: Any = None) -> None:
    status, body = call(
        host, "POST", f"/api/workflows/{workflow}/instances", {"id": id, "params": params}
    )
    assert status == 201, body


def reach(host: HostProcess, workflow: str, id: str, status: str) -> None:
    eventually_sync(
        lambda: instance(host, workflow, id)[1].get("status") == status,
        timeout=15,
        message=f"{workflow}/{id} is {status}",
    )


def gone(host: HostProcess, workflow: str, id: str, timeout: float = 15.0) -> None:
    eventually_sync(
        lambda: instance(host, workflow, id)[0] == 404,
        timeout=timeout,
        message=f"{workflow}/{id} is deleted",
    )


@pytest.fixture(params=["sqlite", "postgres"])
def storage_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """No extra arguments for SQLite; ``--storage`` on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield []
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"retention_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    try:
        yield ["--storage", f"{PG_DSN}{separator}schema={schema}"]
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def project_with(tmp_path: Path, storage: str = "") -> Path:
    project = copy_project(tmp_path / "project")
    if storage:
        config = project / "durableflow.toml"
        config.write_text(config.read_text() + f"\n[storage]\n{storage}\n")
    return project


@pytest.mark.slow
def test_retention_deletes_old_finished_instances_and_keeps_the_rest(
    tmp_path: Path, hosts: HostFactory, storage_args: list[str]
) -> None:
    """A host with a short retention deletes complete, errored and terminated instances once
    they are that old, and keeps waiting, paused and younger finished ones."""
    project = project_with(tmp_path, 'retention = "3 seconds"')
    host = hosts.start(project, *storage_args)
    create(host, "echo", "old", {"name": "a"})
    create(host, "flaky", "bad")
    create(host, "waiter", "stopped")
    create(host, "waiter", "waits")
    create(host, "waiter", "paused")
    reach(host, "waiter", "stopped", "waiting")
    reach(host, "waiter", "paused", "waiting")
    assert call(host, "POST", "/api/workflows/waiter/instances/stopped/terminate")[0] == 200
    assert call(host, "POST", "/api/workflows/waiter/instances/paused/pause")[0] == 200
    reach(host, "echo", "old", "complete")
    reach(host, "flaky", "bad", "errored")

    for workflow, id in (("echo", "old"), ("flaky", "bad"), ("waiter", "stopped")):
        gone(host, workflow, id)
    assert instance(host, "waiter", "waits")[1]["status"] == "waiting"
    assert instance(host, "waiter", "paused")[1]["status"] == "paused"

    create(host, "echo", "young", {"name": "b"})
    reach(host, "echo", "young", "complete")
    status, young = instance(host, "echo", "young")
    assert status == 200 and young["steps"][0]["status"] == "complete"

    # the waiting instance kept its history and its wait: an event completes it
    assert call(host, "POST", "/api/workflows/waiter/instances/waits/events/go", 1)[0] == 202
    reach(host, "waiter", "waits", "complete")
    assert instance(host, "waiter", "waits")[1]["output"] == {"got": 1}
    gone(host, "echo", "young")  # the sweeps go on
    assert "retention: deleted" in host.output()


def test_retention_config_is_a_positive_duration(tmp_path: Path) -> None:
    """`[storage] retention` takes a duration, defaults to keeping forever, and rejects
    bad strings and zero with a message naming the key."""
    assert load_config(project_with(tmp_path / "none")).storage_retention is None
    config = load_config(project_with(tmp_path / "days", 'retention = "30 days"'))
    assert config.storage_retention == 30 * 86400
    assert load_config(project_with(tmp_path / "ms", "retention = 1500")).storage_retention == 1.5
    with pytest.raises(ConfigError, match=r"storage\.retention 'banana'"):
        load_config(project_with(tmp_path / "bad", 'retention = "banana"'))
    with pytest.raises(ConfigError, match=r"storage\.retention must be longer than zero"):
        load_config(project_with(tmp_path / "zero", 'retention = "0 s"'))
    with pytest.raises(ConfigError, match=r"storage\.retention must be a duration"):
        load_config(project_with(tmp_path / "list", "retention = [1]"))


def test_sweep_interval_follows_the_retention() -> None:
    """Sweeps run every tenth of the retention, at least every 10 minutes, at most 10 a second."""
    assert sweep_interval(2.0) == pytest.approx(0.2)
    assert sweep_interval(0.5) == 0.1
    assert sweep_interval(30 * 86400) == 600.0


def prune(host: HostProcess, *args: str) -> Any:
    result = run_cli("instances", "prune", *args, "--url", host.url)
    return result


def test_prune_command_deletes_what_it_is_asked_to_and_reports_the_count(
    tmp_path: Path, hosts: HostFactory, storage_args: list[str]
) -> None:
    """`instances prune` deletes finished instances by age, status and workflow, says how
    many, and never touches unfinished ones; a pruned instance's GET is 404."""
    host = hosts.start(project_with(tmp_path), *storage_args)
    create(host, "echo", "c1", {"name": "a"})
    create(host, "echo", "c2", {"name": "b"})
    create(host, "flaky", "e1")
    create(host, "waiter", "w1")
    reach(host, "echo", "c1", "complete")
    reach(host, "echo", "c2", "complete")
    reach(host, "flaky", "e1", "errored")
    reach(host, "waiter", "w1", "waiting")

    result = prune(host, "--older-than", "1h")
    assert (result.returncode, result.stdout.strip()) == (0, "deleted 0 instance(s)")
    result = prune(host, "--older-than", "0s", "--status", "errored", "--workflow", "echo")
    assert (result.returncode, result.stdout.strip()) == (0, "deleted 0 instance(s)")

    result = prune(host, "--older-than", "0s", "--status", "complete", "--workflow", "echo")
    assert (result.returncode, result.stdout.strip()) == (0, "deleted 2 instance(s)"), result
    assert instance(host, "echo", "c1")[0] == 404
    assert instance(host, "echo", "c2")[0] == 404
    assert instance(host, "flaky", "e1")[0] == 200

    result = prune(host, "--older-than", "0 ms", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"deleted": 1}
    assert instance(host, "flaky", "e1")[0] == 404
    assert instance(host, "waiter", "w1")[1]["status"] == "waiting"
    listed = call(host, "GET", "/api/workflows/echo/instances")[1]
    assert listed["instances"] == []


def test_prune_refuses_bad_input_naming_it(
    tmp_path: Path, hosts: HostFactory, storage_args: list[str]
) -> None:
    """A bad age, status, workflow or body is refused with a message that names it, and
    nothing is deleted."""
    host = hosts.start(project_with(tmp_path), *storage_args)
    create(host, "echo", "keep", {"name": "a"})
    reach(host, "echo", "keep", "complete")

    result = prune(host, "--older-than", "banana")
    assert (
        result.returncode == 2 and "'banana'" in result.stderr and "--older-than" in result.stderr
    )
    result = prune(host, "--older-than", "-1d")
    assert result.returncode == 2 and "'-1d'" in result.stderr
    result = prune(host)
    assert result.returncode == 2 and "--older-than" in result.stderr
    result = prune(host, "--older-than", "1d", "--status", "running")
    assert result.returncode == 2 and "'running'" in result.stderr
    result = prune(host, "--older-than", "0s", "--workflow", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no workflow named 'nope'"

    path = "/api/instances/prune"
    for body, status, words in (
        ({}, 400, "'older_than'"),
        ({"older_than": None}, 400, "'older_than'"),
        ({"older_than": True}, 400, "'older_than'"),
        ({"older_than": "banana"}, 400, "'banana'"),
        ({"older_than": -5}, 400, "negative"),
        ({"older_than": "0s", "status": "running"}, 400, "'running'"),
        ({"older_than": "0s", "status": 3}, 400, "'status'"),
        ({"older_than": "0s", "workflow": ["echo"]}, 400, "'workflow'"),
        ({"older_than": "0s", "everything": True}, 400, "'everything'"),
        ({"older_than": "0s", "workflow": "nope"}, 404, "'nope'"),
        ([], 400, "JSON object"),
    ):
        got, answer = call(host, "POST", path, body)
        assert got == status, (body, answer)
        assert words in answer["error"]["message"], (body, answer)
    assert instance(host, "echo", "keep")[0] == 200
