"""Versions of an order workflow, and changes made to it, for the deploy tests.

``OrdersV1`` is the code in production; ``OrdersV2`` the next version. The other classes
are changes to ``OrdersV1`` that keep its version (what ``durableflow check`` must judge):
each test writes a ``durableflow.toml`` naming the classes it deploys.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class OrdersV1(WorkflowEntrypoint[Any, Any]):
    """Charge, cool down, reserve, then wait for the go-ahead."""

    version = "v1"

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        charge = await step.do("charge", self.charged)
        await step.sleep("cool", 1)
        await step.do("reserve", self.reserved)
        go = await step.wait_for_event("go", "go")
        return {
            "class": type(self).__name__,
            "version": event.version,
            "charge": charge,
            "go": go.payload,
        }

    async def charged(self) -> str:
        return f"charged by {type(self).__name__}"

    async def reserved(self) -> str:
        return "reserved"


class OrdersV2(WorkflowEntrypoint[Any, Any]):
    """The next version: a different first step."""

    version = "v2"

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        charge = await step.do("authorize", self.authorized)
        go = await step.wait_for_event("go", "go")
        return {
            "class": type(self).__name__,
            "version": event.version,
            "charge": charge,
            "go": go.payload,
        }

    async def authorized(self) -> str:
        return f"authorized by {type(self).__name__}"


#: ``OrdersV2Held``'s first step ends once this file exists.
RELEASE = Path(__file__).with_name("release")


class OrdersV2Held(OrdersV2):
    """v2 whose first step runs until the test creates :data:`RELEASE`: meanwhile the
    instance executes, holding a concurrency slot."""

    async def authorized(self) -> str:
        while not RELEASE.exists():  # noqa: ASYNC110 (another process creates the file)
            await asyncio.sleep(0.05)
        return await super().authorized()


class OrdersV2Twin(OrdersV2):
    """A second class claiming version v2 (a config error beside OrdersV2)."""


class Unversioned(WorkflowEntrypoint[Any, Any]):
    """A class without a version (a config error in ``previous``)."""


class Appended(OrdersV1):
    """A safe change: a step added after everything in flight."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        result = await super().run(event, step)
        await step.do("notify", self.reserved)
        return result


class Reordered(OrdersV1):
    """The cool-down moved before the charge."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.sleep("cool", 1)
        await step.do("charge", self.charged)
        await step.do("reserve", self.reserved)
        await step.wait_for_event("go", "go")


class Renamed(OrdersV1):
    """The reserve step renamed."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("charge", self.charged)
        await step.sleep("cool", 1)
        await step.do("reserve stock", self.reserved)
        await step.wait_for_event("go", "go")


class NoSleep(OrdersV1):
    """The cool-down removed."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("charge", self.charged)
        await step.do("reserve", self.reserved)
        await step.wait_for_event("go", "go")


class Raises(OrdersV1):
    """New code that raises outside its steps."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        charge = await step.do("charge", self.charged)
        raise RuntimeError(f"cannot read {charge!r}")
