"""The look-ahead: an instance whose next wake-up is a timer due within the engine's
look-ahead is held in memory (or claimed ahead of it and held) and continues at the
instant, on both stores; nothing new of it runs early, and pause reaches it at once."""

from __future__ import annotations

import time
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow._config import resolve_config
from durableflow_runtime.engine import Engine, WorkflowSpec
from tests.helpers import eventually

from .test_store_conformance import StoreFactory, make_store

__all__ = ["make_store"]  # the fixture, on both stores

LOOKAHEAD = 2.0
RUNS: list[float] = []  # when each attempt of Flaky's "flaky" step ran


async def _now() -> float:
    return time.time()


class Napper(WorkflowEntrypoint[Any, Any]):
    """A step, a sleep of params["ms"], a step that returns when it ran."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("before", _now)
        await step.sleep("nap", event.payload["ms"])
        return await step.do("after", _now)


class Flaky(WorkflowEntrypoint[Any, Any]):
    """Fails its first run; run_retries runs it again after a back-off."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def flaky() -> int:
            RUNS.append(time.time())
            if len(RUNS) == 1:
                raise ValueError("first run fails")
            return len(RUNS)

        return await step.do("flaky", flaky)


def _engine(make_store: StoreFactory) -> Engine:
    run_retries = resolve_config({"retries": {"limit": 1, "delay": 1500, "backoff": "constant"}})
    return Engine(
        make_store(),
        [
            WorkflowSpec("napper", Napper),
            WorkflowSpec(
                "flaky",
                Flaky,
                defaults=resolve_config({"retries": {"limit": 0}}),
                run_retries=run_retries,
            ),
        ],
        lookahead=LOOKAHEAD,
        poll_interval=0.5,
    )


async def _nap_wake_at(engine: Engine, id: str) -> float | None:
    steps = (await engine.describe("napper", id)).steps
    naps = [s for s in steps if s.name == "nap" and s.status == "waiting"]
    return naps[0].wake_at if naps else None


async def test_a_short_sleep_is_held_in_memory_and_pause_reaches_it(
    make_store: StoreFactory,
) -> None:
    """A sleep shorter than the look-ahead keeps the instance in memory (running, its
    sleep recorded) and it continues on time; a pause while it is held pauses it at once,
    and after resume it completes."""
    async with _engine(make_store) as engine:
        await engine.create("napper", [("held", {"ms": 1500}), ("paused", {"ms": 1500})])
        wake_at = await eventually(lambda: _nap_wake_at(engine, "held"), message="held naps")
        assert (await engine.status("napper", "held")).status == "running"
        assert await eventually(lambda: _nap_wake_at(engine, "paused"), message="paused naps")
        await engine.control("napper", "paused", "pause")

        async def paused() -> bool:
            return (await engine.status("napper", "paused")).status == "paused"

        await eventually(paused, timeout=1.0, message="the held instance pauses at once")
        ran_after = await engine.result("napper", "held", timeout=20)
        assert wake_at <= ran_after < wake_at + 1.0
        assert (await engine.status("napper", "paused")).status == "paused"  # not woken
        await engine.control("napper", "paused", "resume")
        assert await engine.result("napper", "paused", timeout=20) >= wake_at


async def test_a_sleeper_is_claimed_ahead_of_its_wake_up(make_store: StoreFactory) -> None:
    """A longer sleep suspends the instance (waiting); within the look-ahead of its wake-up
    it is claimed and held (running), and its next step runs at the instant, not before."""
    async with _engine(make_store) as engine:
        await engine.create("napper", [("ahead", {"ms": 4000})])
        wake_at = await eventually(lambda: _nap_wake_at(engine, "ahead"), message="it naps")

        async def status() -> str:
            return (await engine.status("napper", "ahead")).status

        async def waiting() -> bool:
            return await status() == "waiting"

        await eventually(waiting, timeout=2.0, message="it suspends")

        async def claimed_ahead() -> bool:
            return await status() == "running"

        await eventually(claimed_ahead, timeout=10, interval=0.05, message="claimed ahead")
        assert time.time() < wake_at  # before the wake-up, held in memory
        ran_after = await engine.result("napper", "ahead", timeout=20)
        assert wake_at <= ran_after < wake_at + 1.0


async def test_run_retries_back_off_is_kept_when_claimed_ahead(make_store: StoreFactory) -> None:
    """An instance waiting out a run_retries back-off (no timer in its history) is claimed
    ahead like a sleeper, and its retried step still runs no earlier than the back-off."""
    RUNS.clear()
    async with _engine(make_store) as engine:
        await engine.create("flaky", [("f", None)])
        assert await engine.result("flaky", "f", timeout=20) == 2
    assert len(RUNS) == 2
    assert RUNS[1] - RUNS[0] >= 1.5
