"""What the engine reads from and writes into the store's rows: a step's error info and
the exception it raises into ``run()``, an event's value, a step's config JSON, where a
wait's resolution stands in the history, and the record ``describe`` returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from durableflow import (
    ChildWorkflowError,
    ErrorInfo,
    EventTimeoutError,
    InstanceExistsError,
    ResolvedStepConfig,
    StepFailedError,
    StepTimeoutError,
)
from durableflow._serde import loads, structure

from ..store.base import InstanceRef, InstanceRow, StepRow
from ._callbacks import _return_type, _UnresolvedReturn

if TYPE_CHECKING:
    from ._spec import WorkflowSpec

_CONFIG_JSON: dict[ResolvedStepConfig, dict[str, Any]] = {}


def _config_json(config: ResolvedStepConfig) -> dict[str, Any]:
    cached = _CONFIG_JSON.get(config)
    if cached is None:
        cached = _CONFIG_JSON[config] = config.to_json()
    return cached


def _resolved_seq(step: StepRow) -> int | None:
    """Where a wait's resolution stands among the history's events (``None`` if it has
    not resolved, or was recorded before waits were ordered)."""
    if step.type == "do" or step.config is None or step.status not in ("complete", "failed"):
        return None
    seq = step.config.get("resolved_seq")
    return seq if isinstance(seq, int) else None


def _error_info(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, StepFailedError):
        return {"name": exc.error_name, "message": exc.error_message}
    return {"name": type(exc).__name__, "message": str(exc)}


def _failed(step: StepRow) -> StepFailedError:
    error = step.error or {"name": "Error", "message": "step failed"}
    cls = StepTimeoutError if error["name"] == "StepTimeoutError" else StepFailedError
    return cls(
        f"step {step.name!r} failed: {error['name']}: {error['message']}",
        step_name=step.name,
        error_name=error["name"],
        error_message=error["message"],
    )


def _event_timeout(step: StepRow, type: str) -> EventTimeoutError:
    message = (step.error or {}).get("message") or f"wait_for_event {step.name!r} timed out"
    return EventTimeoutError(message, step_name=step.name, event_type=type)


@attrs.frozen
class InstanceRecord:
    """An instance and its steps in the order they started: what ``Engine.describe``
    returns, and what the server shapes into the instance detail."""

    instance: InstanceRow
    steps: list[StepRow]
    parent: InstanceRef | None = None
    children: list[InstanceRef] = attrs.field(factory=list)
    #: why the instance is runnable yet not running (no code for its version here, or
    #: a flow limit: ``Engine.why_blocked``), else ``None``
    blocked: str | None = None


def child_result(step: StepRow, workflows: Mapping[str, WorkflowSpec]) -> Any:
    """What a ``run_workflow`` or ``start_workflow`` step gives ``run()``: the child's id
    or output, or the error that says why not (on the first run and on replay alike, from
    the step as stored)."""
    config = step.config or {}
    workflow, child_id = config.get("workflow", ""), config.get("id", "")
    error = step.error or {"name": "Error", "message": "the child did not complete"}
    if step.status == "failed" and config.get("status") == "taken":
        raise InstanceExistsError(error["message"])
    if step.type == "start_workflow":
        return child_id
    if step.status == "complete":
        spec = workflows.get(workflow)
        output_type = _return_type(spec.cls.run) if spec is not None else Any
        if isinstance(output_type, _UnresolvedReturn):
            output_type = Any
        return structure(loads(step.output), output_type)
    status = config.get("status", "errored")
    what = {"terminated": "was terminated", "running": "did not end in time"}
    raise ChildWorkflowError(
        f"child workflow {workflow}/{child_id} {what.get(status, 'errored')}: "
        f"{error['name']}: {error['message']}",
        step_name=step.name,
        workflow=workflow,
        instance_id=child_id,
        status=status,
        error=ErrorInfo(error["name"], error["message"]),
    )
