"""Hooks and webhooks on the engine's side: what a wait's ``payload_type`` is in the
store, how a taken payload becomes what ``run()`` gets, and how a host finds a webhook's
verifier while its instance is suspended.

The verifier (an ``HmacSignature`` holding a secret) lives only in the workflow's code:
the store keeps a description without the secret. To check a request, the host replays
the instance's ``run()`` from its stored history with a read-only step object
(:class:`_VerifierProbe`) until it reaches the ``create_webhook`` call that made the
token, and takes the verifier passed there. The replay writes nothing, runs no step
callback (every step before the webhook is recorded) and stops at the first step the
history does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durableflow import (
    HmacSignature,
    ValidationError,
    Webhook,
    WebhookRequest,
    Workflow,
    WorkflowEvent,
    WorkflowStep,
    WorkflowStepEvent,
)
from durableflow._duration import Duration
from durableflow._output import LogLevel
from durableflow._serde import describe_structure_error, loads, structure

from ..schema import json_schema
from ..store.base import HookRow, StepRow
from ._callbacks import _return_type, _UnresolvedReturn
from ._records import _event_timeout, _failed, child_result

if TYPE_CHECKING:
    from ._engine import Engine
    from ._spec import WorkflowSpec

#: How long a probe replay may take before the request is refused.
PROBE_TIMEOUT = 10.0
#: Verifiers kept in memory (never stored) per webhook token, most recent last.
VERIFIER_CACHE = 4096


class Verifiers:
    """The verifiers of webhooks this host has seen made or replayed, in memory only, so
    that a flood of requests to one webhook costs one probe replay, not one each."""

    def __init__(self, size: int = VERIFIER_CACHE) -> None:
        self._size = size
        self._known: OrderedDict[str, HmacSignature] = OrderedDict()

    def remember(self, token: str, verifier: HmacSignature) -> None:
        self._known[token] = verifier
        self._known.move_to_end(token)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def get(self, token: str) -> HmacSignature | None:
        return self._known.get(token)


def type_ref(payload_type: Any) -> str | None:
    """``module:qualname`` of a class that can be found again by that name in this
    process, else ``None`` (such a type is checked only when the wait takes a payload)."""
    if not isinstance(payload_type, type):
        return None
    ref = f"{payload_type.__module__}:{payload_type.__qualname__}"
    return ref if resolve_ref(ref) is payload_type else None


_SCHEMAS: dict[Any, dict[str, Any] | None] = {}


def payload_schema(payload_type: Any) -> dict[str, Any] | None:
    """The JSON Schema of a wait's ``payload_type`` (for the dashboard's event form), or
    ``None`` when it cannot be described."""
    try:
        return _SCHEMAS[payload_type]
    except KeyError:
        pass
    except TypeError:  # not hashable: describe it each time
        return _describe(payload_type)
    schema = _SCHEMAS[payload_type] = _describe(payload_type)
    return schema


def _describe(payload_type: Any) -> dict[str, Any] | None:
    try:
        return json_schema(payload_type)
    except Exception:
        return None


def resolve_ref(ref: str) -> Any:
    """The class a :func:`type_ref` names, among modules already loaded, or ``None``.

    Nothing is imported: a stored name never makes the host load code.
    """
    module, _, qualname = ref.partition(":")
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if found is None:
            return None
        found = getattr(found, part, None)
    return found


def check_payload(payload: Any, payload_type: Any) -> Any:
    """``payload`` structured into ``payload_type``.

    Raises:
        ValidationError: It does not fit, naming each failing field.
    """
    try:
        return structure(payload, payload_type)
    except Exception as exc:
        raise ValidationError(
            f"the payload does not fit {getattr(payload_type, '__name__', payload_type)}: "
            f"{describe_structure_error(exc, root='payload')}"
        ) from None


def check_registered(config: dict[str, Any] | None, payload: Any) -> None:
    """Check a payload sent to a registered wait whose ``payload_type`` can be found.

    Raises:
        ValidationError: It does not fit.
    """
    ref = (config or {}).get("payload_type")
    if isinstance(ref, str) and (payload_type := resolve_ref(ref)) is not None:
        check_payload(payload, payload_type)


def taken(event: WorkflowStepEvent[Any], config: dict[str, Any], payload_type: Any) -> Any:
    """What a wait returns for the event it took: a ``WebhookRequest`` for a webhook,
    else the event with the wait's own type and the payload structured.

    Raises:
        ValidationError: The payload does not fit ``payload_type``.
    """
    if config.get("webhook"):
        return WebhookRequest.from_json(event.payload)
    payload = event.payload
    if payload_type is not None:
        payload = check_payload(payload, payload_type)
    return WorkflowStepEvent(
        type=config.get("type", event.type), payload=payload, timestamp=event.timestamp
    )


def wait_failure(step: StepRow, type: str) -> Exception:
    """What a wait recorded as failed raises again on replay."""
    name = (step.error or {}).get("name")
    if name == "ValidationError":
        return ValidationError((step.error or {}).get("message", "invalid payload"))
    if name == "EventTimeoutError":
        return _event_timeout(step, type)
    return _failed(step)


def recorded_event(step: StepRow) -> WorkflowStepEvent[Any]:
    """The event a completed wait stored as its output."""
    data = loads(step.output) or {}
    return WorkflowStepEvent(
        type=data.get("type", ""),
        payload=data.get("payload"),
        timestamp=datetime.fromtimestamp(data.get("timestamp", 0.0), UTC),
    )


class _Stop(BaseException):
    """The probe reached a step the history does not have: the webhook is not ahead."""


class _VerifierProbe(WorkflowStep):
    """A read-only replay of ``run()`` that looks for the ``create_webhook`` of one token."""

    def __init__(
        self,
        steps: list[StepRow],
        token: str,
        found: asyncio.Future[Any],
        workflows: Mapping[str, WorkflowSpec],
    ) -> None:
        self._workflows = workflows
        self._history = {(s.name, s.count): s for s in steps}
        self._counts: dict[str, int] = {}
        self._token = token
        self._found = found

    def _recorded(self, name: str) -> StepRow:
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        step = self._history.get((name, count))
        if step is None or step.status not in ("complete", "failed"):
            raise _Stop()
        return step

    def _do(
        self, name: str, config: Any, callback: Callable[..., Any], *, rollback: Any = None
    ) -> Any:
        async def replay() -> Any:
            step = self._recorded(name)
            if step.status == "failed":
                raise _failed(step)
            result_type = _return_type(callback)
            if isinstance(result_type, _UnresolvedReturn):
                raise _Stop()
            return structure(loads(step.output), result_type)

        return replay()

    async def _sleep(self, name: str, duration: Duration | None, until: float | None) -> None:
        self._recorded(name)

    def _log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        """A replay logs nothing (the run already did, once)."""

    async def _wait_for_event(
        self, name: str, type: str, timeout: Duration, token: str | None, payload_type: Any
    ) -> WorkflowStepEvent[Any]:
        step = self._recorded(name)
        if step.status == "failed":
            raise wait_failure(step, type)
        return taken(recorded_event(step), step.config or {}, payload_type)  # type: ignore[no-any-return]

    async def _run_workflow(
        self,
        name: str,
        binding: Workflow[Any],
        params: Any,
        id: str | None,
        timeout: Duration | None,
        wait: bool,
    ) -> Any:
        """The child's id or recorded end; a child still awaited stops the probe."""
        return child_result(self._recorded(name), self._workflows)

    async def _create_webhook(self, name: str, verify: HmacSignature | None) -> Webhook:
        step = self._recorded(name)
        if step.status == "failed":
            raise _failed(step)
        data = loads(step.output)
        if data["token"] == self._token:
            if not self._found.done():
                self._found.set_result(verify)
            raise _Stop()
        return Webhook(data["token"], data["url"], _step=self, _name=name)

    async def _wait_webhook(self, webhook: Webhook, timeout: Duration) -> WebhookRequest:
        step = self._recorded(webhook._name)
        if step.status == "failed":
            raise wait_failure(step, "webhook")
        return WebhookRequest.from_json(recorded_event(step).payload)


async def find_verifier(engine: Engine, hook: HookRow) -> HmacSignature | None:
    """The verifier the code passed to the ``create_webhook`` that made ``hook``'s token:
    from memory, or found by a read-only replay of its instance (``None``: not found)."""
    known = engine.verifiers.get(hook.token)
    if known is not None:
        return known
    verifier = await _probe(engine, hook)
    if verifier is not None:
        engine.verifiers.remember(hook.token, verifier)
    return verifier


async def _probe(engine: Engine, hook: HookRow) -> HmacSignature | None:
    spec = engine.workflows.get(hook.workflow)
    row = await engine.store.get_instance(hook.workflow, hook.instance_id)
    if spec is None or row is None:
        return None
    steps = await engine.store.load_steps(row.key)
    found: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    event: WorkflowEvent[Any] = WorkflowEvent(
        payload=structure(loads(row.params), spec.params_type),
        timestamp=datetime.fromtimestamp(row.created_at, UTC),
        instance_id=row.id,
        workflow_name=spec.name,  # what run() saw when it made the webhook
    )
    workflow = spec.cls(engine.env)
    task = asyncio.ensure_future(
        workflow.run(event, _VerifierProbe(steps, hook.token, found, engine.workflows))
    )
    try:
        await asyncio.wait(
            {task, found}, timeout=PROBE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    if found.done():
        verifier: HmacSignature | None = found.result()
        return verifier
    found.cancel()
    return None
