"""The in-process bindings: the ``env`` workflows get, and the ``Workflow`` and
``WorkflowInstance`` objects that call the engine without HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from durableflow import (
    BulkAction,
    BulkResult,
    CreateOptions,
    InstanceStatus,
    StatusName,
    StepRef,
    ValidationError,
    Workflow,
    WorkflowInstance,
)
from durableflow._output import LogEntry, StreamChunk
from durableflow._serde import restore_output

from ._output import chunk_of, entry_of

if TYPE_CHECKING:
    from ..store.base import ControlAction
    from ._engine import Engine


class Bindings:
    """The ``env`` the host gives workflows: one attribute per workflow binding."""

    def __init__(self, bindings: Mapping[str, Workflow[Any]]) -> None:
        self.__dict__.update(bindings)

    def __repr__(self) -> str:
        return f"Bindings({', '.join(sorted(self.__dict__))})"


class EngineInstance(WorkflowInstance[Any]):
    """A ``WorkflowInstance`` that calls the engine in-process; outputs are restored to
    the workflow's output type."""

    def __init__(self, engine: Engine, workflow: str, id: str) -> None:
        self._engine = engine
        self._workflow = workflow
        self.id = id

    def _restore(self, output: Any) -> Any:
        spec = self._engine.workflows.get(self._workflow)
        output_type = Any if spec is None else spec.output_type
        return restore_output(output, output_type, what=f"the output of instance {self.id!r}")

    async def status(self) -> InstanceStatus[Any]:
        status = await self._engine.status(self._workflow, self.id)
        if status.output is None:
            return status
        return attrs.evolve(status, output=self._restore(status.output))

    async def pause(self) -> None:
        await self._engine.control(self._workflow, self.id, "pause")

    async def resume(self) -> None:
        await self._engine.control(self._workflow, self.id, "resume")

    async def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None:
        action: ControlAction = "terminate_rollback" if rollback else "terminate"
        await self._engine.control(self._workflow, self.id, action, cascade=cascade)

    async def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None:
        await self._engine.control(self._workflow, self.id, "restart", from_step=from_step)

    async def delete(self) -> None:
        await self._engine.delete(self._workflow, self.id)

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        await self._engine.send_event(self._workflow, self.id, type, payload)

    async def result(self, timeout: float | None = None) -> Any:
        return self._restore(await self._engine.result(self._workflow, self.id, timeout))

    async def stream(self, name: str = "default", start: int = 0) -> AsyncIterator[StreamChunk]:
        async for row in self._engine.read_stream(self._workflow, self.id, name, start):
            yield chunk_of(row)

    async def logs(self) -> list[LogEntry]:
        entries: list[LogEntry] = []
        while True:
            after = entries[-1].seq if entries else 0
            rows = await self._engine.logs(self._workflow, self.id, after=after, limit=1000)
            entries.extend(entry_of(r) for r in rows)
            if len(rows) < 1000:
                return entries


class EngineWorkflow(Workflow[Any, Any]):
    """A ``Workflow`` binding that calls the engine in-process."""

    def __init__(self, engine: Engine, workflow: str) -> None:
        self._engine = engine
        self.name = workflow

    @property
    def engine(self) -> Engine:
        """The engine it calls (a child workflow must run on the parent's)."""
        return self._engine

    async def create(
        self,
        *,
        id: str | None = None,
        params: Any = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> WorkflowInstance[Any]:
        [instance_id] = await self._engine.create(
            self.name, [(id, params)], priority=priority, concurrency_key=concurrency_key
        )
        return EngineInstance(self._engine, self.name, instance_id)

    async def create_batch(
        self, batch: Sequence[CreateOptions[Any]]
    ) -> list[WorkflowInstance[Any]]:
        if not batch:
            raise ValidationError("create_batch needs at least one instance")
        items: list[tuple[str | None, Any]] = []
        entries: Sequence[object] = batch  # untyped callers may pass anything
        for entry in entries:
            if isinstance(entry, CreateOptions):
                items.append((entry.id, entry.params))
            elif isinstance(entry, Mapping):
                unknown = set(entry) - {"id", "params"}
                if unknown:
                    raise ValidationError(f"unknown key(s) in a batch entry: {sorted(unknown)}")
                items.append((entry.get("id"), entry.get("params")))
            else:
                raise ValidationError(
                    f"a batch entry must be CreateOptions or a dict, not {type(entry).__name__}"
                )
        ids = await self._engine.create(self.name, items)
        return [EngineInstance(self._engine, self.name, i) for i in ids]

    async def get(self, id: str) -> WorkflowInstance[Any]:
        await self._engine.status(self.name, id)  # raises NotFoundError
        return EngineInstance(self._engine, self.name, id)

    async def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]:
        results, _ = await self._engine.bulk(self.name, action, ids=ids, status=status)
        return results

    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        workflow, id = await self._engine.resume_hook(token, payload)
        return EngineInstance(self._engine, workflow, id)

    def __repr__(self) -> str:
        return f"<EngineWorkflow {self.name!r}>"
