"""Flow control through real hosts: concurrency, per-key concurrency, rate limits and
priority, observed from outside (the workflow's step writes its start and end times to a
file), on SQLite and PostgreSQL, on one host and on two sharing a database."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

import durableflow
from tests.helpers import eventually

from .conftest import HostFactory, run_cli
from .flow import Line, Project, api_of, flow_project, most_at_once

pytestmark = pytest.mark.slow

LIMITED = """
[[workflows]]
name = "limited"
class_name = "RecordedWorkflow"
max_concurrency = 3
"""

KEYED = """
[[workflows]]
name = "keyed"
class_name = "RecordedWorkflow"
concurrency_key = "params.customer"
key_concurrency = 1
"""

RATED = """
[[workflows]]
name = "rated"
class_name = "RecordedWorkflow"
rate_limit = "4/second"
"""

SETUPS = [("sqlite", 1), ("postgres", 1), ("postgres", 2)]


async def _create(api: Any, workflow: str, count: int, **body: Any) -> list[str]:
    ids = []
    for n in range(count):
        answer = await api.ok(
            "POST", f"/api/workflows/{workflow}/instances", {"id": f"{workflow}-{n}", **body}, 201
        )
        ids.append(answer["id"])
    return ids


async def _all_ended(project: Project, ids: list[str], timeout: float = 60.0) -> list[Line]:
    await eventually(
        lambda: set(ids) <= project.ended(), timeout=timeout, message=f"{len(ids)} steps to end"
    )
    return project.lines()


async def _seen_blocked(api: Any, workflow: str, ids: list[str], reason: str) -> str:
    """The ``blocked`` of some queued instance, once one says ``reason``."""

    async def look() -> str | None:
        for id in ids:
            detail = await api.ok("GET", f"/api/workflows/{workflow}/instances/{id}")
            if detail["status"] == "queued" and reason in (detail["blocked"] or ""):
                return str(detail["blocked"])
        return None

    return await eventually(look, timeout=30, message=f"a queued {workflow} blocked by {reason}")


@pytest.mark.parametrize(("store", "count"), SETUPS, ids=["sqlite", "postgres", "postgres-2"])
async def test_max_concurrency_is_never_exceeded(
    hosts: HostFactory, tmp_path: Path, store: str, count: int
) -> None:
    """With max_concurrency = 3, at most 3 steps ever run at once, on one host or two, and
    the queued instances say why they wait."""
    with flow_project(tmp_path, store, LIMITED) as project:
        started = [project.start(hosts) for _ in range(count)]
        async with api_of(started[0]) as api:
            ids = await _create(api, "limited", 12, params={"hold": 0.4})
            blocked = await _seen_blocked(api, "limited", ids, "concurrency limit")
            assert blocked == "concurrency limit 3 reached"
            lines = await _all_ended(project, ids)
        assert most_at_once(lines) <= 3
        assert sorted({line.id for line in lines}) == sorted(ids)


@pytest.mark.parametrize(("store", "count"), SETUPS, ids=["sqlite", "postgres", "postgres-2"])
async def test_key_concurrency_holds_per_key(
    hosts: HostFactory, tmp_path: Path, store: str, count: int
) -> None:
    """key_concurrency = 1 runs one instance per customer at a time, customers side by
    side; create(concurrency_key=...) puts an instance under another key than its params."""
    with flow_project(tmp_path, store, KEYED) as project:
        started = [project.start(hosts) for _ in range(count)]
        async with api_of(started[0]) as api:
            ids = []
            for n in range(8):
                customer = "ann" if n % 2 else "bob"
                body = {"id": f"k-{n}", "params": {"customer": customer, "hold": 0.3}}
                ids.append(
                    (await api.ok("POST", "/api/workflows/keyed/instances", body, 201))["id"]
                )
            # params say "bob", the explicit key says "ann": it counts under "ann"
            async with durableflow.Client(started[-1].url) as client:
                odd = await client.workflow("keyed").create(
                    id="k-odd", params={"customer": "bob", "hold": 0.3}, concurrency_key="ann"
                )
            ids.append(odd.id)
            detail = await api.ok("GET", "/api/workflows/keyed/instances/k-odd")
            assert detail["concurrency_key"] == "ann"
            lines = await _all_ended(project, ids)
        key_of = {id: "ann" for id in ids if id == "k-odd"}
        for line in lines:
            key_of.setdefault(line.id, line.customer)
        for key in ("ann", "bob"):
            assert most_at_once([line for line in lines if key_of[line.id] == key]) == 1


@pytest.mark.parametrize(("store", "count"), SETUPS, ids=["sqlite", "postgres", "postgres-2"])
async def test_rate_limit_spaces_the_starts(
    hosts: HostFactory, tmp_path: Path, store: str, count: int
) -> None:
    """rate_limit = "4/second": no 5 instances start within one second, across hosts; the
    ones over the limit stay queued, blocked by the rate limit, and all run in the end."""
    with flow_project(tmp_path, store, RATED) as project:
        started = [project.start(hosts) for _ in range(count)]
        async with api_of(started[0]) as api:
            ids = await _create(api, "rated", 14, params={})
            blocked = await _seen_blocked(api, "rated", ids, "rate limit")
            assert blocked == "rate limit 4/second reached"
            await _all_ended(project, ids)
            starts = []
            for id in ids:
                detail = await api.ok("GET", f"/api/workflows/rated/instances/{id}")
                starts.append(durableflow_time(detail["started_at"]))
        starts.sort()
        for first, fifth in zip(starts, starts[4:], strict=False):
            assert fifth - first >= 1.0 - 1e-3, starts


def durableflow_time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_priority_orders_the_queue(hosts: HostFactory, tmp_path: Path, store: str) -> None:
    """Behind a limit, a queued instance created with a higher priority starts before
    older ones of lower priority; priority out of 0-100 is a 400."""
    config = LIMITED.replace("max_concurrency = 3", "max_concurrency = 1")
    with flow_project(tmp_path, store, config) as project:
        host = project.start(hosts)
        async with api_of(host) as api:
            path = "/api/workflows/limited/instances"
            await api.ok("POST", path, {"id": "first", "params": {"hold": 1.0}}, 201)
            await eventually(lambda: project.lines(), message="the first to start")
            for n in range(3):
                await api.ok("POST", path, {"id": f"low-{n}", "params": {"hold": 0}}, 201)
            await api.ok("POST", path, {"id": "high", "params": {"hold": 0}, "priority": 90}, 201)
            status, answer = await api.call("POST", path, {"priority": 101})
            assert status == 400
            assert "priority must be an integer from 0 to 100" in answer["error"]["message"]
            detail = await api.ok("GET", f"{path}/high")
            assert detail["priority"] == 90
            lines = await _all_ended(project, ["first", "high", "low-0", "low-1", "low-2"])
        order = [line.id for line in lines if line.what == "start"]
        assert order == ["first", "high", "low-0", "low-1", "low-2"]


HOOKED = """
[[workflows]]
name = "hooked"
class_name = "HookedWorkflow"
max_concurrency = 1
"""


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_hook_waits_hold_no_slot(hosts: HostFactory, tmp_path: Path, store: str) -> None:
    """Instances waiting on a hook do not count as executing: with max_concurrency = 1,
    three instances all reach their hook wait, are not blocked, and each completes when
    its token is resumed."""
    with flow_project(tmp_path, store, HOOKED) as project:
        host = project.start(hosts)
        async with api_of(host) as api:
            ids = await _create(api, "hooked", 3, params={})
            path = "/api/workflows/hooked/instances"

            async def all_waiting() -> bool:
                for id in ids:
                    detail = await api.ok("GET", f"{path}/{id}")
                    if detail["status"] != "waiting":
                        return False
                    assert detail["blocked"] is None
                return True

            await eventually(all_waiting, timeout=30, message="three instances on their hook")
            for id in ids:
                answer = await api.ok("POST", f"/api/hooks/go-{id}", {"n": id}, 202)
                assert answer == {"workflow": "hooked", "instance_id": id}

            async def all_complete() -> bool:
                details = [await api.ok("GET", f"{path}/{id}") for id in ids]
                return all(d["status"] == "complete" for d in details)

            await eventually(all_complete, timeout=30, message="the resumed instances to end")
            for id in ids:
                assert (await api.ok("GET", f"{path}/{id}"))["output"] == {"n": id}


async def test_limits_hold_across_a_kill_9(hosts: HostFactory, tmp_path: Path) -> None:
    """A host killed with kill -9 while limited instances run: the next host resumes them
    and the limit still holds over both lives."""
    with flow_project(tmp_path, "sqlite", LIMITED.replace("= 3", "= 2")) as project:
        host = project.start(hosts)
        async with api_of(host) as api:
            ids = await _create(api, "limited", 6, params={"hold": 0.8})
        await eventually(lambda: len(project.lines()) >= 2, message="two steps to start")
        host.stop(signal.SIGKILL)
        killed_at = time.time()
        again = project.start(hosts)
        async with api_of(again) as api:
            lines = await _all_ended(project, ids)
            for id in ids:
                assert (await api.ok("GET", f"/api/workflows/limited/instances/{id}"))[
                    "status"
                ] == "complete"
        assert most_at_once(lines, until=killed_at) <= 2


async def test_flow_config_errors_name_the_workflow(tmp_path: Path) -> None:
    """A bad rate_limit or a concurrency_key without key_concurrency is refused at start,
    naming the workflow."""
    bad = {
        'rate_limit = "4/fortnight"': "rate_limit must be",
        'concurrency_key = "params.customer"': "concurrency_key and key_concurrency go together",
        "max_concurrency = 0": "max_concurrency must be a positive integer",
    }
    for line, message in bad.items():
        config = f'[[workflows]]\nname = "w"\nclass_name = "RecordedWorkflow"\n{line}\n'
        with flow_project(tmp_path / str(abs(hash(line))), "sqlite", config) as project:
            result = run_cli("serve", "--port", "0", cwd=project.path)
            assert result.returncode != 0
            assert message in result.stderr + result.stdout
            assert "workflow 'w'" in result.stderr + result.stdout
