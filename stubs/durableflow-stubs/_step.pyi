import abc
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeAlias, TypeVar, overload

import attrs

from ._binding import Workflow
from ._config import StepConfig, StepConfigDict
from ._duration import Duration
from ._output import LogLevel
from ._types import RollbackContext, StepContext, WorkflowStepEvent
from ._webhooks import HmacSignature, Webhook, WebhookRequest

__all__ = ["RollbackHandler", "StepCallback", "StepRollback", "WorkflowStep"]

_T = TypeVar("_T")
_P = TypeVar("_P")
_O = TypeVar("_O")

StepCallback: TypeAlias = Callable[..., Awaitable[Any]]
RollbackHandler: TypeAlias = Callable[[Any], Awaitable[Any]]

# What a step may be configured with: the attrs class or its dict form.
_Config: TypeAlias = StepConfig | StepConfigDict

# A rollback handler of a step whose result is a ``_T``.
_Undo: TypeAlias = Callable[[RollbackContext[_T]], Awaitable[object]]

@attrs.frozen(order=False)
class StepRollback:
    handler: RollbackHandler
    config: StepConfig | Mapping[str, Any] | None = None

class _StepDecorator(Protocol):
    """What ``@step.do("name")`` / ``@step.do()`` / ``@step.do(config=...)`` return."""

    @overload
    def __call__(self, func: Callable[[], Awaitable[_T]], /) -> Callable[[], Awaitable[_T]]: ...
    @overload
    def __call__(
        self, func: Callable[[StepContext], Awaitable[_T]], /
    ) -> Callable[[], Awaitable[_T]]: ...

class _RollbackStepDecorator(Protocol[_T]):
    """What ``@step.do("name", rollback=undo)`` returns: the function must return what
    ``undo``'s ``RollbackContext`` holds."""

    @overload
    def __call__(self, func: Callable[[], Awaitable[_T]], /) -> Callable[[], Awaitable[_T]]: ...
    @overload
    def __call__(
        self, func: Callable[[StepContext], Awaitable[_T]], /
    ) -> Callable[[], Awaitable[_T]]: ...

class WorkflowStep(abc.ABC):
    # Call form: ``await step.do("name", callback)``; ``rollback`` gets the step's result.
    @overload
    def do(
        self,
        name: str,
        callback: Callable[[], Awaitable[_T]],
        /,
        *,
        rollback: _Undo[_T] | None = None,
        rollback_config: _Config | None = None,
    ) -> Coroutine[Any, Any, _T]: ...
    @overload
    def do(
        self,
        name: str,
        callback: Callable[[StepContext], Awaitable[_T]],
        /,
        *,
        rollback: _Undo[_T] | None = None,
        rollback_config: _Config | None = None,
    ) -> Coroutine[Any, Any, _T]: ...
    # Call form with a config: ``await step.do("name", {"timeout": "1 minute"}, callback)``.
    @overload
    def do(
        self,
        name: str,
        config: _Config,
        callback: Callable[[], Awaitable[_T]],
        /,
        *,
        rollback: _Undo[_T] | None = None,
        rollback_config: _Config | None = None,
    ) -> Coroutine[Any, Any, _T]: ...
    @overload
    def do(
        self,
        name: str,
        config: _Config,
        callback: Callable[[StepContext], Awaitable[_T]],
        /,
        *,
        rollback: _Undo[_T] | None = None,
        rollback_config: _Config | None = None,
    ) -> Coroutine[Any, Any, _T]: ...
    # Bare decorator: ``@step.do`` (the step is named after the function).
    @overload
    def do(self, func: Callable[[], Awaitable[_T]], /) -> Callable[[], Awaitable[_T]]: ...
    @overload
    def do(
        self, func: Callable[[StepContext], Awaitable[_T]], /
    ) -> Callable[[], Awaitable[_T]]: ...
    # Decorator factory with a rollback: ``@step.do("name", rollback=undo)``.
    @overload
    def do(
        self,
        name: str | None = None,
        *,
        config: _Config | None = None,
        rollback: _Undo[_T],
        rollback_config: _Config | None = None,
    ) -> _RollbackStepDecorator[_T]: ...
    # Decorator factory: ``@step.do("name")``, ``@step.do("name", config=...)``, ``@step.do()``.
    @overload
    def do(self, name: str | None = None, *, config: _Config | None = None) -> _StepDecorator: ...
    async def sleep(self, name: str, duration: Duration) -> None: ...
    async def sleep_until(self, name: str, timestamp: datetime | float) -> None: ...
    # Without payload_type the payload is plain JSON; with one, it is structured into it.
    @overload
    async def wait_for_event(
        self,
        name: str,
        type: str,
        *,
        timeout: Duration = "24 hours",
        token: str | None = None,
        payload_type: None = None,
    ) -> WorkflowStepEvent[Any]: ...
    @overload
    async def wait_for_event(
        self,
        name: str,
        type: str,
        *,
        timeout: Duration = "24 hours",
        token: str | None = None,
        payload_type: type[_T],
    ) -> WorkflowStepEvent[_T]: ...
    async def create_webhook(self, name: str, verify: HmacSignature | None = None) -> Webhook: ...
    def log(self, message: str, /, *, level: LogLevel = "info", **fields: Any) -> None: ...
    # Child workflows: ``params`` is checked against the binding's params type.
    # run_workflow returns the child's output type: Workflow[ParamsT, OutputT]'s OutputT.
    async def run_workflow(
        self,
        name: str,
        binding: Workflow[_P, _O],
        *,
        params: _P | None = None,
        id: str | None = None,
        timeout: Duration | None = None,
    ) -> _O: ...
    async def start_workflow(
        self, name: str, binding: Workflow[_P], *, params: _P | None = None, id: str | None = None
    ) -> str: ...
    # The host implements these.
    def _log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None: ...
    @abc.abstractmethod
    def _do(
        self,
        name: str,
        config: StepConfig | Mapping[str, Any] | None,
        callback: StepCallback,
        *,
        rollback: StepRollback | None = None,
    ) -> Awaitable[Any]: ...
    @abc.abstractmethod
    async def _sleep(self, name: str, duration: Duration | None, until: float | None) -> None: ...
    @abc.abstractmethod
    async def _wait_for_event(
        self, name: str, type: str, timeout: Duration, token: str | None, payload_type: Any
    ) -> WorkflowStepEvent[Any]: ...
    @abc.abstractmethod
    async def _run_workflow(
        self,
        name: str,
        binding: Workflow[Any],
        params: Any,
        id: str | None,
        timeout: Duration | None,
        wait: bool,
    ) -> Any: ...
    @abc.abstractmethod
    async def _create_webhook(self, name: str, verify: HmacSignature | None) -> Webhook: ...
    @abc.abstractmethod
    async def _wait_webhook(self, webhook: Webhook, timeout: Duration) -> WebhookRequest: ...
