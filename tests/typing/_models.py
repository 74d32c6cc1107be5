"""Shared models for the typing cases: a params class, an env protocol, a workflow."""

from __future__ import annotations

from typing import Protocol

import attrs

from durableflow import Workflow, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


@attrs.frozen
class OrderParams:
    """Params of the order workflow."""

    order_id: str
    amount: int


@attrs.frozen
class RefundParams:
    """Params of the refund workflow."""

    charge_id: str


@attrs.frozen
class Receipt:
    """Output of the order workflow, as a client restores it."""

    charge_id: str


class Env(Protocol):
    """What `durableflow types` generates for this project."""

    ORDERS: Workflow[OrderParams]
    REFUNDS: Workflow[RefundParams]


class OrderWorkflow(WorkflowEntrypoint[Env, OrderParams]):
    """A workflow bound to OrderParams."""

    async def run(self, event: WorkflowEvent[OrderParams], step: WorkflowStep) -> str:
        return event.payload.order_id
