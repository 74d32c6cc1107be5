"""Workflows of the hooks and webhooks host tests."""

from __future__ import annotations

import os
from typing import Any

import attrs
from aiohttp import web

from durableflow import (
    HmacSignature,
    StepFailedError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.web import ENV_KEY

#: The secrets live in the environment of the host, never in the store.
GITHUB_SECRET = os.environ.get("TEST_GITHUB_SECRET", "gh-secret")
STRIPE_SECRET = os.environ.get("TEST_STRIPE_SECRET", "whsec_test")


@attrs.frozen
class Decision:
    """A typed hook payload."""

    approved: bool
    by: str


class Approval(WorkflowEntrypoint[Any, Any]):
    """Waits on the hook ``approval:<order>`` with a typed payload; reports what it got."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        token = f"approval:{event.payload['order']}"
        try:
            decision = await step.wait_for_event(
                "decision", "decision", token=token, payload_type=Decision, timeout="1 hour"
            )
        except StepFailedError as exc:
            return {"failed": exc.error_name}
        except ValidationError as exc:
            return {"invalid": exc.message}
        return {"approved": decision.payload.approved, "by": decision.payload.by}


class Payment(WorkflowEntrypoint[Any, Any]):
    """Makes a webhook (verified by params["verify"]: github, stripe or none), reports its
    URL in a step, and returns the request the webhook took."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        kind = event.payload.get("verify")
        verify = {
            "github": HmacSignature.github(GITHUB_SECRET),
            "stripe": HmacSignature.stripe(STRIPE_SECRET, tolerance="5 minutes"),
        }.get(kind)
        step.log("making the webhook", verify=kind)  # replayed by the verifier probe too
        webhook = await step.create_webhook("provider", verify=verify)

        async def announce() -> str:
            return webhook.url

        await step.do("announce", announce)
        request = await webhook.wait(timeout="1 hour")
        return {
            "method": request.method,
            "query": dict(request.query),
            "content_type": request.headers.get("content-type"),
            "text": request.text(),
        }


class Parent(WorkflowEntrypoint[Any, Any]):
    """Starts an approval of params["order"] as a child (not waited for), runs an echo
    child to its end, then makes a GitHub-verified webhook: a verifier probe replays both
    child steps from the history to reach it."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        order = event.payload["order"]
        child = await step.start_workflow("approver", self.env.APPROVAL, params={"order": order})
        echoed = await step.run_workflow("echo", self.env.ECHO, params={"n": order})
        webhook = await step.create_webhook("provider", verify=HmacSignature.github(GITHUB_SECRET))

        async def announce() -> str:
            return webhook.url

        await step.do("announce", announce)
        request = await webhook.wait(timeout="1 hour")
        return {"child": child, "echoed": echoed, "text": request.text()}


class Echo(WorkflowEntrypoint[Any, Any]):
    """Returns its params."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        return event.payload


class TypedEvent(WorkflowEntrypoint[Any, Any]):
    """Sleeps params["sleep_ms"], then waits for a "decision" event typed ``Decision``."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.sleep("pause", event.payload.get("sleep_ms", 0))
        try:
            got = await step.wait_for_event("decision", "decision", payload_type=Decision)
        except ValidationError as exc:
            return {"invalid": exc.message}
        return {"approved": got.payload.approved, "by": got.payload.by}


routes = web.RouteTableDef()


@routes.post("/decide/{order}")
async def decide(request: web.Request) -> web.Response:
    """A user route that resumes an approval's hook in-process, through another binding."""
    env = request.config_dict[ENV_KEY]
    instance = await env.PAYMENT.resume_hook(
        f"approval:{request.match_info['order']}", await request.json()
    )
    return web.json_response({"id": instance.id, "output": await instance.result(timeout=20)})
