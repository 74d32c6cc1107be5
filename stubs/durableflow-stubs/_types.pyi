from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs
from typing_extensions import TypeVar as _TypeVarWithDefault

from ._config import ResolvedStepConfig
from ._output import LogLevel, OutputSink, StreamWriter

__all__ = [
    "BULK_ACTIONS",
    "MAX_BULK",
    "STATUSES",
    "BulkAction",
    "BulkResult",
    "CreateOptions",
    "ErrorInfo",
    "InstanceStatus",
    "RollbackContext",
    "StatusName",
    "StepContext",
    "StepRef",
    "StepRefType",
    "WorkflowEvent",
    "WorkflowStepEvent",
    "check_bulk",
    "check_id",
    "check_step_name",
    "check_token",
]

_ParamsT = TypeVar("_ParamsT")
_T = TypeVar("_T")
OutputT = _TypeVarWithDefault("OutputT", default=Any)
_PayloadT = _TypeVarWithDefault("_PayloadT", default=Any)

StatusName: TypeAlias = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waiting",
    "waitingForPause",
    "rollingBack",
    "unknown",
]
STATUSES: tuple[StatusName, ...]

@attrs.frozen(order=False)
class WorkflowEvent(Generic[_ParamsT]):
    payload: _ParamsT
    timestamp: datetime
    instance_id: str
    workflow_name: str = ""
    version: str | None = None

@attrs.frozen(order=False)
class WorkflowStepEvent(Generic[_PayloadT]):
    type: str
    payload: _PayloadT
    timestamp: datetime

@attrs.frozen(order=False)
class StepContext:
    attempt: int
    name: str
    count: int
    step_id: str
    config: ResolvedStepConfig
    _sink: OutputSink | None = attrs.field(default=None, kw_only=True)
    def stream(self, name: str = "default") -> StreamWriter: ...
    def log(self, message: str, /, *, level: LogLevel = "info", **fields: Any) -> None: ...
    def _output(self) -> OutputSink: ...

@attrs.frozen(order=False)
class ErrorInfo:
    name: str
    message: str

@attrs.frozen(order=False)
class RollbackContext(Generic[_T]):
    step: StepContext
    output: _T
    error: ErrorInfo

@attrs.frozen(order=False)
class InstanceStatus(Generic[OutputT]):
    status: StatusName
    error: ErrorInfo | None = None
    output: OutputT = ...

@attrs.frozen(order=False)
class CreateOptions(Generic[_ParamsT]):
    id: str | None = None
    params: _ParamsT | None = None

StepRefType: TypeAlias = Literal["do", "sleep", "wait_for_event"]

@attrs.frozen(order=False)
class StepRef:
    name: str
    count: int = 1
    type: StepRefType = "do"
    @classmethod
    def parse(cls, value: object, *, where: str = "from_step") -> StepRef: ...
    def to_json(self) -> dict[str, Any]: ...

BulkAction: TypeAlias = Literal["pause", "resume", "terminate", "restart", "delete"]
BULK_ACTIONS: tuple[BulkAction, ...]
MAX_BULK: int

@attrs.frozen(order=False)
class BulkResult:
    id: str
    result: Literal["applied", "skipped"]
    reason: str | None = None
    status: StatusName | None = None
    def to_json(self) -> dict[str, Any]: ...
    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BulkResult: ...

def check_bulk(
    action: object, ids: object, status: object
) -> tuple[BulkAction, list[str] | None, StatusName | None]: ...
def check_id(value: object, *, what: str = "instance id", max_length: int = 100) -> str: ...
def check_token(value: object) -> str: ...
def check_step_name(value: object) -> str: ...
