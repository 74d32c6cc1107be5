"""Typing cases for the error tree: context attributes and builtin bases."""

from __future__ import annotations

from typing import assert_type

from durableflow import (
    EventTimeoutError,
    InstanceFailedError,
    InvalidParamsError,
    NonRetryableError,
    NotFoundError,
    StepContext,
    StepFailedError,
    ValidationError,
    WorkflowError,
    WorkflowStep,
)


async def charge(ctx: StepContext) -> str:
    if ctx.attempt > 3:
        raise NonRetryableError("card declined")
    return "ch_1"


async def handle(step: WorkflowStep) -> None:
    try:
        await step.do("charge", charge)
    except StepFailedError as exc:
        assert_type(exc.step_name, str)
        assert_type(exc.error_name, str)
        assert_type(exc.message, str)
    try:
        await step.wait_for_event("approval", "approved", timeout="1 day")
    except EventTimeoutError as exc:
        assert_type(exc.event_type, str)
    except InstanceFailedError as exc:
        assert_type(exc.error_message, str | None)
    # Errors keep their builtin meanings.
    value_error: ValueError = ValidationError("bad id")
    lookup_error: LookupError = NotFoundError("no such instance")
    timeout_error: TimeoutError = EventTimeoutError("late", step_name="s", event_type="t")
    root: WorkflowError = InvalidParamsError("params: amount must be an int")
    del value_error, lookup_error, timeout_error, root


def must_fail() -> None:
    # Every error carries a message.
    NonRetryableError()  # type: ignore[call-arg]
    # Context is keyword-only.
    StepFailedError("failed", "charge", "ValueError", "boom")  # type: ignore[call-arg]
    # Not every error is a ValueError.
    value_error: ValueError = NotFoundError("x")  # type: ignore[assignment]
    del value_error
