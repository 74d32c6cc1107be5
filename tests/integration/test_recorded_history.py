"""Replay safety: a history recorded by an earlier version must replay under today's code.

``histories/orders-v1.db`` was written by durableflow 0.1 running ``RecordedOrder`` until
it slept (see ``record()`` below, kept to re-record after an incompatible change, which
must then be a new file and a migration). Today's engine must open that file (migrating
it if the schema moved on), replay the stored steps without re-running them, and finish.

``histories/gathered-v1.db`` was written by the engine from before waits awaited together
registered at once (``record_gathered()``): its second gathered sleep started when the
first ended, and its waits carry no place in the order of events. It must replay too.
``histories/raced-v2.db`` (``record_raced()``) holds a race's winner and cancelled loser
and two gathered waits pending, as today's engine records them.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.testing import WorkflowTestEnvironment

FIXTURE = Path(__file__).with_name("histories") / "orders-v1.db"
RAN: list[str] = []


@attrs.frozen
class Receipt:
    order_id: str
    cents: int


@attrs.frozen
class Order:
    order_id: str
    cents: int


class RecordedOrder(WorkflowEntrypoint[Any, Order]):
    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> Any:
        order = event.payload

        @step.do("reserve stock")
        async def reserve() -> list[str]:
            RAN.append("reserve")
            return ["sku-1", "sku-2"]

        @step.do("charge card", config={"retries": {"limit": 2, "delay": "1 second"}})
        async def charge(ctx: StepContext) -> Receipt:
            RAN.append(f"charge attempt {ctx.attempt}")
            if ctx.attempt == 1:
                raise ConnectionError("bank timeout")
            return Receipt(order.order_id, order.cents)

        skus = await reserve()
        receipt = await charge()
        await step.sleep("cooling off", "2 days")
        approval = await step.wait_for_event("approval", "approved", timeout="7 days")

        @step.do("ship")
        async def ship() -> str:
            RAN.append("ship")
            return f"shipped {len(skus)} items for {receipt.cents} cents to {approval.payload}"

        return await ship()


async def test_recorded_history_replays_under_current_code(tmp_path: Path) -> None:
    """The recorded instance resumes: stored steps are not re-run, the rest completes."""
    database = tmp_path / "state.db"
    shutil.copy(FIXTURE, database)
    with sqlite3.connect(database) as conn:
        [(recorded_at,)] = conn.execute("SELECT max(started_at) FROM steps").fetchall()
    RAN.clear()
    # the virtual clock starts when the history was recorded, so the sleep is still on
    start = datetime.fromtimestamp(recorded_at, UTC)
    async with WorkflowTestEnvironment(
        {"orders": RecordedOrder}, database=database, start=start
    ) as env:
        probe = env.introspect("order-1")
        instance = await env.workflow(RecordedOrder).get("order-1")
        steps = await probe.get_steps()
        assert [(s["name"], s["status"]) for s in steps] == [
            ("reserve stock", "complete"),
            ("charge card", "complete"),
            ("cooling off", "waiting"),
        ]
        await probe.wait_for_status("waiting")
        await instance.send_event(type="approved", payload="ana")
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.status == "complete", status
        assert status.output == "shipped 2 items for 1250 cents to ana"
        assert RAN == ["ship"]


GATHERED_FIXTURE = Path(__file__).with_name("histories") / "gathered-v1.db"


class RecordedGather(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await asyncio.gather(step.sleep("long", "5 seconds"), step.sleep("short", "2 seconds"))
        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")

        @step.do("finish")
        async def finish() -> str:
            RAN.append("finish")
            return f"approved by {approval.payload}"

        return await finish()


async def test_history_of_waits_registered_one_after_another_replays(tmp_path: Path) -> None:
    """A history from before waits registered together (the second gathered sleep started
    when the first ended, and no wait records its place in the order) replays and ends."""
    database = tmp_path / "state.db"
    shutil.copy(GATHERED_FIXTURE, database)
    with sqlite3.connect(database) as conn:
        [(recorded_at,)] = conn.execute("SELECT max(started_at) FROM steps").fetchall()
    RAN.clear()
    start = datetime.fromtimestamp(recorded_at, UTC)
    async with WorkflowTestEnvironment(
        {"gathered": RecordedGather}, database=database, start=start
    ) as env:
        probe = env.introspect("g-1")
        instance = await env.workflow(RecordedGather).get("g-1")
        steps = await probe.get_steps()
        assert [(s["name"], s["status"]) for s in steps] == [
            ("long", "complete"),
            ("short", "waiting"),
        ]
        assert steps[1]["started_at"] == steps[0]["ended_at"]  # the old serialisation
        await probe.wait_for_step_result("short")
        await instance.send_event(type="approved", payload="ana")
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.status == "complete", status
        assert status.output == "approved by ana"
        assert RAN == ["finish"]


async def record_gathered(path: Path) -> None:
    """Write the gathered fixture: run RecordedGather until its second sleep waits.

    Only an engine from before waits registered together (commit 4fefe86) writes the
    history this fixture holds; today's engine registers both sleeps at once.
    """
    async with WorkflowTestEnvironment({"gathered": RecordedGather}, database=path) as env:
        probe = env.introspect("g-1")
        await env.workflow(RecordedGather).create(id="g-1")
        await probe.wait_for_step_result("long")
        await probe.wait_for_status("waiting")


RACED_FIXTURE = Path(__file__).with_name("histories") / "raced-v2.db"


class RecordedRace(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        ack = asyncio.ensure_future(step.wait_for_event("ack", "ack", timeout="1 day"))
        deadline = asyncio.ensure_future(step.sleep("deadline", "1 hour"))
        done, _ = await asyncio.wait({ack, deadline}, return_when=asyncio.FIRST_COMPLETED)
        if ack in done:
            return "acked in time"
        ack.cancel()
        _, approval = await asyncio.gather(
            step.sleep("grace", "2 hours"),
            step.wait_for_event("approval", "approved", timeout="1 day"),
        )
        late = await step.wait_for_event("late ack", "ack", timeout="1 day")

        @step.do("finish")
        async def finish() -> str:
            RAN.append("finish")
            return f"{approval.payload} after {late.payload}"

        return await finish()


async def test_history_of_a_race_and_gathered_waits_replays(tmp_path: Path) -> None:
    """A history with a race's recorded winner, its cancelled loser and two gathered waits
    pending replays: the cancelled wait takes no event, the pending ones end in order."""
    database = tmp_path / "state.db"
    shutil.copy(RACED_FIXTURE, database)
    with sqlite3.connect(database) as conn:
        [(recorded_at,)] = conn.execute("SELECT max(started_at) FROM steps").fetchall()
    RAN.clear()
    start = datetime.fromtimestamp(recorded_at, UTC)
    async with WorkflowTestEnvironment(
        {"raced": RecordedRace}, database=database, start=start
    ) as env:
        probe = env.introspect("r-1")
        instance = await env.workflow(RecordedRace).get("r-1")
        steps = await probe.get_steps()
        assert [(s["name"], s["status"]) for s in steps] == [
            ("ack", "cancelled"),
            ("deadline", "complete"),
            ("grace", "waiting"),
            ("approval", "waiting"),
        ]
        await probe.wait_for_status("waiting")
        await instance.send_event(type="ack", payload="a late ack")
        await instance.send_event(type="approved", payload="ana")
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.status == "complete", status
        assert status.output == "ana after a late ack"
        assert RAN == ["finish"]
        statuses = {s["name"]: s["status"] for s in await probe.get_steps()}
        assert statuses["ack"] == "cancelled"


async def record_raced(path: Path) -> None:
    """Write the raced fixture: run RecordedRace until its gathered waits pend."""
    async with WorkflowTestEnvironment({"raced": RecordedRace}, database=path) as env:
        probe = env.introspect("r-1")
        await env.workflow(RecordedRace).create(id="r-1")
        await probe.wait_for_step_result("deadline")
        await probe.wait_for_status("waiting")


async def record(path: Path) -> None:
    """Write the fixture: run RecordedOrder until it sleeps, then stop."""
    async with WorkflowTestEnvironment({"orders": RecordedOrder}, database=path) as env:
        probe = env.introspect("order-1")
        probe.disable_retry_delays()
        await env.workflow(RecordedOrder).create(id="order-1", params=Order("order-1", 1250))
        await probe.wait_for_status("waiting")


def _remove(path: Path) -> None:
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
        each.unlink(missing_ok=True)


if __name__ == "__main__":  # python -m tests.integration.test_recorded_history [KIND] [PATH]
    recorders = {
        "orders": (FIXTURE, record),
        "gathered": (GATHERED_FIXTURE, record_gathered),
        "raced": (RACED_FIXTURE, record_raced),
    }
    kind = sys.argv[1] if len(sys.argv) > 1 else "orders"
    fixture, recorder = recorders[kind]
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else fixture
    _remove(target)
    asyncio.run(recorder(target))
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}.lock")):
        leftover.unlink(missing_ok=True)
