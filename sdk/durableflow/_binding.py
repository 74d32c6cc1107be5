"""Bindings: ``Workflow`` starts instances, ``WorkflowInstance`` steers one.

The same abstract types are implemented in-process by the host's engine and over HTTP
by ``durableflow.Client``.
"""

from __future__ import annotations

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

ParamsT = TypeVar("ParamsT")


class WorkflowInstance(abc.ABC, Generic[OutputT]):
    """A handle on one instance of a workflow; ``OutputT`` is its workflow's output type.

    Attributes:
        id: The instance's id.
    """

    id: str

    @abc.abstractmethod
    async def status(self) -> InstanceStatus[OutputT]:
        """The instance's status, error and output."""

    @abc.abstractmethod
    async def pause(self) -> None:
        """Pause it: a running step finishes first (status ``waitingForPause``).

        Raises:
            InvalidTransitionError: It has already ended.
        """

    @abc.abstractmethod
    async def resume(self) -> None:
        """Resume a paused instance.

        Raises:
            InvalidTransitionError: It is not paused.
        """

    @abc.abstractmethod
    async def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None:
        """Stop it for good; no further step runs.

        Its child workflows go on running unless ``cascade`` is true.

        Args:
            rollback: Run the rollback handlers of its steps first (status
                ``rollingBack``), then end ``terminated``.
            cascade: Also terminate its running children, and theirs.

        Raises:
            InvalidTransitionError: It has already ended (or, with ``rollback``, is
                already rolling back).
        """

    @abc.abstractmethod
    async def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None:
        """Run it again with the same params: from the start (its history cleared), or
        from ``from_step`` (the history before that step kept, that step and every step
        started after it dropped).

        Args:
            from_step: The step to run again from: a :class:`StepRef` or a
                ``{"name", "count"?, "type"?}`` dict (count 1 and type ``"do"`` by default).

        Raises:
            ValidationError: ``from_step`` is malformed or not in the instance's history.
        """

    @abc.abstractmethod
    async def delete(self) -> None:
        """Delete it and everything stored for it, in any status; its id can be used again.

        A running instance stops first: its in-flight attempt is abandoned.

        Raises:
            NotFoundError: No such instance.
        """

    @abc.abstractmethod
    async def send_event(self, *, type: str, payload: Any = None) -> None:
        """Deliver an event; the first ``wait_for_event`` for ``type`` takes it."""

    @abc.abstractmethod
    async def result(self, timeout: float | None = None) -> OutputT:
        """Wait until the instance ends and return its output, restored to the workflow's
        output type (the return annotation of ``run()``; attrs classes via cattrs).

        Args:
            timeout: Seconds to wait at most (``None``: no bound).

        Raises:
            InstanceFailedError: It ended ``errored`` or ``terminated``.
            TimeoutError: It did not end within ``timeout``.
            SerializationError: The output does not structure into the output type.
        """

    @abc.abstractmethod
    def stream(self, name: str = "default", start: int = 0) -> AsyncIterator[StreamChunk]:
        """Read one of the instance's streams: ``async for chunk in instance.stream("tokens")``.

        Yields the chunks stored from index ``start`` on, then each new one as a step
        writes it, and ends once the instance has ended and every chunk was read.

        Raises:
            NotFoundError: No such instance. ValidationError: a bad name or start.
        """

    @abc.abstractmethod
    async def logs(self) -> list[LogEntry]:
        """The instance's log so far, oldest entry first."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"


class Workflow(abc.ABC, Generic[ParamsT, OutputT]):
    """A binding to one workflow: create instances and look them up.

    ``Workflow[ParamsT, OutputT]``: its params type and its output type (the return
    annotation of its ``run()``); ``Workflow[ParamsT]`` leaves the output ``Any``.
    """

    @abc.abstractmethod
    async def create(
        self,
        *,
        id: str | None = None,
        params: ParamsT | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> WorkflowInstance[OutputT]:
        """Create and start an instance.

        Args:
            id: Its id (default: a new UUID4 string).
            params: Its params, checked against the workflow's params type.
            priority: 0 to 100 (default 0): among this workflow's queued instances,
                higher starts first.
            concurrency_key: The key the workflow's ``key_concurrency`` counts it under
                (default: read from the params by the workflow's ``concurrency_key``).

        Raises:
            ValidationError: A bad id; InvalidParamsError: params that do not fit.
            InstanceExistsError: The id is taken.
        """

    @abc.abstractmethod
    async def create_batch(
        self, batch: Sequence[CreateOptions[ParamsT]]
    ) -> list[WorkflowInstance[OutputT]]:
        """Create up to 100 instances at once, all or nothing."""

    @abc.abstractmethod
    async def get(self, id: str) -> WorkflowInstance[OutputT]:
        """A handle on an existing instance.

        Raises:
            NotFoundError: No such instance.
        """

    @abc.abstractmethod
    async def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]:
        """Apply ``action`` to up to 1,000 instances: the given ``ids``, or every instance
        with ``status`` (exactly one of the two).

        Each instance gets its own result: ``applied``, or ``skipped`` with the reason (an
        unknown id, a status that does not allow the action).

        Raises:
            ValidationError: Both or neither of ``ids`` and ``status``, an unknown action
                or status, or more than 1,000 ids.
        """

    async def delete_batch(self, ids: Sequence[str]) -> list[str]:
        """Delete up to 1,000 instances; returns the ids that were deleted (unknown ids
        are left out)."""
        results = await self.bulk("delete", ids=ids)
        return [r.id for r in results if r.result == "applied"]

    @abc.abstractmethod
    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        """Resume the wait that registered ``token`` (``wait_for_event(..., token=)``).

        Tokens are unique across the store, so the waiting instance may be of any
        workflow, not only this binding's.

        Returns:
            A handle on the instance that was resumed.

        Raises:
            NotFoundError: No wait with this token is waiting (unknown, expired, already
                resumed, or not registered yet: hook payloads are not kept for later).
            ValidationError: The payload does not fit the wait's ``payload_type``.
        """
