"""Replay safety: a history recorded by an earlier version must replay under today's code.

``histories/orders-v1.db`` was written by durableflow 0.1 running ``RecordedOrder`` until
it slept (see ``record()`` below, kept to re-record after an incompatible change, which
must then be a new file and a migration). Today's engine must open that file (migrating
it if the schema moved on), replay the stored steps without re-running them, and finish.
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


if __name__ == "__main__":  # python tests/integration/test_recorded_history.py: re-record
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    _remove(target)
    asyncio.run(record(target))
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}.lock")):
        leftover.unlink(missing_ok=True)
