"""Safe deploys through real host processes: versions, pinning, blocked instances, the
pre-deploy replay check and exported histories, on SQLite and on PostgreSQL.

Each test deploys classes of ``versions_project/app.py`` by writing the project's
``durableflow.toml``; a restart of the host is a deploy.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from durableflow import (
    HmacSignature,
    NonDeterminismError,
    SyncClient,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment, replay
from tests.helpers import eventually_sync

from .conftest import PG_DSN, HostFactory, HostProcess, _pg, copy_project, require_postgres, run_cli

PROJECT = Path(__file__).with_name("versions_project")
NO_CODE_V1 = "no code for version 'v1' on this host"

pytestmark = pytest.mark.slow


class Deploy:
    """A copy of the versions project on one store, and the deploys made to it."""

    def __init__(self, project: Path, storage: str | None) -> None:
        self.project = project
        self.storage = storage  # None: the config's SQLite file

    def configure(
        self,
        class_name: str,
        previous: Sequence[str] = (),
        *,
        check: str = "off",
        workflow: Sequence[str] = (),
    ) -> Path:
        """Write the config of a deploy of ``class_name`` (and ``previous``), with the
        ``workflow`` lines added to the workflow's table."""
        lines = ['main = "app.py"', "", "[server]", f'check = "{check}"', ""]
        lines += ["[[workflows]]", 'name = "orders"', f'class_name = "{class_name}"']
        if previous:
            lines.append("previous = [" + ", ".join(f'"{p}"' for p in previous) + "]")
        lines += workflow
        path = self.project / "durableflow.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def serve(self, hosts: HostFactory, *args: str, wait: bool = True) -> HostProcess:
        storage = ["--storage", self.storage] if self.storage else []
        return hosts.start(self.project, *storage, *args, wait=wait)

    def cli(self, *args: str) -> Any:
        storage = ["--storage", self.storage] if self.storage and args[0] == "check" else []
        return run_cli(*args, *storage, cwd=self.project, timeout=120)


@pytest.fixture(params=["sqlite", "postgres"])
def deploy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    """The versions project on SQLite (its own file) or PostgreSQL (a fresh schema)."""
    project = copy_project(tmp_path / "project", PROJECT)
    if request.param == "sqlite":
        yield Deploy(project, None)
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"versions_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    try:
        yield Deploy(project, f"{PG_DSN}{separator}schema={schema}")
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def call(host: HostProcess, method: str, path: str, body: Any = None) -> Any:
    status, answer = host.call(method, path, body)
    assert status < 300, answer
    return answer


def create(host: HostProcess, id: str) -> None:
    call(host, "POST", "/api/workflows/orders/instances", {"id": id})


def detail(host: HostProcess, id: str) -> Any:
    return host.get_json(f"/api/workflows/orders/instances/{id}")


def wait_status(host: HostProcess, id: str, status: str, timeout: float = 30.0) -> Any:
    def reached() -> Any:
        found = detail(host, id)
        return found if found["status"] == status else None

    return eventually_sync(reached, timeout=timeout, message=f"{id} is {status}")


def at_the_wait(host: HostProcess, id: str) -> Any:
    """Wait until the instance waits for its "go" event (not in its short sleep)."""

    def waiting() -> Any:
        found = detail(host, id)
        steps = found["steps"]
        return found if found["status"] == "waiting" and steps[-1]["name"] == "go" else None

    return eventually_sync(waiting, timeout=30, message=f"{id} waits for its event")


def go(host: HostProcess, id: str, payload: Any) -> None:
    call(host, "POST", f"/api/workflows/orders/instances/{id}/events/go", payload)


def versions(host: HostProcess) -> dict[str | None, dict[str, Any]]:
    return {v["version"]: v for v in host.get_json("/api/workflows/orders")["versions"]}


def test_a_deploy_keeps_old_instances_on_their_code(deploy: Deploy, hosts: HostFactory) -> None:
    """v1 instances wait across a crash and a deploy of v2 and finish on v1 code while new
    instances run v2; without the v1 class they wait, blocked with a clear message, and
    resume when the code returns."""
    deploy.configure("OrdersV1")
    host = deploy.serve(hosts)
    for id in ("old-1", "old-2"):
        create(host, id)
        assert at_the_wait(host, id)["version"] == "v1"
    host.stop(signal.SIGKILL)  # a crash, not a clean stop: the versions are on disk

    deploy.configure("OrdersV2", ["OrdersV1"])
    host = deploy.serve(hosts)
    info = host.get_json("/api/workflows/orders")
    assert info["version"] == "v2"
    assert info["previous"] == [{"version": "v1", "class_name": "OrdersV1"}]
    create(host, "new-1")
    assert at_the_wait(host, "new-1")["version"] == "v2"
    go(host, "old-1", "ship")
    go(host, "new-1", "ship")
    old = wait_status(host, "old-1", "complete")
    assert old["output"] == {
        "class": "OrdersV1",
        "version": "v1",
        "charge": "charged by OrdersV1",
        "go": "ship",
    }
    new = wait_status(host, "new-1", "complete")
    assert new["output"]["class"] == "OrdersV2" and new["output"]["version"] == "v2"
    assert [s["name"] for s in new["steps"]] == ["authorize", "go"]
    listed = host.get_json("/api/workflows/orders/instances?version=v1")["instances"]
    assert sorted((i["id"], i["version"]) for i in listed) == [("old-1", "v1"), ("old-2", "v1")]
    status, answer = host.call("GET", "/api/workflows/orders/instances?version=")
    assert status == 400 and "version must be 1 to 64 characters" in answer["error"]["message"]
    with SyncClient(host.url) as client:
        page = client.workflow("orders").list_instances(version="v2")
        assert [i["id"] for i in page["instances"]] == ["new-1"]
    counts = versions(host)
    assert counts["v1"] == {
        "version": "v1",
        "class_name": "OrdersV1",
        "current": False,
        "code": True,
        "in_flight": 1,
    }
    assert counts["v2"]["current"] and counts["v2"]["in_flight"] == 0
    assert detail(host, "old-2")["blocked"] is None
    assert host.stop() == 0

    deploy.configure("OrdersV2")  # v1 retired too early
    host = deploy.serve(hosts)
    assert detail(host, "old-2")["blocked"] == NO_CODE_V1
    go(host, "old-2", "late")
    create(host, "new-2")
    at_the_wait(host, "new-2")  # the host runs what it has code for
    assert detail(host, "old-2")["status"] == "waiting"
    counts = versions(host)
    assert counts["v1"]["code"] is False and counts["v1"]["in_flight"] == 1
    shown = run_cli("instances", "describe", "orders", "old-2", "--url", host.url)
    assert shown.returncode == 0, shown.stderr
    assert f"blocked   {NO_CODE_V1}" in shown.stdout
    assert "version   v1" in shown.stdout
    described = run_cli("workflows", "describe", "orders", "--url", host.url)
    assert described.returncode == 0, described.stderr
    rows = [line.split() for line in described.stdout.splitlines()]
    assert ["v1", "-", "-", "no", "1"] in rows  # in flight, no code here
    assert ["v2", "OrdersV2", "yes", "yes", "1"] in rows
    listed = run_cli("instances", "list", "orders", "--version", "v2", "--url", host.url)
    assert "new-2" in listed.stdout and "old-" not in listed.stdout
    assert detail(host, "old-2")["status"] == "waiting"  # still: nothing ran it meanwhile
    assert host.stop() == 0

    deploy.configure("OrdersV2", ["OrdersV1"])  # the code returns
    host = deploy.serve(hosts)
    resumed = wait_status(host, "old-2", "complete")
    assert resumed["output"]["class"] == "OrdersV1" and resumed["output"]["go"] == "late"
    assert resumed["blocked"] is None


def test_instances_without_code_take_no_slot_of_a_limited_workflow(
    deploy: Deploy, hosts: HostFactory
) -> None:
    """With ``max_concurrency = 1``, v1 instances made due on a host with only v2 code
    stay waiting, blocked by the missing code even while the limit is reached too; the
    limited claim never takes them, so they hold no slot: v2 instances run one at a time
    past them. They finish once the v1 code is back."""
    limit = ["max_concurrency = 1"]
    deploy.configure("OrdersV1", workflow=limit)
    host = deploy.serve(hosts)
    old = ("old-1", "old-2")
    for id in old:
        create(host, id)
        at_the_wait(host, id)
    assert host.stop() == 0

    deploy.configure("OrdersV2Held", workflow=limit)
    host = deploy.serve(hosts)
    for id in old:
        go(host, id, "late")  # due now, on a host without their code
    create(host, "new-1")
    wait_status(host, "new-1", "running")  # holds the one slot until released
    create(host, "new-2")

    def limited() -> Any:
        found = detail(host, "new-2")
        return found if found["blocked"] == "concurrency limit 1 reached" else None

    assert eventually_sync(limited, timeout=30)["status"] == "queued"
    for id in old:  # the limit is reached too, but no code comes first
        assert (detail(host, id)["status"], detail(host, id)["blocked"]) == (
            "waiting",
            NO_CODE_V1,
        )
    (deploy.project / "release").touch()
    for id in ("new-1", "new-2"):
        at_the_wait(host, id)
        go(host, id, "ship")
        assert wait_status(host, id, "complete")["output"]["version"] == "v2"
    for id in old:
        found = detail(host, id)
        assert (found["status"], found["blocked"]) == ("waiting", NO_CODE_V1)
    assert "no code for version" not in host.output()  # never claimed, never handed back
    assert host.stop() == 0

    deploy.configure("OrdersV2", ["OrdersV1"], workflow=limit)
    host = deploy.serve(hosts)
    for id in old:
        finished = wait_status(host, id, "complete")
        assert finished["output"]["class"] == "OrdersV1" and finished["output"]["go"] == "late"


def test_config_errors_name_the_classes(deploy: Deploy, hosts: HostFactory) -> None:
    """Two classes with one version, or a previous class without one, stop the host at
    start with a message naming them."""
    deploy.configure("OrdersV2", ["OrdersV2Twin"])
    host = deploy.serve(hosts, wait=False)
    assert host.proc.wait(60) != 0
    assert "classes OrdersV2 and OrdersV2Twin both have version 'v2'" in host.output()
    deploy.configure("OrdersV2", ["Unversioned"])
    host = deploy.serve(hosts, wait=False)
    assert host.proc.wait(60) != 0
    assert "previous class Unversioned has no version" in host.output()


def check(deploy: Deploy, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = deploy.cli("check", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_check_judges_changes_while_a_host_serves(deploy: Deploy, hosts: HostFactory) -> None:
    """``durableflow check`` replays in-flight histories against changed code beside a
    serving host: a step appended is ok; reordered, renamed, removed and raising code is
    reported with where it diverges and exits 1; a version without code is no_code."""
    deploy.configure("OrdersV1")
    host = deploy.serve(hosts)
    for id in ("c-1", "c-2"):
        create(host, id)
        at_the_wait(host, id)
    create(host, "c-done")
    at_the_wait(host, "c-done")
    go(host, "c-done", "x")
    wait_status(host, "c-done", "complete")

    deploy.configure("Appended")
    code, results = check(deploy)
    assert code == 0
    assert sorted(r["id"] for r in results) == ["c-1", "c-2"]  # finished ones are skipped
    assert {(r["status"], r["version"], r["detail"]) for r in results} == {("ok", "v1", None)}
    code, results = check(deploy, "--include-finished", "5")
    assert code == 0 and sorted(r["id"] for r in results) == ["c-1", "c-2", "c-done"]

    expected = {
        "Reordered": (
            "diverges",
            "run() got no further, but the history goes on with do step 'charge' (#1)",
        ),
        "Renamed": (
            "diverges",
            "expected do step 'reserve' (#1) but found do step 'reserve stock' (#1)",
        ),
        "NoSleep": (
            "diverges",
            "run() got no further, but the history goes on with sleep step 'cool' (#1)",
        ),
        "Raises": ("fails", "RuntimeError: cannot read 'charged by OrdersV1' (at "),
    }
    for class_name, (status, text) in expected.items():
        deploy.configure(class_name)
        code, results = check(deploy)
        assert code == 1, class_name
        assert [r["status"] for r in results] == [status, status], (class_name, results)
        assert text in results[0]["detail"], (class_name, results[0]["detail"])
        if status == "fails":
            assert "app.py" in results[0]["detail"]  # the last frame of the traceback

    deploy.configure("OrdersV2")
    code, results = check(deploy, "--workflow", "orders")
    assert code == 1 and {r["status"] for r in results} == {"no_code"}
    assert results[0]["detail"] == NO_CODE_V1
    human = deploy.cli("check")
    assert human.returncode == 1
    assert "orders/c-1 (version 'v1'): no_code" in human.stdout
    assert "checked 2 instance(s): 0 ok" in human.stdout

    # the host served throughout, and its instances are as they were
    assert detail(host, "c-1")["status"] == "waiting"
    go(host, "c-1", "y")
    assert wait_status(host, "c-1", "complete")["output"]["go"] == "y"


def test_serve_check_refuses_or_warns(deploy: Deploy, hosts: HostFactory) -> None:
    """``serve --check`` (refuse) exits 1 before serving when in-flight instances would
    not replay; ``warn`` serves and logs each of them."""
    deploy.configure("OrdersV1")
    host = deploy.serve(hosts)
    create(host, "s-1")
    at_the_wait(host, "s-1")
    assert host.stop() == 0

    deploy.configure("Renamed")
    refused = deploy.serve(hosts, "--check", wait=False)
    assert refused.proc.wait(60) == 1
    assert "1 in-flight instance(s) would not replay on this code" in refused.output()
    assert "orders/s-1 (version 'v1'): diverges" in refused.output()

    deploy.configure("Renamed", check="warn")
    warned = deploy.serve(hosts)  # serves at once; the check runs beside it
    eventually_sync(
        lambda: "check: orders/s-1 (version 'v1'): diverges" in warned.output(),
        timeout=30,
        message="the start's check warns of s-1",
    )
    assert warned.stop() == 0

    deploy.configure("OrdersV1", check="refuse")
    deploy.serve(hosts)  # nothing diverges: it serves


def test_an_exported_history_replays_in_a_test_suite(
    deploy: Deploy, hosts: HostFactory, tmp_path: Path
) -> None:
    """``instances export`` writes a history that ``durableflow.testing.replay`` replays
    against a class: silently when it replays, with the engine's NonDeterminismError
    message when it diverges, with the code's own error when it raises."""
    deploy.configure("OrdersV1")
    host = deploy.serve(hosts)
    create(host, "e-1")
    at_the_wait(host, "e-1")
    exported = run_cli("instances", "export", "orders", "e-1", "--url", host.url)
    assert exported.returncode == 0, exported.stderr
    history = tmp_path / "e-1.json"
    history.write_text(exported.stdout)

    from tests.integration.versions_project import app

    replay(app.OrdersV1, history)
    replay(app.Appended, json.loads(exported.stdout))
    deploy.configure("Renamed")
    _, results = check(deploy)
    with pytest.raises(NonDeterminismError) as raised:
        replay(app.Renamed, history)
    assert str(raised.value) == results[0]["detail"]  # the check's, and the engine's
    with pytest.raises(RuntimeError, match="cannot read"):
        replay(app.Raises, history)
    with pytest.raises(ValidationError, match="recorded at version 'v1'"):
        replay(app.OrdersV2, history)
    with pytest.raises(ValidationError, match="not an exported history"):
        replay(app.OrdersV1, {"steps": []})

    assert host.stop() == 0
    host = deploy.serve(hosts)  # the diverging code deployed after all
    go(host, "e-1", "z")
    failed = wait_status(host, "e-1", "errored")
    assert failed["error"] == {"name": "NonDeterminismError", "message": results[0]["detail"]}


def test_old_and_new_hosts_on_postgres_run_only_their_versions(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """A rolling deploy: a host with only v1 code and one with only v2 code share a
    PostgreSQL store; each instance runs on the host with its version's code, whichever
    host hears of it, and v1 instances wait, blocked, while no v1 host is up."""
    require_postgres(_pg("SELECT 1"))
    schema = f"rolling_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    storage = f"{PG_DSN}{separator}schema={schema}"
    try:
        old = Deploy(copy_project(tmp_path / "old", PROJECT), storage)
        new = Deploy(copy_project(tmp_path / "new", PROJECT), storage)
        old.configure("OrdersV1")
        new.configure("OrdersV2")
        old_host = old.serve(hosts)
        new_host = new.serve(hosts)
        v1 = [f"v1-{n}" for n in range(8)]
        v2 = [f"v2-{n}" for n in range(8)]
        for id in v1:
            create(old_host, id)
        for id in v2:
            create(new_host, id)
        for id in v1 + v2:
            at_the_wait(new_host, id)
        for id in v1[:4] + v2:  # every event through the host without v1 code
            go(new_host, id, "now")
        for id in v1[:4] + v2:
            wait_status(old_host, id, "complete")
        assert old_host.stop() == 0
        for id in v1[4:]:
            go(new_host, id, "later")
        create(new_host, "v2-late")
        at_the_wait(new_host, "v2-late")
        for id in v1[4:]:
            assert detail(new_host, id)["status"] == "waiting"
            assert detail(new_host, id)["blocked"] == NO_CODE_V1
        old_host = old.serve(hosts)
        for id in v1[4:]:
            wait_status(new_host, id, "complete")
        ran_on: dict[str, set[str]] = {"v1": set(), "v2": set()}
        for id in v1 + v2:
            found = detail(new_host, id)
            version = found["version"]
            assert found["output"]["class"] == ("OrdersV1" if version == "v1" else "OrdersV2")
            ran_on[version] |= {s["host"] for s in found["steps"] if s["type"] == "do"}
        assert ran_on["v1"] and ran_on["v2"] and not ran_on["v1"] & ran_on["v2"]
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Refuses(WorkflowEntrypoint[Any, Any]):
    """Errors after its first step, as recorded."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("look", self.look)
        raise ValueError("out of stock")

    async def look(self) -> int:
        return 0


class RefusesOtherwise(Refuses):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("look", self.look)
        raise ValueError("no longer sold")


async def test_an_errored_history_replays_when_the_code_raises_the_same_error() -> None:
    """A finished instance that errored replays under code that ends it with the error it
    recorded; another error is reported as the code's."""
    async with WorkflowTestEnvironment({"refuses": Refuses}) as env:
        await env.workflow(Refuses).create(id="r-1")
        await env.introspect("r-1").wait_for_status("errored")
        history = await env.export_history("r-1")
    replay(Refuses, history)
    with pytest.raises(ValueError, match="no longer sold"):
        replay(RefusesOtherwise, history)


class LogsAtTheEnd(Refuses):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("look", self.look)
        step.log("looked", where="run")  # past the end of its history on a replay
        return "done"


async def test_a_replay_writes_no_log() -> None:
    """``step.log`` in ``run()`` past the end of the history is not written by a replay (a
    check reads the store, it never writes to it)."""
    async with WorkflowTestEnvironment({"logs": LogsAtTheEnd}) as env:
        await env.workflow(LogsAtTheEnd).create(id="l-1")
        await env.introspect("l-1").wait_for_status("complete")
        history = await env.export_history("l-1")
    history["status"], history["steps"] = "waiting", history["steps"][:1]
    replay(LogsAtTheEnd, history)


class Hooked(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        webhook = await step.create_webhook("payment", verify=HmacSignature.github("s3cret"))
        request = await webhook.wait(timeout="1 hour")
        return request.body


async def test_a_webhook_waiting_for_its_request_replays() -> None:
    """An instance waiting on a verified webhook replays: the webhook's step comes from the
    history and its verifier is remembered, as on a host."""
    async with WorkflowTestEnvironment({"hooked": Hooked}) as env:
        await env.workflow(Hooked).create(id="h-1")
        await env.introspect("h-1").wait_for_status("waiting")
        history = await env.export_history("h-1")
    replay(Hooked, history)
