"""``GET /metrics`` of a real host after a workload, parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from durableflow_runtime.engine import Engine
from durableflow_runtime.metrics import Metrics
from durableflow_runtime.server import ApiSettings, build_app
from durableflow_runtime.store.base import StepRow
from durableflow_runtime.store.sqlite import SqliteStore

from .conftest import PG_DSN, HostFactory, _pg, copy_project, require_postgres

TOKEN = "metrics-test-token"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_metrics_after_a_workload(store: str, hosts: HostFactory, tmp_path: Path) -> None:
    """After instances that complete, retry, fail and sleep, /metrics (behind the token)
    counts each of them, by workflow, status and step."""
    project = copy_project(tmp_path / "project")
    args: list[str] = []
    schema = f"metrics_{os.getpid()}_{time.monotonic_ns()}"
    if store == "postgres":
        require_postgres(await asyncio.to_thread(_pg, "SELECT 1"))
        separator = "&" if "?" in PG_DSN else "?"
        args = ["--storage", f"{PG_DSN}{separator}schema={schema}"]
    try:
        host = hosts.start(project, *args, env={"DURABLEFLOW_TOKEN": TOKEN}, token=TOKEN)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(base_url=host.url, headers=auth) as session:

            async def create(workflow: str, params: Any = None) -> str:
                async with session.post(
                    f"/api/workflows/{workflow}/instances", json={"params": params}
                ) as response:
                    assert response.status == 201
                    return str((await response.json())["id"])

            async def status(workflow: str, id: str) -> str:
                async with session.get(f"/api/workflows/{workflow}/instances/{id}") as response:
                    return str((await response.json())["status"])

            echoes = [await create("echo", {"name": n}) for n in ("a", "b")]
            flaky = await create("flaky")
            sleeper = await create("sleeper", {"ms": 300})
            deadline = time.monotonic() + 20
            expected = [("echo", i, "complete") for i in echoes]
            expected += [("flaky", flaky, "errored"), ("sleeper", sleeper, "complete")]
            for workflow, id, final in expected:
                while (got := await status(workflow, id)) != final:
                    assert time.monotonic() < deadline, (workflow, id, got)
                    await _pause()

            async with (
                aiohttp.ClientSession(base_url=host.url) as anonymous,
                anonymous.get("/metrics") as response,
            ):
                assert response.status == 401
            async with session.get("/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                text = await response.text()
        samples = _samples(text)

        def v(name: str, **labels: str) -> float | None:
            return _value(samples, name, **labels)

        assert v("durableflow_instances", workflow="echo", status="complete") == 2
        assert v("durableflow_instances", workflow="flaky", status="errored") == 1
        assert v("durableflow_instances", workflow="sleeper", status="complete") == 1
        assert v("durableflow_queue_depth", workflow="echo") == 0
        assert v("durableflow_instances_created_total", workflow="echo") == 2
        assert v("durableflow_instances_finished_total", workflow="echo", status="complete") == 2
        assert v("durableflow_instances_finished_total", workflow="flaky", status="errored") == 1
        # flaky: two attempts (limit 1), both failed, one of them retried
        assert v("durableflow_step_attempts_total", workflow="flaky", step="fail") == 2
        assert v("durableflow_step_failures_total", workflow="flaky", step="fail") == 2
        assert v("durableflow_step_retries_total", workflow="flaky", step="fail") == 1
        assert v("durableflow_step_attempts_total", workflow="echo", step="greet") == 2
        assert v("durableflow_step_failures_total", workflow="echo", step="greet") == 0
        assert v("durableflow_step_duration_seconds_count", workflow="echo", step="greet") == 2
        assert v("durableflow_step_duration_seconds_count", workflow="sleeper", step="after") == 1
        # the sleeper's wake-up was claimed after its wake time
        lateness = v("durableflow_wakeup_lateness_seconds_count", workflow="sleeper")
        assert lateness is not None and lateness >= 1
        claims = v("durableflow_claim_seconds_count")
        assert claims is not None and claims >= 4
        commits = v("durableflow_commit_seconds_count")
        assert commits is not None and commits >= 9
        assert any(
            name == "durableflow_build_info" and ("version", "0.1.0") in labels
            for name, labels in samples
        )
        if store == "postgres":
            assert v("durableflow_leases_lost_total") == 0
            renewals = v("durableflow_lease_renewals_total")
            assert renewals is not None and renewals >= 0
        else:
            assert v("durableflow_lease_renewals_total") is None
    finally:
        if store == "postgres":
            await asyncio.to_thread(_pg, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _pause() -> None:
    await asyncio.sleep(0.05)


def test_step_names_over_the_limit_fold_into_other(tmp_path: Path) -> None:
    """Step names beyond ``step_name_limit`` per workflow are counted under ``other``."""
    engine = Engine(SqliteStore(tmp_path / "unused.db"), [])
    metrics = Metrics(engine, step_name_limit=2)
    for name in ("a", "b", "c", "d", "a"):
        row = StepRow(name, 1, 0, "do", "complete", attempts=1)
        row.attempt_log.append({"started_at": 1.0, "ended_at": 1.5, "error": None})
        metrics.step_ended("wf", "i", row, None)
    samples = _samples(generate_latest(metrics.registry).decode())
    attempts = {
        dict(labels)["step"]: value
        for (name, labels), value in samples.items()
        if name == "durableflow_step_attempts_total"
    }
    assert attempts == {"a": 2, "b": 1, "other": 2}
    assert _value(samples, "durableflow_step_duration_seconds_sum", workflow="wf", step="a") == 1.0


def test_an_app_factory_with_its_own_metrics_route_keeps_it(tmp_path: Path) -> None:
    """A user app that already serves /metrics keeps its route; the host adds none."""

    async def theirs(request: web.Request) -> web.Response:
        return web.Response(text="theirs")

    user_app = web.Application()
    user_app.router.add_get("/metrics", theirs)
    engine = Engine(SqliteStore(tmp_path / "unused.db"), [])
    engine.observer = Metrics(engine)
    app = build_app(engine, ApiSettings(), app=user_app)
    handlers = [
        route.handler
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical == "/metrics"
    ]
    assert theirs in handlers and len(handlers) == 2  # GET and the HEAD aiohttp adds
