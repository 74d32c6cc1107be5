"""Rollback (compensation): the handlers ``step.do(..., rollback=)`` registers, run one
at a time in reverse order of step start when an instance fails or is terminated with
``rollback=True``.

Each rollback is a durable unit recorded on its step (the step row's ``config`` keeps a
``rollback`` record: status, attempts, attempt log, error, times). A finished rollback
(``complete`` or ``failed``) is never run again; one cut off by a crash runs again from
its next attempt. The handlers themselves live in user code, so an activation that
resumes a rollback first replays ``run()`` (``_Activation.collecting``) to register them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from durableflow import (
    ErrorInfo,
    NonRetryableError,
    ResolvedStepConfig,
    RollbackContext,
    StepContext,
)
from durableflow._serde import loads, structure
from durableflow._step import RollbackHandler

from ..store.base import StepRow

if TYPE_CHECKING:
    from ._activation import _Activation

log = logging.getLogger("durableflow")

#: A rollback's record as the detail shows it, kept in the step's config under this key.
ROLLBACK_KEY = "rollback"


@attrs.define(eq=False)
class Undo:
    """A step's registered rollback: the handler, its config (``None``: the step's own)
    and the step's result type (to restore ``RollbackContext.output``)."""

    step: StepRow
    handler: RollbackHandler
    config: ResolvedStepConfig | None
    result_type: Any


def rollback_record(step: StepRow) -> dict[str, Any] | None:
    """The rollback record stored on ``step``, if a rollback of it started."""
    record = (step.config or {}).get(ROLLBACK_KEY)
    return record if isinstance(record, dict) else None


async def run_rollbacks(act: _Activation, error: dict[str, str]) -> float | None:
    """Run every registered rollback not yet finished, last-started step first.

    A rollback that fails for good is recorded on its step and the next one runs.

    Returns:
        ``None`` when all have run; else the time a rollback's retry is due (the
        instance waits for it like for a sleep, still ``rollingBack``).
    """
    undos = sorted(act.rollbacks.values(), key=lambda u: u.step.seq, reverse=True)
    for undo in undos:
        due = await _run_one(act, undo, error)
        if due is not None:
            return due
    return None


def _context(act: _Activation, undo: Undo, error: dict[str, str]) -> RollbackContext[Any]:
    step = undo.step
    step_config = ResolvedStepConfig.from_json(step.config or {})
    output = None
    if step.status == "complete":
        output = structure(loads(step.output), undo.result_type)
    return RollbackContext(
        step=StepContext(
            attempt=max(step.attempts, 1),
            name=step.name,
            count=step.count,
            step_id=act.step_id(step.name, step.count),
            config=step_config,
        ),
        output=output,
        error=ErrorInfo(name=error["name"], message=error["message"]),
    )


async def _write(act: _Activation, step: StepRow, record: dict[str, Any]) -> None:
    # a copy: a step's config dict may be shared with others of the same config
    step.config = {**(step.config or {}), ROLLBACK_KEY: dict(record)}
    await act.engine.store.put_step(act.lease, step)
    act.engine.notify(act.spec.name, act.lease.id, None)


async def _run_one(act: _Activation, undo: Undo, error: dict[str, str]) -> float | None:
    """One step's rollback, attempt after attempt, each recorded before and after;
    the time its next attempt is due when that is later (``None``: it has ended)."""
    step = undo.step
    clock = act.engine.clock
    record = dict(rollback_record(step) or {})
    if record.get("status") in ("complete", "failed"):
        return None
    wake_at = record.get("wake_at")
    skip_delays = act.hooks is not None and act.hooks.retry_delays_disabled()
    # woken before a retry is due (a host's start-up wakes every rolling-back instance)
    if record.get("status") == "retrying" and wake_at and wake_at > clock.now() and not skip_delays:
        return float(wake_at)
    config = undo.config or ResolvedStepConfig.from_json(step.config or {})
    timeout = config.timeout.total_seconds()
    failure: tuple[dict[str, str], bool] | None = None
    ctx: RollbackContext[Any] | None = None
    try:
        ctx = _context(act, undo, error)
    except Exception as exc:  # the stored result no longer fits the annotated type
        failure = ({"name": type(exc).__name__, "message": str(exc)}, False)
    attempt_log: list[dict[str, Any]] = list(record.get("attempt_log") or [])
    for cut in attempt_log:
        if cut.get("ended_at") is None:  # cut off by a crash: it counts, it failed
            cut["ended_at"] = clock.now()
            cut["error"] = {"name": "Interrupted", "message": "the host stopped mid-attempt"}
    attempts = int(record.get("attempts") or 0)
    record.setdefault("started_at", clock.now())
    while True:
        attempts += 1
        now = clock.now()
        entry: dict[str, Any] = {"started_at": now, "ended_at": None, "error": None}
        attempt_log.append(entry)
        record.update(status="running", attempts=attempts, attempt_log=attempt_log, wake_at=None)
        await _write(act, step, record)
        if ctx is not None:
            failure = None
            timer = clock.timeout(timeout)
            try:
                async with timer:
                    await undo.handler(ctx)
            except NonRetryableError as exc:
                failure = ({"name": type(exc).__name__, "message": str(exc)}, False)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and timer.expired():
                    info = {
                        "name": "StepTimeoutError",
                        "message": f"rollback of step {step.name!r} attempt {attempts} "
                        f"timed out after {timeout:g}s",
                    }
                else:
                    info = {"name": type(exc).__name__, "message": str(exc)}
                failure = (info, True)
        now = clock.now()
        entry["ended_at"] = now
        if failure is None:
            record.update(status="complete", ended_at=now, error=None)
            await _write(act, step, record)
            return None
        info, retryable = failure
        entry["error"] = info
        record["error"] = info
        if retryable and attempts <= config.retries.limit:
            delay = config.delay_before_retry(attempts)
            if act.hooks is not None and act.hooks.retry_delays_disabled():
                delay = 0.0
            record.update(status="retrying", wake_at=now + delay)
            await _write(act, step, record)
            if delay > 0:
                return now + delay  # a durable timer, like a step's back-off
            continue
        record.update(status="failed", ended_at=now, wake_at=None)
        await _write(act, step, record)
        log.warning(
            "instance %s/%s: the rollback of step %r failed: %s: %s",
            act.spec.name,
            act.lease.id,
            step.name,
            info["name"],
            info["message"],
            extra={"workflow": act.spec.name, "instance": act.lease.id},
        )
        return None
