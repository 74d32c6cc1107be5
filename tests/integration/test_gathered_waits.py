"""Waits awaited together: every pending sleep and event wait registers at once, the
instance wakes at the earliest, races leave the loser cancelled, and all of it survives
restarts and a kill -9, in the testing kit and on real hosts over both stores."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import aiohttp
import pytest

from durableflow import StepConfigDict, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.testing import WorkflowTestEnvironment
from tests.helpers import eventually
from tests.integration.conftest import (
    Api,
    HostFactory,
    HostProcess,
    _pg,
    copy_project,
    project_host,
    storage_args,
)

WAITS_PROJECT = Path(__file__).with_name("waits_project")


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("waits_project_app", WAITS_PROJECT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


APP = _load_app()
GatheredWaits: type[WorkflowEntrypoint[Any, Any]] = APP.GatheredWaits
Approval: type[WorkflowEntrypoint[Any, Any]] = APP.Approval


def _t(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def _steps(detail: dict[str, Any] | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    steps = detail["steps"] if isinstance(detail, dict) else detail
    return {s["name"]: s for s in steps}


# --- the testing kit (virtual time) ------------------------------------------------------


async def test_two_gathered_sleeps_end_at_the_longest_in_the_kit() -> None:
    """Two sleeps in a gather start together and the instance ends at the longer one."""
    async with WorkflowTestEnvironment({"gathered": GatheredWaits}) as env:
        probe = env.introspect("two")
        start = env.now()
        await env.workflow(GatheredWaits).create(id="two", params={"sleeps": [5000, 2000]})
        await probe.wait_for_status("complete")
        assert env.now() - start == timedelta(seconds=5)
        steps = _steps(await probe.get_steps())
        long, short = steps["sleep-0"], steps["sleep-1"]
        assert long["started_at"] == short["started_at"]
        began = _t(long["started_at"])
        assert _t(short["ended_at"]) - began == timedelta(seconds=2)
        assert _t(short["wake_at"]) - began == timedelta(seconds=2)
        assert _t(long["ended_at"]) - began == timedelta(seconds=5)
        assert _t(long["wake_at"]) - began == timedelta(seconds=5)


async def test_ten_gathered_sleeps_end_at_the_longest_in_the_kit() -> None:
    """Ten sleeps in a gather each end at their own deadline; the instance at the longest."""
    minutes = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5]
    async with WorkflowTestEnvironment({"gathered": GatheredWaits}) as env:
        probe = env.introspect("ten")
        start = env.now()
        params = {"sleeps": [m * 60_000 for m in minutes]}
        await env.workflow(GatheredWaits).create(id="ten", params=params)
        await probe.wait_for_status("complete")
        assert env.now() - start == timedelta(minutes=10)
        steps = _steps(await probe.get_steps())
        began = {_t(steps[f"sleep-{n}"]["started_at"]) for n in range(10)}
        assert len(began) == 1
        [first] = began
        for n, m in enumerate(minutes):
            assert _t(steps[f"sleep-{n}"]["ended_at"]) - first == timedelta(minutes=m)


async def test_gathered_sleep_and_event_wait_where_the_event_arrives_first_in_the_kit() -> None:
    """The event wait resolves on arrival, the sleep keeps pending, and the instance, out of
    memory, wakes at the sleep's deadline."""
    async with WorkflowTestEnvironment({"gathered": GatheredWaits}) as env:
        probe = env.introspect("mixed")
        start = env.now()
        params = {"sleeps": [3_600_000], "events": ["go"], "timeout_ms": 86_400_000}
        instance = await env.workflow(GatheredWaits).create(id="mixed", params=params)
        await probe.wait_for_status("waiting")
        steps = _steps(await probe.get_steps())
        assert steps["sleep-0"]["status"] == steps["wait-go"]["status"] == "waiting"
        assert steps["sleep-0"]["started_at"] == steps["wait-go"]["started_at"]
        env.advance(timedelta(minutes=10))
        await instance.send_event(type="go", payload="now")
        await probe.wait_for_step_result("wait-go")
        await probe.wait_for_status("waiting")
        # white-box: the engine holds nothing of the instance while it waits
        runtime: Any = getattr(env, "_runtime_or_fail")()  # noqa: B009
        assert runtime.engine._active == {}
        row = await runtime.engine.store.get_instance("gathered", "mixed")
        steps = _steps(await probe.get_steps())
        assert steps["sleep-0"]["status"] == "waiting"
        assert _t(steps["wait-go"]["ended_at"]) - start == timedelta(minutes=10)
        assert row.run_at == pytest.approx(_t(steps["sleep-0"]["wake_at"]).timestamp(), abs=1e-3)
        status = await probe.wait_for_status("complete")
        assert status.output == ["now"]
        assert env.now() - start == timedelta(hours=1)


async def test_race_where_the_event_comes_first_cancels_the_sleep_in_the_kit() -> None:
    """An approval before the reminder is due wins the race; the reminder is recorded
    cancelled and never fires."""
    async with WorkflowTestEnvironment({"approval": Approval}) as env:
        probe = env.introspect("quick")
        params = {"remind_ms": 86_400_000, "give_up_ms": 7 * 86_400_000}
        instance = await env.workflow(Approval).create(id="quick", params=params)
        await probe.wait_for_status("waiting")
        env.advance(timedelta(hours=5))
        await instance.send_event(type="approved", payload="yes")
        status = await probe.wait_for_status("complete")
        assert status.output == "yes"
        steps = _steps(await probe.get_steps())
        assert steps["reminder"]["status"] == "cancelled"
        assert steps["reminder"]["wake_at"] is None
        assert "remind" not in steps
        env.advance(timedelta(days=2))
        assert (await instance.status()).status == "complete"


async def test_race_where_the_sleep_comes_first_reminds_then_takes_the_approval() -> None:
    """The reminder fires after a day while the approval wait, registered once, keeps
    pending across a restart and takes the event that comes later."""
    async with WorkflowTestEnvironment({"approval": Approval}) as env:
        probe = env.introspect("slow")
        start = env.now()
        params = {"remind_ms": 86_400_000, "give_up_ms": 7 * 86_400_000}
        instance = await env.workflow(Approval).create(id="slow", params=params)
        await probe.wait_for_step_result("remind")
        assert env.now() - start == timedelta(days=1)
        await env.restart()
        env.advance(timedelta(days=2))
        await instance.send_event(type="approved", payload="finally")
        status = await probe.wait_for_status("complete")
        assert status.output == "finally"
        steps = _steps(await probe.get_steps())
        assert [s["status"] for s in await probe.get_steps()] == ["complete"] * 3
        assert _t(steps["approval"]["ended_at"]) - start == timedelta(days=3)
        assert steps["approval"]["started_at"] == steps["reminder"]["started_at"]


async def test_no_approval_reminds_after_a_day_and_gives_up_after_a_week() -> None:
    """Without an event the reminder fires at one day and the wait times out at seven."""
    async with WorkflowTestEnvironment({"approval": Approval}) as env:
        probe = env.introspect("never")
        start = env.now()
        params = {"remind_ms": 86_400_000, "give_up_ms": 7 * 86_400_000}
        await env.workflow(Approval).create(id="never", params=params)
        status = await probe.wait_for_status("complete")
        assert status.output == "gave up"
        assert env.now() - start == timedelta(days=7)
        steps = _steps(await probe.get_steps())
        assert steps["approval"]["status"] == "failed"
        assert _t(steps["remind"]["started_at"]) - start == timedelta(days=1)


class Escalation(WorkflowEntrypoint[Any, Any]):
    """An ack race lost to a deadline; a later ack goes to a later wait."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        ack = asyncio.ensure_future(step.wait_for_event("ack", "ack", timeout="1 hour"))
        deadline = asyncio.ensure_future(step.sleep("deadline", "10 minutes"))
        done, _ = await asyncio.wait({ack, deadline}, return_when=asyncio.FIRST_COMPLETED)
        if ack in done:
            return "acked"
        ack.cancel()
        await step.sleep("cool down", "1 hour")
        late = await step.wait_for_event("late ack", "ack", timeout="1 day")
        return ["escalated", late.payload]


async def test_an_event_for_a_cancelled_wait_stays_buffered_for_a_later_wait() -> None:
    """A wait cancelled by the race never takes an event: one sent later waits, buffered,
    for the next wait of its type, across the replays in between."""
    async with WorkflowTestEnvironment({"escalation": Escalation}) as env:
        probe = env.introspect("e")
        start = env.now()
        instance = await env.workflow(Escalation).create(id="e")
        await probe.wait_for_step_result("deadline")
        await probe.wait_for_status("waiting")
        steps = _steps(await probe.get_steps())
        assert steps["ack"]["status"] == "cancelled"
        env.advance(timedelta(minutes=20))
        await instance.send_event(type="ack", payload="late")
        await probe.wait_for_status("waiting")
        assert _steps(await probe.get_steps())["ack"]["status"] == "cancelled"
        status = await probe.wait_for_status("complete")
        assert status.output == ["escalated", "late"]
        steps = _steps(await probe.get_steps())
        assert steps["ack"]["status"] == "cancelled"
        assert _t(steps["late ack"]["started_at"]) - start == timedelta(minutes=70)


class Reworked(WorkflowEntrypoint[Any, Any]):
    """Loses an ack race, then, in its second version, awaits the cancelled wait."""

    second_version: ClassVar[bool] = False

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        ack = asyncio.ensure_future(step.wait_for_event("ack", "ack", timeout="1 hour"))
        deadline = asyncio.ensure_future(step.sleep("deadline", "10 minutes"))
        await asyncio.wait({ack, deadline}, return_when=asyncio.FIRST_COMPLETED)
        if not Reworked.second_version:
            ack.cancel()
        await step.sleep("later", "1 hour")
        return (await ack).payload


async def test_awaiting_a_wait_an_earlier_run_cancelled_is_a_nondeterminism_error() -> None:
    """A cancelled wait is never resumed: code changed to await it fails the instance."""
    Reworked.second_version = False
    async with WorkflowTestEnvironment({"reworked": Reworked}) as env:
        probe = env.introspect("r")
        await env.workflow(Reworked).create(id="r")
        await probe.wait_for_step_result("deadline")
        await probe.wait_for_status("waiting")
        assert _steps(await probe.get_steps())["ack"]["status"] == "cancelled"
        await env.stop()
        Reworked.second_version = True
        try:
            await env.start()
            status = await probe.wait_for_status("errored")
        finally:
            Reworked.second_version = False
        assert status.error is not None and status.error.name == "NonDeterminismError"
        assert "'ack'" in status.error.message and "cancelled" in status.error.message


class RetryBesideSleep(WorkflowEntrypoint[Any, Any]):
    """A step retrying after a ten-minute back-off, gathered with a ten-minute sleep."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def flaky() -> str:
            return "ok"

        config: StepConfigDict = {
            "retries": {"limit": 1, "delay": "10 minutes", "backoff": "constant"}
        }
        result, _ = await asyncio.gather(
            step.do("flaky", config, flaky), step.sleep("beside", "10 minutes")
        )
        return result


async def test_a_retry_back_off_waits_beside_a_gathered_sleep() -> None:
    """A back-off is a timer like a sleep: a retry and a sleep of ten minutes end together."""
    async with WorkflowTestEnvironment({"retry": RetryBesideSleep}) as env:
        probe = env.introspect("r")
        probe.mock_step_error("flaky", ConnectionError("down"), times=1)
        start = env.now()
        await env.workflow(RetryBesideSleep).create(id="r")
        status = await probe.wait_for_status("complete")
        assert status.output == "ok"
        assert env.now() - start == timedelta(minutes=10)


class Grouped(WorkflowEntrypoint[Any, Any]):
    """A sleep, a sleep_until and an event wait started in one asyncio.TaskGroup."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        until = event.timestamp + timedelta(hours=3)
        async with asyncio.TaskGroup() as group:
            group.create_task(step.sleep("two hours", "2 hours"))
            group.create_task(step.sleep_until("three hours in", until))
            signal = group.create_task(step.wait_for_event("signal", "signal", timeout="1 day"))
        return signal.result().payload


async def test_waits_in_a_task_group_register_at_once() -> None:
    """A TaskGroup's sleep, sleep_until and event wait all start together; the group ends
    with the last of them."""
    async with WorkflowTestEnvironment({"grouped": Grouped}) as env:
        probe = env.introspect("g")
        start = env.now()
        instance = await env.workflow(Grouped).create(id="g")
        await probe.wait_for_status("waiting")
        steps = _steps(await probe.get_steps())
        assert {s["status"] for s in steps.values()} == {"waiting"}
        assert len({s["started_at"] for s in steps.values()}) == 1
        env.advance(timedelta(hours=1))
        await instance.send_event(type="signal", payload="go")
        status = await probe.wait_for_status("complete")
        assert status.output == "go"
        assert env.now() - start == timedelta(hours=3)


class Waits(WorkflowEntrypoint[Any, Any]):
    """One sleep, then two event waits of one type in a gather."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.sleep("first", "1 minute")
        a, b = await asyncio.gather(
            step.wait_for_event("a", "vote", timeout="1 hour"),
            step.wait_for_event("b", "vote", timeout="1 hour"),
        )
        return [a.payload, b.payload]


async def test_gathered_waits_of_one_type_take_events_in_order_of_the_waits() -> None:
    """Two gathered waits of one type take its events first in, first out, one each."""
    async with WorkflowTestEnvironment({"waits": Waits}) as env:
        probe = env.introspect("w")
        instance = await env.workflow(Waits).create(id="w")
        await instance.send_event(type="vote", payload=1)
        await instance.send_event(type="vote", payload=2)
        status = await probe.wait_for_status("complete")
        assert status.output == [1, 2]


class SeenOnReplay(WorkflowEntrypoint[Any, Any]):
    """Records in a step name which waits the race found done; the loser is kept."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        a = asyncio.ensure_future(step.sleep("a", "1 hour"))
        b = asyncio.ensure_future(step.wait_for_event("b", "b", timeout="1 day"))
        done, _ = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        seen = sorted("a" if task is a else "b" for task in done)

        async def note() -> list[str]:
            return seen

        await step.do("seen " + "+".join(seen), note)
        await step.sleep("later", "2 hours")
        return [seen, (await b).payload]


async def test_a_race_replays_with_the_winner_it_had_even_when_both_are_over() -> None:
    """Replayed after both raced waits ended, asyncio.wait still returns only the recorded
    winner, so the same code makes the same steps."""
    async with WorkflowTestEnvironment({"seen": SeenOnReplay}) as env:
        probe = env.introspect("s")
        instance = await env.workflow(SeenOnReplay).create(id="s")
        await probe.wait_for_step_result("seen a")
        await probe.wait_for_status("waiting")
        env.advance(timedelta(minutes=90))
        await instance.send_event(type="b", payload="meanwhile")
        await probe.wait_for_step_result("b")
        await probe.wait_for_status("waiting")
        await env.restart()
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.error is None
        assert status.output == [["a"], "meanwhile"]
        names = [s["name"] for s in await probe.get_steps()]
        assert names == ["a", "b", "seen a", "later"]


async def test_gathered_sleeps_keep_their_deadlines_across_pause_and_resume() -> None:
    """Paused before its gathered sleeps end and resumed after, an instance ends both at
    once, each on or after its own deadline."""
    async with WorkflowTestEnvironment({"gathered": GatheredWaits}) as env:
        probe = env.introspect("p")
        start = env.now()
        params = {"sleeps": [3_600_000, 7_200_000]}
        instance = await env.workflow(GatheredWaits).create(id="p", params=params)
        await probe.wait_for_status("waiting")
        await instance.pause()
        env.advance(timedelta(hours=3))
        await instance.resume()
        await probe.wait_for_status("complete")
        steps = _steps(await probe.get_steps())
        for name, hours in (("sleep-0", 1), ("sleep-1", 2)):
            assert _t(steps[name]["wake_at"]) - start == timedelta(hours=hours)
            assert _t(steps[name]["ended_at"]) - start == timedelta(hours=3)


# --- real hosts over HTTP, on SQLite and PostgreSQL -------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def waits_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    """One host on the waits project, on SQLite and then on PostgreSQL (a fresh schema)."""
    project = copy_project(tmp_path_factory.mktemp("waits") / "project", WAITS_PROJECT)
    with project_host(request.param, project, "waits") as host:
        yield host


@pytest.fixture
async def api(waits_host: HostProcess) -> Any:
    """An :class:`Api` on the waits host."""
    async with aiohttp.ClientSession(headers=waits_host.headers()) as session:
        yield Api(session, waits_host.url)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


async def _wait_steps(api: Api, workflow: str, id: str, want: dict[str, str]) -> Any:
    """Wait until the named steps have the given statuses; the instance detail."""
    path = f"/api/workflows/{workflow}/instances/{id}"

    async def reached() -> Any:
        detail = await api.ok("GET", path)
        steps = _steps(detail)
        ok = all(name in steps and steps[name]["status"] == s for name, s in want.items())
        return detail if ok else None

    return await eventually(reached, timeout=20, message=f"{id}: steps {want}")


@pytest.mark.slow
async def test_gathered_sleeps_on_a_real_host_each_end_at_their_own_deadline(api: Api) -> None:
    """On a real host, two and then ten gathered sleeps start together and end at the longest."""
    for durations in ([1500, 500], random.sample([100 * n for n in range(1, 11)], 10)):
        id = _new_id("sleeps")
        body = {"id": id, "params": {"sleeps": durations}}
        await api.ok("POST", "/api/workflows/gathered/instances", body, 201)
        detail = await api.wait_status("gathered", id, "complete", timeout=30)
        steps = _steps(detail)
        starts = [_t(steps[f"sleep-{n}"]["started_at"]) for n in range(len(durations))]
        assert max(starts) - min(starts) < timedelta(milliseconds=300)
        for n, ms in enumerate(durations):
            sleep = steps[f"sleep-{n}"]
            deadline = _t(sleep["wake_at"]) - _t(sleep["started_at"])
            assert abs(deadline - timedelta(milliseconds=ms)) < timedelta(milliseconds=1), sleep
            took = _t(sleep["ended_at"]) - _t(sleep["started_at"])
            assert timedelta(milliseconds=ms) <= took < timedelta(milliseconds=ms + 1000), sleep
        elapsed = _t(detail["ended_at"]) - _t(detail["started_at"])
        assert elapsed < timedelta(milliseconds=max(durations) + 1000)


@pytest.mark.slow
async def test_gathered_sleep_and_event_wait_on_a_real_host_event_first(api: Api) -> None:
    """The event resolves its wait at once while the gathered sleep still pends to its end."""
    id = _new_id("mixed")
    params = {"sleeps": [2000], "events": ["go"]}
    await api.ok("POST", "/api/workflows/gathered/instances", {"id": id, "params": params}, 201)
    await _wait_steps(api, "gathered", id, {"sleep-0": "waiting", "wait-go": "waiting"})
    await api.ok("POST", f"/api/workflows/gathered/instances/{id}/events/go", "sent", 202)
    detail = await _wait_steps(api, "gathered", id, {"wait-go": "complete"})
    if detail["status"] != "complete":
        assert _steps(detail)["sleep-0"]["status"] == "waiting"
    detail = await api.wait_status("gathered", id, "complete", timeout=30)
    assert detail["output"] == ["sent"]
    steps = _steps(detail)
    assert _t(steps["wait-go"]["ended_at"]) < _t(steps["sleep-0"]["ended_at"])
    assert _t(steps["sleep-0"]["ended_at"]) >= _t(steps["sleep-0"]["wake_at"])


@pytest.mark.slow
async def test_race_on_a_real_host_both_outcomes(api: Api) -> None:
    """An approval before the reminder cancels it; a reminder first is followed by the
    approval, which its still-pending wait takes."""
    quick = _new_id("quick")
    params = {"remind_ms": 60_000, "give_up_ms": 120_000}
    await api.ok("POST", "/api/workflows/approval/instances", {"id": quick, "params": params}, 201)
    await _wait_steps(api, "approval", quick, {"approval": "waiting", "reminder": "waiting"})
    await api.ok("POST", f"/api/workflows/approval/instances/{quick}/events/approved", "yes", 202)
    detail = await api.wait_status("approval", quick, "complete")
    assert detail["output"] == "yes"
    assert _steps(detail)["reminder"]["status"] == "cancelled"

    slow = _new_id("slow")
    params = {"remind_ms": 300, "give_up_ms": 60_000}
    await api.ok("POST", "/api/workflows/approval/instances", {"id": slow, "params": params}, 201)
    await _wait_steps(api, "approval", slow, {"remind": "complete", "approval": "waiting"})
    await api.ok("POST", f"/api/workflows/approval/instances/{slow}/events/approved", "ok", 202)
    detail = await api.wait_status("approval", slow, "complete")
    assert detail["output"] == "ok"
    steps = _steps(detail)
    assert [steps[n]["status"] for n in ("approval", "reminder", "remind")] == ["complete"] * 3
    assert _t(steps["reminder"]["ended_at"]) < _t(steps["approval"]["ended_at"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_kill_9_during_gathered_waits_loses_no_wait(
    kind: str, tmp_path: Path, hosts: HostFactory
) -> None:
    """A host killed with SIGKILL while gathered waits pend (one already over) leaves each
    recorded once with its own deadline; a new host finishes them on time."""
    schema = f"waits_kill_{os.getpid()}_{time.monotonic_ns()}"
    args = await asyncio.to_thread(storage_args, kind, schema)  # _pg runs its own loop
    project = copy_project(tmp_path / "project", WAITS_PROJECT)
    try:
        host = hosts.start(project, *args)
        id = _new_id("killed")
        params = {"sleeps": [300, 4000], "events": ["go"]}
        async with aiohttp.ClientSession() as session:
            api = Api(session, host.url)
            body = {"id": id, "params": params}
            await api.ok("POST", "/api/workflows/gathered/instances", body, 201)
            want = {"sleep-0": "complete", "sleep-1": "waiting", "wait-go": "waiting"}
            before = await _wait_steps(api, "gathered", id, want)
        host.stop(signal.SIGKILL)
        again = hosts.start(project, *args)
        async with aiohttp.ClientSession() as session:
            api = Api(session, again.url)
            await api.ok("POST", f"/api/workflows/gathered/instances/{id}/events/go", "after", 202)
            detail = await api.wait_status("gathered", id, "complete", timeout=30)
        assert detail["output"] == ["after"]
        assert [s["name"] for s in detail["steps"]] == ["sleep-0", "sleep-1", "wait-go"]
        old, new = _steps(before), _steps(detail)
        for name in ("sleep-0", "sleep-1", "wait-go"):
            assert new[name]["started_at"] == old[name]["started_at"], name
        assert new["sleep-0"]["ended_at"] == old["sleep-0"]["ended_at"]
        assert new["sleep-1"]["wake_at"] == old["sleep-1"]["wake_at"]
        assert _t(new["sleep-1"]["ended_at"]) >= _t(new["sleep-1"]["wake_at"])
    finally:
        if kind == "postgres":
            hosts.close()
            await asyncio.to_thread(_pg, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
