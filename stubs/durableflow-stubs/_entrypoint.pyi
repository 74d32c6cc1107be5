from typing import Any, ClassVar, Generic, TypeVar

from ._step import WorkflowStep
from ._types import WorkflowEvent

__all__ = ["WorkflowEntrypoint", "output_type", "params_type"]

_EnvT = TypeVar("_EnvT")
_ParamsT = TypeVar("_ParamsT")

class WorkflowEntrypoint(Generic[_EnvT, _ParamsT]):
    env: _EnvT
    version: ClassVar[str | None]
    def __init__(self, env: _EnvT) -> None: ...
    async def run(self, event: WorkflowEvent[_ParamsT], step: WorkflowStep) -> Any: ...

def output_type(cls: type[Any]) -> Any: ...
def params_type(cls: type[Any]) -> Any: ...
