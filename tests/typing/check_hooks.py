"""Typing cases for hooks (wait_for_event with a token and a payload_type) and webhooks."""

from __future__ import annotations

from typing import Any, assert_type

from durableflow import (
    Client,
    HmacSignature,
    SyncClient,
    SyncWorkflowInstance,
    Webhook,
    WebhookRequest,
    Workflow,
    WorkflowInstance,
    WorkflowStep,
    WorkflowStepEvent,
)

from ._models import OrderParams


async def in_run(step: WorkflowStep) -> None:
    plain = await step.wait_for_event("approve", "approval", token="approval:o-1")
    assert_type(plain, WorkflowStepEvent[Any])
    typed = await step.wait_for_event("approve", "approval", payload_type=OrderParams)
    assert_type(typed, WorkflowStepEvent[OrderParams])
    assert_type(typed.payload, OrderParams)
    assert_type(typed.payload.amount, int)
    hook = await step.create_webhook("github", verify=HmacSignature.github("secret"))
    assert_type(hook, Webhook)
    assert_type(hook.url, str)
    request = await hook.wait(timeout="1 hour")
    assert_type(request, WebhookRequest)
    assert_type(request.body, bytes)
    assert_type(request.json(), Any)
    assert_type(request.text(), str)
    stripe = HmacSignature.stripe("whsec_1", tolerance="10 minutes")
    assert_type(stripe.verify(request), bool)
    custom = HmacSignature(secret=b"k", header="X-Signature", prefix="sha1=", algorithm="sha1")
    assert_type(await step.create_webhook("custom", custom), Webhook)


async def resume(binding: Workflow[OrderParams], client: Client, sync: SyncClient) -> None:
    assert_type(await binding.resume_hook("approval:o-1", {"ok": True}), WorkflowInstance)
    assert_type(await client.resume_hook("approval:o-1"), WorkflowInstance)
    assert_type(sync.resume_hook("approval:o-1", [1, 2]), SyncWorkflowInstance)


async def must_fail(step: WorkflowStep, client: Client) -> None:
    # A token is a string.
    await step.wait_for_event("a", "t", token=42)  # type: ignore[call-overload]
    # payload_type is a type, not an instance.
    await step.wait_for_event("a", "t", payload_type=OrderParams("o", 1))  # type: ignore[call-overload]
    typed = await step.wait_for_event("a", "t", payload_type=OrderParams)
    # The structured payload has the fields of its type only.
    print(typed.payload.missing)  # type: ignore[attr-defined]
    # verify takes an HmacSignature.
    await step.create_webhook("w", verify="secret")  # type: ignore[arg-type]
    hook = await step.create_webhook("w")
    # The timeout is keyword-only.
    await hook.wait("1 hour")  # type: ignore[call-arg]
    # An HmacSignature needs its header.
    HmacSignature(secret="s")  # type: ignore[call-arg]
    # resume_hook is a coroutine on the async client.
    instance: WorkflowInstance = client.resume_hook("t")  # type: ignore[assignment]
    del instance
