"""Schedules through real hosts: one instance per tick with two hosts on one PostgreSQL,
catch-up after downtime, and pause/resume stored for every host (CLI, HTTP, Client)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

import durableflow
from tests.helpers import eventually

from .conftest import HostFactory, HostProcess, run_cli
from .flow import Project, api_of, flow_project
from .test_dashboard import needs_chromium
from .test_dashboard import page as page  # the browser page fixture

pytestmark = pytest.mark.slow

EVERY_SECOND = """
[[workflows]]
name = "recorded"
class_name = "RecordedWorkflow"

[[schedules]]
name = "tick"
workflow = "recorded"
cron = "* * * * * *"
params = {{ customer = "cron" }}
catch_up = "{catch_up}"
"""

_ID = re.compile(r"tick-(\d{14})")


def _tick_of(id: str) -> int:
    match = _ID.fullmatch(id)
    assert match, id
    return int(datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp())


async def _ticks(host: HostProcess) -> list[int]:
    """The tick of every instance the schedule started, oldest first."""
    async with api_of(host) as api:
        page = await api.ok("GET", "/api/workflows/recorded/instances?limit=1000")
    return sorted(_tick_of(i["id"]) for i in page["instances"])


async def _wait_ticks(host: HostProcess, count: int, timeout: float = 30.0) -> list[int]:
    async def enough() -> list[int] | None:
        ticks = await _ticks(host)
        return ticks if len(ticks) >= count else None

    return await eventually(enough, timeout=timeout, interval=0.2, message=f"{count} ticks")


async def _wait_ticks_after(host: HostProcess, moment: float, timeout: float = 30.0) -> list[int]:
    async def reached() -> list[int] | None:
        ticks = await _ticks(host)
        return ticks if ticks and ticks[-1] > moment else None

    return await eventually(
        reached, timeout=timeout, interval=0.2, message=f"a tick after {moment}"
    )


async def _wait_seconds(seconds: float) -> None:
    """Let wall-clock time pass: the schedule's ticks are what is being waited for."""
    until = time.time() + seconds
    await eventually(lambda: time.time() >= until, timeout=seconds + 5, interval=0.1)


def _one_per_tick(project: Project, ticks: list[int]) -> None:
    """Every second between the first and last tick has its instance, and each ran once."""
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), ticks
    starts = [line.id for line in project.lines() if line.what == "start"]
    assert len(starts) == len(set(starts)), starts


async def test_two_hosts_start_one_instance_per_tick(hosts: HostFactory, tmp_path: Path) -> None:
    """A schedule ticking every second on two hosts sharing PostgreSQL for 10 s: exactly
    one instance per tick, named {name}-{YYYYMMDDHHMMSS}, each run once."""
    with flow_project(tmp_path, "postgres", EVERY_SECOND.format(catch_up="latest")) as project:
        first = project.start(hosts)
        project.start(hosts)  # the second host
        before = await _ticks(first)
        await _wait_seconds(10)
        ticks = await _wait_ticks(first, len(before) + 9)
        await eventually(
            lambda: (
                {f"tick-{datetime.fromtimestamp(t, UTC):%Y%m%d%H%M%S}" for t in ticks}
                <= project.ended()
            ),
            timeout=30,
            message="every tick's step to run",
        )
        _one_per_tick(project, ticks)
        assert ticks[-1] - ticks[0] >= 9


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("catch_up", ["all", "latest", "none"])
async def test_catch_up_after_a_stopped_host(
    hosts: HostFactory, tmp_path: Path, store: str, catch_up: str
) -> None:
    """A host stopped for 3 s: on restart, catch_up = "all" starts every missed tick,
    "latest" the last one only, "none" none; then ticking goes on."""
    with flow_project(tmp_path, store, EVERY_SECOND.format(catch_up=catch_up)) as project:
        host = project.start(hosts)
        await _wait_ticks(host, 2)
        assert host.stop() == 0
        stopped_at = time.time()
        await _wait_seconds(3.5)
        launched_at = time.time()
        again = project.start(hosts)
        ticks = await _ticks(again)
        await _wait_ticks(again, len(ticks) + 2)
        # the catch-up runs before the regular ticks: once a tick after the restart shows,
        # whatever the catch-up starts has been started
        after = await _wait_ticks_after(again, launched_at + 1)
        # ticks while no host ran at all
        downtime = [t for t in after if stopped_at < t < launched_at]
        caught_up = again.output().count("caught up with tick-")
        if catch_up == "all":
            _one_per_tick(project, after)
            assert len(downtime) >= 3
            assert caught_up >= len(downtime)
        elif catch_up == "latest":
            assert caught_up == 1
            assert len(downtime) <= 1
            assert after != list(range(after[0], after[-1] + 1))
        else:
            assert caught_up == 0
            assert downtime == []


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_pause_and_resume_hold_for_every_host(
    hosts: HostFactory, tmp_path: Path, store: str
) -> None:
    """A schedule paused with the CLI starts nothing on any host until resumed over HTTP;
    GET /api/workflows lists it with its next instance, the Client sees the same."""
    with flow_project(tmp_path, store, EVERY_SECOND.format(catch_up="all")) as project:
        count = 2 if store == "postgres" else 1
        started = [project.start(hosts) for _ in range(count)]
        host = started[-1]
        await _wait_ticks(host, 1)
        listing = host.get_json("/api/workflows")["workflows"]
        [schedule] = next(w for w in listing if w["name"] == "recorded")["schedules"]
        assert schedule["cron"] == "* * * * * *"
        assert schedule["timezone"] == "UTC"
        assert schedule["paused"] is False
        assert schedule["next_instance"].endswith("Z")

        result = run_cli("schedules", "pause", "tick", "--url", started[0].url)
        assert result.returncode == 0, result.stderr
        paused_at = time.time()
        await _wait_seconds(1.5)  # a tick in flight when the pause landed may still start
        frozen = await _ticks(host)
        await _wait_seconds(3)
        assert await _ticks(host) == frozen
        assert all(t <= paused_at + 1 for t in frozen)
        listed = run_cli("schedules", "list", "--url", host.url)
        assert re.search(r"tick\s+recorded\s+\* \* \* \* \* \*\s+UTC\s+paused", listed.stdout)
        described = run_cli("workflows", "describe", "recorded", "--url", host.url)
        assert "schedule  tick: * * * * * * (UTC), paused" in described.stdout

        async with durableflow.Client(host.url) as client:
            [info] = await client.schedules()
            assert info["paused"] is True and info["next_instance"] is None
            resumed = await client.resume_schedule("tick")
            assert resumed["paused"] is False
            with pytest.raises(durableflow.NotFoundError):
                await client.pause_schedule("no-such-schedule")
        after = await _wait_ticks(host, len(frozen) + 2)
        # resuming skips what was missed while paused
        assert [t for t in after if paused_at + 1.5 < t < paused_at + 4.5] == []


async def test_schedule_config_errors(tmp_path: Path) -> None:
    """A bad cron, time zone or params is refused at start, naming the schedule."""
    base = '[[workflows]]\nname = "recorded"\nclass_name = "RecordedWorkflow"\n\n'
    bad: dict[str, Any] = {
        'cron = "61 * * * *"': "schedule 'nightly': cron '61 * * * *' is invalid",
        'cron = "* * *"': "must have five fields",
        'cron = "0 9 * * *"\ntimezone = "Mars/Olympus"': "timezone 'Mars/Olympus' is not",
        'cron = "0 9 * * *"\nparams = { hold = "long" }': "schedule 'nightly': invalid params",
    }
    for n, (lines, message) in enumerate(bad.items()):
        config = f'{base}[[schedules]]\nname = "nightly"\nworkflow = "recorded"\n{lines}\n'
        with flow_project(tmp_path / str(n), "sqlite", config) as project:
            result = run_cli("serve", "--port", "0", cwd=project.path)
            assert result.returncode != 0
            assert message in result.stderr + result.stdout, result.stderr


@needs_chromium
async def test_dashboard_shows_schedules_and_why_an_instance_waits(
    hosts: HostFactory, tmp_path: Path, page: Page
) -> None:
    """The workflow page shows its schedule and next instance; a queued instance's page
    says which limit holds it back."""
    config = EVERY_SECOND.format(catch_up="none").replace(
        'class_name = "RecordedWorkflow"\n',
        'class_name = "RecordedWorkflow"\nmax_concurrency = 1\n',
        1,
    )
    with flow_project(tmp_path, "sqlite", config) as project:
        host = project.start(hosts)
        async with api_of(host) as api:
            path = "/api/workflows/recorded/instances"
            await api.ok("POST", path, {"id": "busy", "params": {"hold": 30}}, 201)
            await eventually(project.lines, message="the busy one to start")
            await api.ok("POST", path, {"id": "waits", "params": {}}, 201)
        await page.goto(host.url + "/dashboard#/workflows/recorded")
        await expect(page.locator("#schedules")).to_contain_text("tick: * * * * * * UTC, next")
        await page.goto(host.url + "/dashboard#/workflows/recorded/instances/waits")
        await expect(page.locator("#blocked")).to_have_text("concurrency limit 1 reached")
        await page.goto(host.url + "/dashboard#/")
        await expect(page.locator("main")).to_contain_text("tick: * * * * * * UTC")
