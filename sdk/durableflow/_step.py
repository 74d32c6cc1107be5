"""``WorkflowStep``: the object ``run()`` builds a workflow from.

The SDK parses the call forms; the host implements the abstract primitives (``_do``,
``_sleep``, ``_wait_for_event``, ``_run_workflow``, ``_start_workflow``,
``_create_webhook``, ``_wait_webhook``).
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from ._binding import Workflow
from ._config import StepConfig
from ._duration import Duration
from ._errors import ValidationError
from ._output import LogLevel, check_level
from ._types import WorkflowStepEvent, check_id, check_step_name, check_token
from ._webhooks import HmacSignature, Webhook, WebhookRequest

__all__ = ["RollbackHandler", "StepCallback", "StepRollback", "WorkflowStep"]

StepCallback = Callable[..., Awaitable[Any]]
_ConfigArg = StepConfig | Mapping[str, Any] | None
#: A rollback handler: an async callable taking one ``RollbackContext``.
RollbackHandler = Callable[[Any], Awaitable[Any]]


@attrs.frozen
class StepRollback:
    """What ``step.do(..., rollback=, rollback_config=)`` registers for the host."""

    handler: RollbackHandler
    config: _ConfigArg = None


def _is_config(value: object) -> bool:
    return value is None or isinstance(value, StepConfig | Mapping)


class WorkflowStep(abc.ABC):
    """The step API handed to ``run()``. Implemented by the host.

    ``do`` has a call form and a decorator form::

        value = await step.do("fetch", fetch)                       # call form
        value = await step.do("fetch", {"retries": {...}}, fetch)   # call form with config

        @step.do("fetch", config={"timeout": "1 minute"})            # decorator form
        async def fetch() -> int: ...
        value = await fetch()

    Both forms take ``rollback=`` (an async handler of one ``RollbackContext``) and
    ``rollback_config=`` (the handler's retries and timeout; default: the step's own).
    """

    def do(self, *args: Any, **kwargs: Any) -> Any:
        """Run a durable step, or make a decorator that does.

        Returns:
            In the call form, an awaitable of the callback's result; in the decorator
            form, a decorator turning an async function into a zero-argument awaitable step.

        Raises:
            ValidationError: A bad name or config, or arguments of no known form.
            StepFailedError: (when awaited) the step failed for good.
        """
        config_kw = kwargs.pop("config", None)
        name_kw = kwargs.pop("name", None)
        rollback = _rollback(kwargs.pop("rollback", None), kwargs.pop("rollback_config", None))
        if kwargs:
            raise ValidationError(f"step.do() got unexpected keyword(s): {', '.join(kwargs)}")
        if args and callable(args[0]) and not isinstance(args[0], str):
            # bare decorator: @step.do
            if len(args) > 1 or name_kw is not None:
                raise ValidationError("step.do(callback) takes no other positional argument")
            return self._decorate(None, config_kw, rollback)(args[0])
        name: str | None = name_kw
        rest = args
        if rest:
            if name is not None:
                raise ValidationError("step.do() got the step name twice")
            name, rest = rest[0], rest[1:]
        if len(rest) == 0:
            return self._decorate(name, config_kw, rollback)
        if len(rest) == 1 and callable(rest[0]) and not _is_config(rest[0]):
            return self._do_checked(name, config_kw, rest[0], rollback)
        if len(rest) == 2 and _is_config(rest[0]) and callable(rest[1]):
            if config_kw is not None:
                raise ValidationError("step.do() got the config twice")
            return self._do_checked(name, rest[0], rest[1], rollback)
        raise ValidationError(
            "step.do() takes (name, callback), (name, config, callback), "
            "or is used as a decorator: @step.do(name, config=...)"
        )

    def _decorate(
        self, name: str | None, config: _ConfigArg, rollback: StepRollback | None
    ) -> Callable[[StepCallback], Callable[[], Awaitable[Any]]]:
        def decorator(func: StepCallback) -> Callable[[], Awaitable[Any]]:
            step_name = name if name is not None else getattr(func, "__name__", None)

            @functools.wraps(func)
            def run_step() -> Awaitable[Any]:
                result: Awaitable[Any] = self._do_checked(step_name, config, func, rollback)
                return result

            return run_step

        return decorator

    def _do_checked(
        self,
        name: object,
        config: _ConfigArg,
        callback: StepCallback,
        rollback: StepRollback | None = None,
    ) -> Any:
        check_step_name(name)
        assert isinstance(name, str)
        if not _is_config(config):
            raise ValidationError(
                f"step {name!r}: config must be a StepConfig or a dict, not {type(config).__name__}"
            )
        if rollback is None:
            return self._do(name, config, callback)
        return self._do(name, config, callback, rollback=rollback)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Sleep durably; the instance is suspended and costs no memory meanwhile.

        Args:
            name: The step's name.
            duration: How long: a timedelta, milliseconds, or a string like ``"1 day"``.
        """
        check_step_name(name)
        await self._sleep(name, duration, None)

    async def sleep_until(self, name: str, timestamp: datetime | float) -> None:
        """Sleep durably until a moment: an aware ``datetime`` or milliseconds since the epoch."""
        check_step_name(name)
        if isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                timestamp = timestamp.replace(tzinfo=UTC)
            until = timestamp.timestamp()
        elif isinstance(timestamp, int | float):
            until = float(timestamp) / 1000.0
            if not math.isfinite(until):
                raise ValidationError(
                    f"sleep_until({name!r}): timestamp must be a finite number of "
                    f"milliseconds, not {timestamp!r}"
                )
        else:
            raise ValidationError(
                f"sleep_until({name!r}): timestamp must be a datetime or milliseconds since "
                f"the epoch, not {type(timestamp).__name__}"
            )
        await self._sleep(name, None, until)

    async def wait_for_event(
        self,
        name: str,
        type: str,
        *,
        timeout: Duration = "24 hours",
        token: str | None = None,
        payload_type: Any = None,
    ) -> WorkflowStepEvent[Any]:
        """Wait durably for an event of ``type`` sent to this instance.

        Events are matched by type, first in first out; an event sent earlier is kept
        until a wait takes it, and is never delivered twice.

        Args:
            name: The step's name.
            type: The event type it waits for.
            timeout: How long to wait at most.
            token: Make the wait a hook: whoever knows the token resumes it with
                ``resume_hook(token, payload)`` (``POST /api/hooks/{token}``), without
                knowing the workflow or the instance. A hook is resumed only through its
                token, and only while it waits; the token is unique among waiting hooks
                of the whole store.
            payload_type: Structure the payload into this type (an attrs class or any
                type cattrs structures); a payload that does not fit is refused when it
                is sent to a registered wait, or fails the step with ``ValidationError``
                when the wait takes it.

        Raises:
            EventTimeoutError: No event arrived within ``timeout``.
            ValidationError: The payload does not structure into ``payload_type``.
            StepFailedError: ``token`` is held by another waiting hook
                (error name ``TokenInUseError``).
        """
        check_step_name(name)
        check_id(type, what="event type")
        if token is not None:
            check_token(token)
        return await self._wait_for_event(name, type, timeout, token, payload_type)

    async def create_webhook(self, name: str, verify: HmacSignature | None = None) -> Webhook:
        """Make a webhook: a URL an outside service calls to resume this instance.

        The token and URL are recorded as a step, so a replay returns the same ones.

        Args:
            name: The step's name.
            verify: Check each request's signature (``HmacSignature.github(secret)``...);
                a request that fails gets 401 and does not resume the instance.
        """
        check_step_name(name)
        if verify is not None and not isinstance(verify, HmacSignature):
            raise ValidationError(
                f"create_webhook({name!r}): verify must be an HmacSignature, "
                f"not {type(verify).__name__}"
            )
        return await self._create_webhook(name, verify)

    def log(self, message: str, /, *, level: str = "info", **fields: Any) -> None:
        """Add an entry to the instance's log from ``run()`` itself.

        Recorded once per execution: ``run()`` replays from its start on every
        activation, and a replay does not log again (an entry is keyed by its position in
        the history). The entry also goes to the ``durableflow.workflow`` Python logger.

        Args:
            message: The message.
            level: ``debug``, ``info`` (default), ``warning`` or ``error``.
            **fields: JSON-representable values stored with it.

        Raises:
            ValidationError: A bad level or message.
        """
        if not isinstance(message, str):
            raise ValidationError(f"a log message must be a str, not {type(message).__name__}")
        self._log(check_level(level), message, fields)

    def _log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        """Record a run-level log entry; the host's step object implements it."""
        raise ValidationError("this step object was not made by a host: it has no log")

    async def run_workflow(
        self,
        name: str,
        binding: Workflow[Any],
        *,
        params: Any = None,
        id: str | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Start a child workflow and wait durably for its end; its output.

        The child is created once: its id defaults to one derived from this instance's id
        and the step's key (name and count), so a crash or a replay never creates a second.
        While the child runs, this instance is suspended and holds no memory; the child's
        end wakes it as an event would. A restart of this instance finds the child by
        its id again and does not run it again.

        Args:
            name: The step's name.
            binding: The child workflow's binding, from ``self.env``.
            params: The child's params, checked against its params type.
            id: The child's instance id (default: derived, see above).
            timeout: Stop waiting after this long (the child goes on running).

        Returns:
            The child's output (the value its ``run()`` returned, as JSON).

        Raises:
            ChildWorkflowError: The child errored, was terminated, or the timeout passed.
            InstanceExistsError: ``id`` names an instance that is not this one's child.
            InvalidParamsError: ``params`` do not fit the child's params type.
        """
        check_step_name(name)
        if id is not None:
            check_id(id)
        return await self._run_workflow(name, binding, params, id, timeout, True)

    async def start_workflow(
        self, name: str, binding: Workflow[Any], *, params: Any = None, id: str | None = None
    ) -> str:
        """Start a child workflow without waiting for it; the child's id.

        Like :meth:`run_workflow`, the child is created once and the id is the same on
        every replay.

        Raises:
            InstanceExistsError: ``id`` names an instance that is not this one's child.
            InvalidParamsError: ``params`` do not fit the child's params type.
        """
        check_step_name(name)
        if id is not None:
            check_id(id)
        child_id: str = await self._run_workflow(name, binding, params, id, None, False)
        return child_id

    @abc.abstractmethod
    def _do(
        self,
        name: str,
        config: _ConfigArg,
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
    async def _create_webhook(self, name: str, verify: HmacSignature | None) -> Webhook: ...

    @abc.abstractmethod
    async def _wait_webhook(self, webhook: Webhook, timeout: Duration) -> WebhookRequest: ...

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


def _rollback(handler: object, config: object) -> StepRollback | None:
    """The rollback registration of a ``step.do`` call, checked."""
    if handler is None:
        if config is not None:
            raise ValidationError("step.do(): rollback_config was given without rollback=")
        return None
    if not callable(handler):
        raise ValidationError(
            f"step.do(): rollback must be an async callable taking a RollbackContext, "
            f"not {type(handler).__name__}"
        )
    if not _is_config(config):
        raise ValidationError(
            "step.do(): rollback_config must be a StepConfig or a dict, "
            f"not {type(config).__name__}"
        )
    return StepRollback(handler, config)  # type: ignore[arg-type]
