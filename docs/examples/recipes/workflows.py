"""The workflows behind the framework recipes: an order that waits for its payment, and a
welcome email sent in the background (the job a Celery task used to do).

The web apps beside this file (FastAPI, Django, Flask) do not run workflows: they start
and steer them on a host (``durableflow serve`` in this folder) through
``durableflow.Client`` or ``durableflow.SyncClient``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


@attrs.frozen
class Order:
    """The params of an order: what the shop's ``POST /orders`` receives."""

    order_id: str
    item: str
    quantity: int


@attrs.frozen
class Welcome:
    """The params of a welcome email: who signed up."""

    user_id: int
    email: str


class OrderWorkflow(WorkflowEntrypoint[Any, Order]):
    """Reserve the stock, wait (durably) for the payment, ship."""

    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> dict[str, Any]:
        order = event.payload

        async def reserve() -> str:
            return f"reservation-{order.order_id}"

        reservation = await step.do("reserve stock", reserve)
        payment = await step.wait_for_event("wait for payment", "paid", timeout="1 hour")

        async def ship() -> str:
            return f"TRACK-{order.order_id.upper()}"

        tracking = await step.do("ship", ship)
        return {
            "order_id": order.order_id,
            "reservation": reservation,
            "paid_by": payment.payload["by"],
            "tracking": tracking,
        }


def outbox() -> Path:
    """Where the example's mailer puts its emails: a folder, one file per email."""
    folder = Path(os.environ.get("RECIPES_OUTBOX", ".outbox"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class WelcomeEmailWorkflow(WorkflowEntrypoint[Any, Welcome]):
    """Send the welcome email, retried with back-off until the mail server takes it."""

    async def run(self, event: WorkflowEvent[Welcome], step: WorkflowStep) -> str:
        user = event.payload

        async def send(ctx: StepContext) -> str:
            if ctx.attempt == 1:  # the mail server is flaky: the step is retried
                raise ConnectionError("mail server did not answer")
            # ctx.step_id is the idempotency key: a retried send never mails twice
            message = outbox() / f"{ctx.step_id}.txt"
            message.write_text(f"To: {user.email}\nWelcome aboard, user {user.user_id}!\n")
            return message.name

        sent: str = await step.do("send welcome email", send)
        return sent
