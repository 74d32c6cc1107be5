"""The step object handed to ``run()``: the engine's side of the SDK's ``WorkflowStep``.

``step.do`` goes through named phases, each in its own method (the way Temporal's workflow
instance applies each kind of job in its own ``_apply_*``): replay from history
(``_replay_do``), wait out a back-off (``_back_off``, only when one is due), one attempt
(``_begin_attempt``, ``_attempt``), then record a retry (``_record_retry``), a success
(``_record_success``) or a failure (``_record_failure``). ``step.sleep`` and
``step.wait_for_event`` record a wait and park the branch on it; a wait with a token (a
hook) registers it with the wait, and ``step.create_webhook`` draws a token in a step.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from durableflow import (
    HmacSignature,
    LimitExceededError,
    NonDeterminismError,
    NonRetryableError,
    ResolvedStepConfig,
    RetryableError,
    SerializationError,
    StepContext,
    StepTimeoutError,
    ValidationError,
    Webhook,
    WebhookRequest,
    Workflow,
    WorkflowStep,
    WorkflowStepEvent,
)
from durableflow._config import DelayFunction, delay_function, resolve_config
from durableflow._duration import Duration, to_seconds
from durableflow._output import LogLevel
from durableflow._serde import dumps, loads, structure
from durableflow._step import StepRollback

from ..store.base import HookKind, HookRow, StepRow, StepType, child_event_type
from ._activation import ParkKind, _Activation, _future, _Parked
from ._bindings import EngineWorkflow
from ._callbacks import _awaited, _NotAwaitable, _return_type, _UnresolvedReturn, _wants_ctx
from ._hooks import payload_schema, recorded_event, taken, type_ref, wait_failure
from ._output import StepOutput
from ._records import _config_json, _error_info, _failed, child_result
from ._rollback import Undo

#: Seconds an async delay function may take (Cloudflare's engine allows 5 as well); one
#: that takes longer fails its step, as one that raises does.
DELAY_FUNCTION_TIMEOUT = 5.0


def _child_id(workflow: str, parent_id: str, name: str, count: int) -> str:
    """The id a child gets by default: the parent's id and a digest of the step's key,
    the same on every replay and after a restart of the parent."""
    raw = f"{workflow}\x00{parent_id}\x00{name}\x00{count}"
    return f"{parent_id[:60]}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


@attrs.define(eq=False)
class _DoCall:
    """One ``step.do`` call: what every phase of it needs."""

    name: str
    count: int
    callback: Callable[..., Awaitable[Any]]
    wants_ctx: bool
    result_type: Any  # a type, or an _UnresolvedReturn that fails every attempt
    config: ResolvedStepConfig
    step: StepRow
    #: the live delay function of this execution's config (a function cannot be stored)
    delay_fn: DelayFunction | None = None


@attrs.frozen
class _Failure:
    """An attempt that raised: the error recorded, and whether another attempt may follow
    (after ``retry_after`` seconds, when a ``RetryableError`` said so)."""

    error: dict[str, str]
    cause: BaseException
    retryable: bool
    retry_after: float | None = None


class _EngineStep(WorkflowStep):
    """The step object handed to ``run()``: the engine's side of the SDK's ``WorkflowStep``."""

    def __init__(self, act: _Activation) -> None:
        self._act = act

    def _do(
        self,
        name: str,
        config: Any,
        callback: Callable[..., Awaitable[Any]],
        *,
        rollback: StepRollback | None = None,
    ) -> Any:
        return self._run_do(name, config, callback, rollback)

    def _log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        self._act.run_log(level, message, fields)

    # --- step.do ----------------------------------------------------------------------
    async def _run_do(
        self,
        name: str,
        config: Any,
        callback: Callable[..., Awaitable[Any]],
        rollback: StepRollback | None = None,
    ) -> Any:
        act = self._act
        # validate before the step takes its key, so a bad call leaves the history checks intact
        wants_ctx = _wants_ctx(callback)
        fresh_config = resolve_config(config, act.spec.defaults)
        undo_config = (
            resolve_config(rollback.config, act.spec.defaults)
            if rollback is not None and rollback.config is not None
            else None
        )
        delay_fn = delay_function(config)
        if rollback is not None and delay_function(rollback.config) is not None:
            # a rollback's retries are not driven by _next_delay: refuse, not ignore
            raise ValidationError(
                f"step {name!r}: rollback_config cannot take a delay function; "
                "give its retries a duration"
            )
        count, step = await act.enter(name, "do")
        result_type = _return_type(callback)
        back_off: float | None = None
        if step is None:
            step = act.new_step(name, count, "do")
            step.config = _config_json(fresh_config)
            resolved = fresh_config
        elif step.status in ("complete", "failed"):
            if rollback is not None:
                act.register_rollback(Undo(step, rollback.handler, undo_config, result_type))
            return self._replay_do(step, result_type)
        else:  # an attempt was running or a retry was due when the last activation ended
            resolved = ResolvedStepConfig.from_json(step.config or {})
            back_off = step.wake_at if step.status == "retrying" else None
            if rollback is not None:  # it started: its rollback runs (as Cloudflare's)
                act.register_rollback(Undo(step, rollback.handler, undo_config, result_type))
        call = _DoCall(name, count, callback, wants_ctx, result_type, resolved, step, delay_fn)
        while True:
            if back_off is not None:
                await self._back_off(call, back_off)
            act.check_stop()
            attempt, entry = self._begin_attempt(call)
            if rollback is not None and attempt == 1:
                act.register_rollback(Undo(step, rollback.handler, undo_config, result_type))
            act.begin()
            observer = act.engine.observer
            observed = observer.step_started(act.spec.name, act.lease.id, call.step)  # observe:
            progressed = False
            try:
                value, failure = await self._attempt(call, attempt)
                if failure is not None:
                    attempt_error, delay = failure.error, 0.0
                    if failure.retryable and attempt <= resolved.retries.limit:
                        delay, failure = await self._next_delay(call, attempt, failure)
                    if not failure.retryable or attempt > resolved.retries.limit:
                        await self._record_failure(step, entry, failure.error, attempt_error)
                        raise _failed(step) from failure.cause
                    back_off = await self._record_retry(call, entry, failure.error, delay)
                    progressed = True
                    continue
                await self._record_success(call, entry, value)
                act.engine.notify(act.spec.name, act.lease.id, None)
                progressed = True
                return value
            finally:
                observer.step_ended(act.spec.name, act.lease.id, call.step, observed)  # observe:
                act.end(progressed)

    def _replay_do(self, step: StepRow, result_type: Any) -> Any:
        """Replay from history: the stored result, structured into the annotated type, or
        the stored failure raised again."""
        if step.status == "failed":
            raise _failed(step)
        if isinstance(result_type, _UnresolvedReturn):
            raise self._act.fail(SerializationError(f"step {step.name!r}: {result_type.message}"))
        return structure(loads(step.output), result_type)

    async def _back_off(self, call: _DoCall, back_off: float) -> None:
        """Wait out a retry's back-off: a timer like a sleep, beside the run's other waits."""
        act = self._act
        if back_off > act.engine.clock.now() and not (
            act.hooks and act.hooks.retry_delays_disabled()
        ):
            act.check_stop()
            await act.park(_Parked(call.step, "retry", _future(), deadline=back_off))

    def _begin_attempt(self, call: _DoCall) -> tuple[int, dict[str, Any]]:
        """Record that an attempt starts; returns its number and its attempt-log entry."""
        act = self._act
        step = call.step
        attempt = step.attempts + 1
        now = act.engine.clock.now()
        step.attempts = attempt
        step.status = "running"
        step.wake_at = None
        if step.started_at is None:
            step.started_at = now
        entry: dict[str, Any] = {"started_at": now, "ended_at": None, "error": None}
        step.attempt_log.append(entry)
        act.engine.store.put_step_nowait(act.lease, step)
        return attempt, entry

    async def _attempt(self, call: _DoCall, attempt: int) -> tuple[Any, _Failure | None]:
        """One attempt: the callback (or a test hook's outcome) under the step's timeout.

        Returns:
            ``(result, None)``, or ``(None, failure)`` when the attempt raised.
        """
        act = self._act
        name = call.name
        outcome = act.hooks.step_outcome(name, call.count, attempt) if act.hooks else None
        timeout = call.config.timeout.total_seconds()
        timer = act.engine.clock.timeout(timeout)
        try:
            if isinstance(call.result_type, _UnresolvedReturn):
                raise NonRetryableError(call.result_type.message)
            async with timer:
                if outcome is None:
                    if call.wants_ctx:
                        output = StepOutput(act, name, attempt)
                        ctx = StepContext(
                            attempt=attempt,
                            name=name,
                            count=call.count,
                            step_id=act.step_id(name, call.count),
                            config=call.config,
                            sink=output,
                        )
                        try:
                            return await _awaited(name, call.callback(ctx)), None
                        finally:
                            output.close()
                    return await _awaited(name, call.callback()), None
                if outcome[0] == "result":
                    return outcome[1], None
                if outcome[0] == "error":
                    raise outcome[1]
                raise TimeoutError
        except (NonRetryableError, _NotAwaitable) as exc:
            return None, _Failure(_error_info(exc), exc, retryable=False)
        except RetryableError as exc:
            return None, _Failure(_error_info(exc), exc, True, retry_after=exc.retry_after)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and (
                timer.expired() or (outcome is not None and outcome[0] == "timeout")
            ):
                message = f"step {name!r} attempt {attempt} timed out after {timeout:g}s"
                error = {"name": "StepTimeoutError", "message": message}
            else:
                error = _error_info(exc)
            return None, _Failure(error, exc, retryable=True)

    async def _next_delay(
        self, call: _DoCall, attempt: int, failure: _Failure
    ) -> tuple[float, _Failure]:
        """Seconds before the next attempt: a ``RetryableError``'s ``retry_after``, else
        what the delay function returns, else the back-off of the config.

        Returns:
            ``(seconds, failure)``; a delay function that raises or returns no valid
            duration turns ``failure`` into a non-retryable one with its error.
        """
        if failure.retry_after is not None:
            return failure.retry_after, failure
        config = call.config
        if config.retries.delay is not None or call.delay_fn is None:
            if config.retries.delay is None:  # stored as a function, now a static delay
                config = resolve_config(None, self._act.spec.defaults)
            return config.delay_before_retry(attempt), failure
        what = f"the delay of step {call.name!r} (returned by its delay function)"
        error = failure.cause
        if failure.error["name"] == "StepTimeoutError":  # the function sees what the log says
            message = failure.error["message"]
            error = StepTimeoutError(
                message, step_name=call.name, error_name="StepTimeoutError", error_message=message
            )
        try:
            value: Any = call.delay_fn(attempt, error)
            if inspect.isawaitable(value):
                try:
                    async with asyncio.timeout(DELAY_FUNCTION_TIMEOUT):
                        value = await value
                except TimeoutError:
                    raise TimeoutError(
                        f"the delay function of step {call.name!r} did not return within "
                        f"{DELAY_FUNCTION_TIMEOUT:g} seconds"
                    ) from None
            return to_seconds(value, what=what), failure
        except Exception as exc:
            return 0.0, _Failure(_error_info(exc), exc, retryable=False)

    async def _record_retry(
        self, call: _DoCall, entry: dict[str, Any], error: dict[str, str], delay: float
    ) -> float | None:
        """Record a failed attempt that another will follow ``delay`` seconds later;
        returns the back-off's end (``None`` when the next attempt may start at once)."""
        act = self._act
        step = call.step
        now = act.engine.clock.now()
        if act.hooks and act.hooks.retry_delays_disabled():
            delay = 0.0
        entry["ended_at"] = now
        entry["error"] = error
        step.error = error
        step.status = "retrying"
        step.wake_at = now + delay
        await act.engine.observer.commit(act.engine.store.put_step(act.lease, step))  # observe:
        return step.wake_at if delay > 0 else None

    def _record_success(self, call: _DoCall, entry: dict[str, Any], value: Any) -> Awaitable[None]:
        """Record the result (a result that cannot be stored fails the step instead).

        Returns:
            The write to await (not a coroutine of its own: one frame less per step);
            its caller tells the listeners once it is stored.
        """
        act = self._act
        step = call.step
        try:
            data = dumps(value, what=lambda: f"the result of step {call.name!r}")
            if len(data) > act.engine.limits.max_payload_bytes:
                act.check_size(data, f"the result of step {call.name!r}")
        except (SerializationError, LimitExceededError) as exc:
            return self._record_unstorable(step, entry, exc)
        now = act.engine.clock.now()
        entry["ended_at"] = now
        step.status = "complete"
        step.output = data
        step.error = None
        step.ended_at = now
        return act.engine.observer.commit(act.engine.store.put_step(act.lease, step))  # observe:

    async def _record_unstorable(
        self, step: StepRow, entry: dict[str, Any], exc: SerializationError | LimitExceededError
    ) -> None:
        """A result that cannot be stored: the step fails for good with why."""
        await self._record_failure(step, entry, _error_info(exc))
        raise _failed(step) from exc

    async def _record_failure(
        self,
        step: StepRow,
        entry: dict[str, Any],
        error: dict[str, str],
        attempt_error: dict[str, str] | None = None,
    ) -> None:
        """Record the step as failed for good: ``run()`` gets a ``StepFailedError``.

        ``attempt_error``: what the attempt raised, when the step fails with another
        error (its delay function's); the attempt log keeps it."""
        act = self._act
        now = act.engine.clock.now()
        entry["ended_at"] = now
        entry["error"] = attempt_error or error
        step.error = error
        step.status = "failed"
        step.ended_at = now
        await act.engine.store.put_step(act.lease, step)
        act.engine.notify(act.spec.name, act.lease.id, None)

    # --- step.sleep, step.sleep_until, step.wait_for_event ----------------------------
    async def _sleep(self, name: str, duration: Duration | None, until: float | None) -> None:
        act = self._act
        engine = act.engine
        clock = engine.clock
        if until is None:
            # None is not a duration: to_seconds names it in a ValidationError
            length = to_seconds(duration, what=f"duration of sleep {name!r}")  # type: ignore[arg-type]
        count, step = await act.enter(name, "sleep")
        if step is not None:
            if step.status == "complete":
                await act.replay_resolution(step)
                return
            if step.status == "waiting" and act.sleep_is_over(step):
                return
            await self._park_recorded(step, "sleep", step.wake_at, None)
            return
        now = clock.now()
        if until is None:
            seconds = length
            wake_at = now + seconds
        else:
            seconds = until - now
            wake_at = until
        if seconds > engine.limits.max_sleep_seconds:
            raise LimitExceededError(
                f"sleep {name!r} of {seconds:.0f}s is over the limit of "
                f"{engine.limits.max_sleep_seconds:.0f}s"
            )
        act.check_stop()
        step = act.new_step(name, count, "sleep")
        step.status = "waiting"
        step.started_at = now
        step.wake_at = wake_at
        step.attempts = 1
        if act.sleep_is_over(step):
            return
        act.write_step(step)
        await act.park(_Parked(step, "sleep", _future(), deadline=wake_at))

    async def _park_recorded(
        self,
        step: StepRow,
        kind: ParkKind,
        deadline: float | None,
        type: str | None,
        payload_type: Any = None,
    ) -> Any:
        """Replay reached a wait the history has as pending or cancelled: block on it."""
        act = self._act
        if step.status == "cancelled":
            return await act.park(_Parked(step, "cancelled", _future()))
        if step.status != "waiting":
            raise act.fail(
                NonDeterminismError(
                    f"instance {act.lease.id!r}: {step.type} step {step.name!r} "
                    f"(#{step.count}) has status {step.status!r} in the history"
                )
            )
        if not act.replay_only:
            act.check_stop()
        return await act.park(
            _Parked(
                step,
                kind,
                _future(),
                deadline=deadline,
                event_type=type,
                payload_type=payload_type,
            )
        )

    async def _wait_for_event(
        self, name: str, type: str, timeout: Duration, token: str | None, payload_type: Any
    ) -> WorkflowStepEvent[Any]:
        config: dict[str, Any] = {"type": type}
        ref = type_ref(payload_type)
        if ref is not None:
            config["payload_type"] = ref
        if payload_type is not None and (schema := payload_schema(payload_type)) is not None:
            config["payload_schema"] = schema
        if token is not None:
            config["token"] = token
        event: WorkflowStepEvent[Any] = await self._wait(name, config, timeout, payload_type)
        return event

    async def _wait(
        self, name: str, config: dict[str, Any], timeout: Duration, payload_type: Any
    ) -> Any:
        """A ``wait_for_event`` (``config["token"]``: a hook) or a webhook's wait."""
        act = self._act
        engine = act.engine
        clock = engine.clock
        type = config["type"]
        seconds = to_seconds(timeout, what=f"timeout of wait {name!r}")
        count, step = await act.enter(name, "wait_for_event")
        if step is not None:
            recorded = step.config or {}
            if step.status == "complete":
                await act.replay_resolution(step)
                # a payload that fails here failed when it was taken, too (a crash came
                # before the failure was written): the same ValidationError
                return taken(recorded_event(step), recorded, payload_type)
            if step.status == "failed":
                await act.replay_resolution(step)
                raise wait_failure(step, type)
            channel = recorded.get("channel", type)
            return await self._park_recorded(step, "event", step.wake_at, channel, payload_type)
        act.check_stop()
        now = clock.now()
        step = act.new_step(name, count, "wait_for_event")
        step.status = "waiting"
        step.started_at = now
        step.wake_at = now + seconds
        step.attempts = 1
        step.config = {**config, "timeout": seconds}
        token = config.get("token")
        channel = type
        if config.get("webhook"):
            channel = step.config["channel"] = f"webhook:{token}"
            act.write_step(step)
        elif token is not None:
            channel = step.config["channel"] = f"hook:{step.seq}"
            await self._register_hook(step, token, channel)
        else:
            # even an event already sent is taken when run() next blocks, in the order of waits
            act.write_step(step)
        return await act.park(
            _Parked(
                step,
                "event",
                _future(),
                deadline=step.wake_at,
                event_type=channel,
                payload_type=payload_type,
            )
        )

    async def _register_hook(self, step: StepRow, token: str, channel: str) -> None:
        """Write a hook's wait with its token; a token a live wait holds fails the step."""
        act = self._act
        store = act.engine.store
        hook = self._hook_row("hook", token, step.name, step.count, channel, None)
        act.begin()
        try:
            if await store.register_hook(act.lease, hook, step):
                return
            step.status = "failed"
            step.wake_at = None
            step.ended_at = act.engine.clock.now()
            step.error = {
                "name": "TokenInUseError",
                "message": f"wait_for_event {step.name!r}: the hook token {token!r} is held "
                "by another waiting hook; a token is unique among waiting hooks of the store",
            }
            await store.put_step(act.lease, step)
        finally:
            act.end(False)
        act.engine.notify(act.spec.name, act.lease.id, None)
        raise _failed(step)

    def _hook_row(
        self,
        kind: HookKind,
        token: str,
        name: str,
        count: int,
        channel: str,
        verify: dict[str, Any] | None,
    ) -> HookRow:
        """The registration of a token by this (running) instance's step ``(name, count)``."""
        act = self._act
        return HookRow(
            token=token,
            kind=kind,
            workflow=act.spec.name,
            instance_id=act.lease.id,
            key=act.lease.key,
            instance_status="running",
            step=name,
            count=count,
            channel=channel,
            verify=verify,
            created_at=act.engine.clock.now(),
            consumed_at=None,
            step_status=None,
            step_config=None,
        )

    # --- step.create_webhook, webhook.wait ---------------------------------------------
    async def _create_webhook(self, name: str, verify: HmacSignature | None) -> Webhook:
        act = self._act
        engine = act.engine

        async def register(ctx: StepContext) -> dict[str, str]:
            token = secrets.token_urlsafe(16)  # 128 bits: the URL is the secret
            described = verify.describe() if verify is not None else None
            hook = self._hook_row("webhook", token, name, ctx.count, f"webhook:{token}", described)
            if not await engine.store.register_hook(act.lease, hook, None):
                raise RuntimeError("a webhook token was drawn twice")  # 2**-128: try again
            return {"token": token, "url": f"{engine.public_url}/hooks/{token}"}

        data = await self._run_do(name, _WEBHOOK_STEP, register)
        if verify is not None:
            engine.verifiers.remember(data["token"], verify)
        return Webhook(data["token"], data["url"], _step=self, _name=name)

    async def _wait_webhook(self, webhook: Webhook, timeout: Duration) -> WebhookRequest:
        config = {"type": "webhook", "token": webhook.token, "webhook": True}
        request: WebhookRequest = await self._wait(webhook._name, config, timeout, None)
        return request

    # --- step.run_workflow, step.start_workflow ---------------------------------------
    async def _run_workflow(
        self,
        name: str,
        binding: Workflow[Any],
        params: Any,
        id: str | None,
        timeout: Duration | None,
        wait: bool,
    ) -> Any:
        act = self._act
        if not (isinstance(binding, EngineWorkflow) and binding.engine is act.engine):
            raise ValidationError(
                f"step {name!r}: the child's binding must be one of this host's workflow "
                f"bindings (self.env.NAME), not {binding!r}"
            )
        seconds = None
        if timeout is not None:
            seconds = to_seconds(timeout, what=f"timeout of run_workflow {name!r}")
        type: StepType = "run_workflow" if wait else "start_workflow"
        count, step = await act.enter(name, type)
        if step is None:
            step = await self._start_child(name, count, type, binding.name, params, id, seconds)
        if step.status in ("complete", "failed"):
            await act.replay_resolution(step)
        elif step.status == "waiting" and wait:
            config = step.config or {}
            event_type = child_event_type(config.get("workflow", ""), config.get("id", ""))
            await self._park_recorded(step, "event", step.wake_at, event_type)
        else:
            await self._park_recorded(step, "event", None, None)  # cancelled or inconsistent
        return self._child_result(step)

    async def _start_child(
        self,
        name: str,
        count: int,
        type: StepType,
        workflow: str,
        params: Any,
        id: str | None,
        timeout: float | None,
    ) -> StepRow:
        """Record the step and create the child, in one transaction; the step."""
        act = self._act
        engine = act.engine
        child_id = id if id is not None else _child_id(act.spec.name, act.lease.id, name, count)
        if type == "run_workflow":
            self._claim_child_wait(name, count, workflow, child_id)
        act.check_stop()
        child = attrs.evolve(engine.prepare(workflow, child_id, params), parent=act.lease.key)
        now = engine.clock.now()
        step = act.new_step(name, count, type)
        step.started_at = now
        step.attempts = 1
        step.config = {"workflow": workflow, "id": child_id}
        if type == "run_workflow":
            step.status = "waiting"
            if timeout is not None:
                step.config["timeout"] = timeout
                step.wake_at = now + timeout
        else:
            step.status = "complete"
            step.ended_at = now
            step.output = dumps(child_id, what="a child id")
        act.begin()
        progressed = False
        try:
            outcome = await engine.store.start_child(act.lease, step, child)
            if outcome == "taken":
                step.status = "failed"
                step.output = None
                step.wake_at = None
                step.ended_at = now
                step.config["status"] = "taken"
                step.error = {
                    "name": "InstanceExistsError",
                    "message": f"instance {child_id!r} of workflow {workflow!r} already exists "
                    "and is not a child of this instance",
                }
                await engine.store.put_step(act.lease, step)
            progressed = True
        finally:
            act.end(progressed)
        if outcome == "created":
            engine.notify(workflow, child_id, "queued")
        engine.notify(act.spec.name, act.lease.id, None)
        engine.kick()
        return step

    def _claim_child_wait(self, name: str, count: int, workflow: str, child_id: str) -> None:
        """Refuse a second ``run_workflow`` on one child: only one event tells its end."""
        act = self._act
        waits = act.waited_children
        if waits is None:
            waits = act.waited_children = {
                (s.config["workflow"], s.config["id"]): (s.name, s.count)
                for s in act.order
                if s.type == "run_workflow" and s.config and "id" in s.config
            }
        other = waits.setdefault((workflow, child_id), (name, count))
        if other != (name, count):
            raise ValidationError(
                f"step {name!r}: child {workflow}/{child_id} is already waited for by step "
                f"{other[0]!r} (#{other[1]}) of this run"
            )

    def _child_result(self, step: StepRow) -> Any:
        return child_result(step, self._act.engine.workflows)


#: The step that draws a webhook's token: a failed registration (the store) is retried.
_WEBHOOK_STEP = {"retries": {"limit": 5, "delay": "1 second", "backoff": "exponential"}}
