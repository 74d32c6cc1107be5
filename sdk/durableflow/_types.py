"""Value types shared by the SDK and the host: events, step context, instance status."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar, get_args

import attrs

from ._config import ResolvedStepConfig
from ._errors import ValidationError

__all__ = [
    "STATUSES",
    "CreateOptions",
    "ErrorInfo",
    "InstanceStatus",
    "StatusName",
    "StepContext",
    "WorkflowEvent",
    "WorkflowStepEvent",
    "check_id",
    "check_step_name",
]

ParamsT = TypeVar("ParamsT")

StatusName: TypeAlias = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waiting",
    "waitingForPause",
    "unknown",
]
STATUSES: tuple[StatusName, ...] = get_args(StatusName)


@attrs.frozen
class WorkflowEvent(Generic[ParamsT]):
    """What ``run()`` receives: the instance's params and identity.

    Attributes:
        payload: The params given at ``create``, structured into ``ParamsT``.
        timestamp: When the instance was created (UTC).
        instance_id: The instance's id.
    """

    payload: ParamsT
    timestamp: datetime
    instance_id: str


@attrs.frozen
class WorkflowStepEvent:
    """An event delivered to ``step.wait_for_event``.

    Attributes:
        type: The event's type.
        payload: Its JSON payload.
        timestamp: When it was sent (UTC).
    """

    type: str
    payload: Any
    timestamp: datetime


@attrs.frozen
class StepContext:
    """Passed to a step callback that takes one argument.

    Attributes:
        attempt: 1-based number of this attempt.
        name: The step's name.
        count: 1-based occurrence of this name in the run.
        step_id: Stable across attempts and replays: use it as an idempotency key.
        config: The step's resolved config.
    """

    attempt: int
    name: str
    count: int
    step_id: str
    config: ResolvedStepConfig


@attrs.frozen
class ErrorInfo:
    """Why an instance or a step failed: the error's class name and message."""

    name: str
    message: str


@attrs.frozen
class InstanceStatus:
    """An instance's status as ``WorkflowInstance.status()`` reports it.

    Attributes:
        status: One of Cloudflare's status strings.
        error: ``{name, message}`` of the error that ended it, if it errored.
        output: What ``run()`` returned, once complete.
    """

    status: StatusName
    error: ErrorInfo | None = None
    output: Any = None


@attrs.frozen
class CreateOptions(Generic[ParamsT]):
    """One entry of ``Workflow.create_batch``."""

    id: str | None = None
    params: ParamsT | None = None


_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # always fullmatch: "$" allows "\n"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(value: object, *, what: str = "instance id", max_length: int = 100) -> str:
    """Validate an instance id, event type or workflow name.

    Raises:
        ValidationError: The value is not 1..max_length characters of ``[A-Za-z0-9_-]``
            not starting with ``-``.
    """
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_length
        or not _ID.fullmatch(value)
    ):
        raise ValidationError(
            f"invalid {what} {value!r}: use 1-{max_length} characters of A-Z a-z 0-9 _ -, "
            "not starting with '-'"
        )
    return value


def check_step_name(value: object) -> str:
    """Validate a step name: 1-256 characters, no control characters."""
    if not isinstance(value, str) or not value or len(value) > 256 or _CONTROL.search(value):
        raise ValidationError(
            f"invalid step name {value!r}: use 1-256 characters without control characters"
        )
    return value
