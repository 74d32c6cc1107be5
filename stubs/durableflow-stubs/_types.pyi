from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs

from ._config import ResolvedStepConfig

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

_ParamsT = TypeVar("_ParamsT")

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
STATUSES: tuple[StatusName, ...]

@attrs.frozen(order=False)
class WorkflowEvent(Generic[_ParamsT]):
    payload: _ParamsT
    timestamp: datetime
    instance_id: str

@attrs.frozen(order=False)
class WorkflowStepEvent:
    type: str
    payload: Any
    timestamp: datetime

@attrs.frozen(order=False)
class StepContext:
    attempt: int
    name: str
    count: int
    step_id: str
    config: ResolvedStepConfig

@attrs.frozen(order=False)
class ErrorInfo:
    name: str
    message: str

@attrs.frozen(order=False)
class InstanceStatus:
    status: StatusName
    error: ErrorInfo | None = None
    output: Any = None

@attrs.frozen(order=False)
class CreateOptions(Generic[_ParamsT]):
    id: str | None = None
    params: _ParamsT | None = None

def check_id(value: object, *, what: str = "instance id", max_length: int = 100) -> str: ...
def check_step_name(value: object) -> str: ...
