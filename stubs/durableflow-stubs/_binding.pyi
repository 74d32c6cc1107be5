import abc
from collections.abc import AsyncIterator, Sequence
from typing import Any, Generic, TypeVar

from ._output import LogEntry, StreamChunk
from ._types import (
    BulkAction,
    BulkResult,
    CreateOptions,
    InstanceStatus,
    OutputT,
    StatusName,
    StepRef,
)

__all__ = ["Workflow", "WorkflowInstance"]

_ParamsT = TypeVar("_ParamsT")

class WorkflowInstance(abc.ABC, Generic[OutputT]):
    id: str
    @abc.abstractmethod
    async def status(self) -> InstanceStatus[OutputT]: ...
    @abc.abstractmethod
    async def pause(self) -> None: ...
    @abc.abstractmethod
    async def resume(self) -> None: ...
    @abc.abstractmethod
    async def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None: ...
    @abc.abstractmethod
    async def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None: ...
    @abc.abstractmethod
    async def delete(self) -> None: ...
    @abc.abstractmethod
    async def send_event(self, *, type: str, payload: Any = None) -> None: ...
    @abc.abstractmethod
    async def result(self, timeout: float | None = None) -> OutputT: ...
    @abc.abstractmethod
    def stream(self, name: str = "default", start: int = 0) -> AsyncIterator[StreamChunk]: ...
    @abc.abstractmethod
    async def logs(self) -> list[LogEntry]: ...

class Workflow(abc.ABC, Generic[_ParamsT, OutputT]):
    @abc.abstractmethod
    async def create(
        self,
        *,
        id: str | None = None,
        params: _ParamsT | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> WorkflowInstance[OutputT]: ...
    @abc.abstractmethod
    async def create_batch(
        self, batch: Sequence[CreateOptions[_ParamsT]]
    ) -> list[WorkflowInstance[OutputT]]: ...
    @abc.abstractmethod
    async def get(self, id: str) -> WorkflowInstance[OutputT]: ...
    @abc.abstractmethod
    async def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]: ...
    async def delete_batch(self, ids: Sequence[str]) -> list[str]: ...
    @abc.abstractmethod
    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance: ...
