"""Typing cases for WorkflowEntrypoint[EnvT, ParamsT]: the event's payload and the env."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, assert_type

from durableflow import (
    Workflow,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInstance,
    WorkflowStep,
    WorkflowStepEvent,
)

from ._models import Env, OrderParams, RefundParams


class Checkout(WorkflowEntrypoint[Env, OrderParams]):
    """A workflow that sees its env and params with their declared types."""

    async def run(self, event: WorkflowEvent[OrderParams], step: WorkflowStep) -> dict[str, Any]:
        assert_type(event.payload, OrderParams)
        assert_type(event.payload.amount, int)
        assert_type(event.timestamp, datetime)
        assert_type(event.instance_id, str)
        assert_type(self.env, Env)
        assert_type(self.env.REFUNDS, Workflow[RefundParams])
        refund = await self.env.REFUNDS.create(params=RefundParams(charge_id="ch_1"))
        assert_type(refund, WorkflowInstance)
        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")
        assert_type(approval, WorkflowStepEvent)
        assert_type(approval.payload, Any)
        await step.sleep("cool off", "1 day")
        await step.sleep_until("deadline", datetime(2030, 1, 1))
        await step.sleep_until("deadline ms", 1_900_000_000_000)
        return {"order": event.payload.order_id}


class Untyped(WorkflowEntrypoint[Any, Any]):
    """A workflow without declared types sees Any."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> None:
        assert_type(event.payload, Any)
        assert_type(self.env, Any)


def construct(env: Env) -> None:
    assert_type(Checkout(env).env, Env)


class WrongEvent(WorkflowEntrypoint[Env, OrderParams]):
    """run() must take the event of the workflow's own params type."""

    async def run(  # type: ignore[override]
        self, event: WorkflowEvent[RefundParams], step: WorkflowStep
    ) -> None:
        pass


class MustFail(WorkflowEntrypoint[Env, OrderParams]):
    """Misuses of the event and the env."""

    async def run(self, event: WorkflowEvent[OrderParams], step: WorkflowStep) -> None:
        # A params field that does not exist.
        print(event.payload.customer)  # type: ignore[attr-defined]
        # A binding the env does not have.
        await self.env.INVOICES.create()  # type: ignore[attr-defined]
        # Params of another workflow given to a binding.
        await self.env.REFUNDS.create(params=event.payload)  # type: ignore[arg-type]
        # An event payload is Any, but the event itself has a fixed shape.
        event.payload = OrderParams("o", 1)  # type: ignore[misc]
        # wait_for_event needs the event's type.
        await step.wait_for_event("approval")  # type: ignore[call-overload]


def wrong_env(env: object) -> None:
    Checkout(env)  # type: ignore[arg-type]


class OrdersV2(WorkflowEntrypoint[Env, OrderParams]):
    """A versioned workflow: the class declares its version, run() reads the instance's."""

    version = "v2"

    async def run(self, event: WorkflowEvent[OrderParams], step: WorkflowStep) -> None:
        assert_type(event.version, str | None)
        if event.version == "v1":
            await step.sleep("v1 only", "1 hour")


class OrdersV1(OrdersV2):
    """The previous version, served by the same code."""

    version = "v1"


def versions() -> None:
    assert_type(WorkflowEntrypoint.version, str | None)
    assert_type(OrdersV2.version, str)


class AnnotatedVersion(WorkflowEntrypoint[Any, Any]):
    """The declaration as the docs write it."""

    version: ClassVar[str] = "v3"


class NumberedVersion(WorkflowEntrypoint[Any, Any]):
    """A version is a string, not a number."""

    version = 2  # type: ignore[assignment]


def event_version_is_read_only(event: WorkflowEvent[Any]) -> None:
    event.version = "v3"  # type: ignore[misc]
