"""Replay a recorded history against code, without running any step callback: the core
of ``durableflow check``, ``serve --check`` and ``durableflow.testing.replay``.

The replay is the engine's own: an ``_Activation`` and its ``_EngineStep`` walk the
history exactly as they do on a host, so a divergence is found where the host would find
it and reported with the message the host would record. What differs is what happens at
the end of the history: the activation is built as if a pause had been asked, so that
nothing new runs (no callback, no timer, no event is taken): the first step the code asks
for beyond the history suspends the replay there. Waits the history holds as pending
still park (``replay_only``), so that the replay reaches the point where every branch of
``run()`` is blocked and the history's order of events is judged, as on a wake-up. A clock that stands at the epoch keeps
a recorded sleep from coming due, and writes (there are none on the paths a replay takes,
bar a wait that ``run()`` cancels itself) go nowhere.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import attrs
import orjson

from durableflow import NonDeterminismError, ValidationError, WorkflowError
from durableflow._types import STATUSES

from ..clock import Clock, Timeout
from ..metrics import NO_OBSERVER
from ..store.base import InstanceRow, Lease, StepRow
from ._activation import _Activation, _Suspend
from ._bindings import Bindings
from ._hooks import Verifiers
from ._records import _error_info
from ._scheduler import workflow_and_event
from ._spec import Limits, WorkflowSpec, no_code_message
from ._step import _EngineStep

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = [
    "HISTORY_FORMAT",
    "ReplayResult",
    "ReplayStatus",
    "history_from_json",
    "history_json",
    "replay",
]

ReplayStatus: TypeAlias = Literal["ok", "diverges", "fails", "no_code"]

#: The ``format`` of an exported history (``durableflow instances export``).
HISTORY_FORMAT = "durableflow.history/1"

#: How long one replay may take: ``run()`` awaiting something outside steps (a network
#: call, ``asyncio.sleep``) would otherwise hold the check forever.
REPLAY_TIMEOUT = 10.0


@attrs.frozen
class ReplayResult:
    """What replaying one instance's history against the code found.

    Attributes:
        workflow: The workflow's name.
        id: The instance's id.
        version: The version the instance recorded.
        status: ``ok`` (the code replays the whole history), ``diverges`` (it asks for
            other steps than the history holds: the engine would fail the instance with
            ``NonDeterminismError``), ``fails`` (it raised outside a step), ``no_code``
            (no class of the instance's version).
        detail: The divergence's message, the error with the last frame of its
            traceback, or what has no code; ``None`` when ok.
        error: The exception behind ``diverges`` and ``fails``.
    """

    workflow: str
    id: str
    version: str | None
    status: ReplayStatus
    detail: str | None = None
    error: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """``{"workflow", "id", "version", "status", "detail"}`` (``check --json``)."""
        return {
            "workflow": self.workflow,
            "id": self.id,
            "version": self.version,
            "status": self.status,
            "detail": self.detail,
        }


class _StillClock(Clock):
    """Time that stands at the epoch: no recorded sleep or timeout is ever due."""

    def now(self) -> float:
        return 0.0

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never asked
        raise RuntimeError("a replay never sleeps")

    def timeout(self, seconds: float) -> Timeout:  # pragma: no cover - no attempt runs
        raise RuntimeError("a replay runs no attempt")


class _Nowhere:
    """The store of a replay: what an activation would write is dropped."""

    def put_step(self, lease: Lease, step: StepRow) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def put_step_nowait(self, lease: Lease, step: StepRow) -> None:
        """Dropped."""


class _ReplayEngine:
    """What an ``_Activation`` and its step object use of an engine, for a replay."""

    def __init__(self, spec: WorkflowSpec, env: Any) -> None:
        self.clock = _StillClock()
        self.limits = Limits()
        self.store = _Nowhere()
        self.draining = False
        self.has_hooks = False
        self.observer = NO_OBSERVER
        self.env = env
        self.workflows = {spec.name: spec}
        self.verifiers = Verifiers()  # a replayed create_webhook(verify=...) remembers it

    def hooks_for(self, workflow: str, id: str) -> None:
        return None

    def notify(self, workflow: str, id: str, status: str | None) -> None:
        """Nobody listens."""


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = (
        f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    )
    return f"{type(exc).__name__}: {exc}{where}"


async def replay(
    spec: WorkflowSpec,
    row: InstanceRow,
    steps: list[StepRow],
    *,
    env: Any = None,
    timeout: float = REPLAY_TIMEOUT,
) -> ReplayResult:
    """Replay ``row``'s history ``steps`` against the class of its version in ``spec``.

    Args:
        spec: The workflow, with every class this code has for it.
        row: The instance (its params, creation time, version and generation).
        steps: Its recorded steps, in the order they started.
        env: What ``self.env`` is for ``run()`` (default: empty bindings).
        timeout: Seconds the replay may take before it counts as ``fails``.

    Returns:
        What the replay found; never raises for what the user's code does.
    """

    def result(
        status: ReplayStatus, detail: str | None = None, error: BaseException | None = None
    ) -> ReplayResult:
        return ReplayResult(row.workflow, row.id, row.version, status, detail, error)

    if spec.class_for(row.version) is None:
        return result("no_code", no_code_message(row.version))
    engine = _ReplayEngine(spec, Bindings({}) if env is None else env)
    lease = Lease(row.workflow, row.id, row.key, row.epoch)
    # a pause asked: nothing beyond the history runs (see the module docstring)
    act = _Activation(
        cast("Engine", engine), spec, lease, list(steps), row.generation, pause_requested=True
    )
    act.replay_only = True
    error: BaseException | None = None
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            act.task = asyncio.current_task()
            try:
                workflow, event = workflow_and_event(spec, row, engine.env)
                await workflow.run(event, _EngineStep(act))
            finally:
                act.finished = True
            if act.fatal is None and not act.stopping:
                act.check_replayed_all()
    except _Suspend:
        pass
    except BaseExceptionGroup as group:  # asyncio.TaskGroup wraps what its tasks raise
        failures = group.subgroup(Exception)
        if failures is not None:
            error = failures.exceptions[0]
    except TimeoutError as exc:
        error = exc
        if timer.expired():
            error = TimeoutError(
                f"the replay did not end within {timeout:g}s: run() awaits something "
                "outside its steps"
            )
    except Exception as exc:
        error = exc
    finally:
        act.drop_parked()
    if act.fatal is not None:
        return result("diverges", str(act.fatal), act.fatal)
    ended_so = row.status in ("errored", "rollingBack")  # with the error it recorded
    if error is not None and not (ended_so and _error_info(error) == row.error):
        return result("fails", _last_frame(error), error)
    return result("ok")  # an instance that failed (or rolls back) with this error replays


# --- the exported history: one instance and its steps, as JSON -------------------------
_STEP_FIELDS = (
    "name",
    "count",
    "seq",
    "type",
    "status",
    "attempts",
    "attempt_log",
    "error",
    "started_at",
    "ended_at",
    "wake_at",
    "config",
)


def _value(data: bytes | None) -> Any:
    return orjson.loads(data) if data is not None else None


def _data(value: Any, present: bool) -> bytes | None:
    return orjson.dumps(value) if present else None


def history_json(row: InstanceRow, steps: list[StepRow]) -> dict[str, Any]:
    """An instance's history as the JSON ``durableflow instances export`` writes.

    Times are seconds since the epoch, as stored (a replay needs them exact); a value
    that was never stored (no params, no output yet) is left out rather than ``null``,
    which is a value of its own.
    """
    doc: dict[str, Any] = {
        "format": HISTORY_FORMAT,
        "workflow": row.workflow,
        "id": row.id,
        "version": row.version,
        "status": row.status,
        "error": row.error,
        "created_at": row.created_at,
        "generation": row.generation,
    }
    if row.params is not None:
        doc["params"] = _value(row.params)
    out = []
    for step in steps:
        item = {f: getattr(step, f) for f in _STEP_FIELDS}
        if step.output is not None:
            item["output"] = _value(step.output)
        out.append(item)
    doc["steps"] = out
    return doc


def history_from_json(doc: Any) -> tuple[InstanceRow, list[StepRow]]:
    """The instance and steps of an exported history.

    Raises:
        ValidationError: Not a history this version of durableflow wrote, naming what
            is wrong.
    """
    if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValidationError(
            f"not an exported history: expected an object with format {HISTORY_FORMAT!r}, "
            f"found {found!r} (write one with `durableflow instances export NAME ID`)"
        )
    try:
        status = doc["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        row = InstanceRow(
            key=0,
            workflow=str(doc["workflow"]),
            id=str(doc["id"]),
            status=status,
            params=_data(doc.get("params"), "params" in doc),
            output=None,
            error=doc.get("error"),
            created_at=float(doc["created_at"]),
            started_at=None,
            ended_at=None,
            run_at=None,
            epoch=0,
            generation=int(doc.get("generation", 0)),
            pause_requested=False,
            version=doc.get("version"),
        )
        steps = [
            StepRow(
                **{f: item[f] for f in _STEP_FIELDS},
                output=_data(item.get("output"), "output" in item),
            )
            for item in doc["steps"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValidationError(f"the history is malformed: {what}") from None
    steps.sort(key=lambda s: s.seq)
    return row, steps


def raise_for(result: ReplayResult) -> None:
    """Raise what a replay found wrong: the engine's ``NonDeterminismError`` for a
    divergence, the code's own exception when it fails, ``WorkflowError`` without code."""
    if result.status == "ok":
        return
    if result.error is not None:
        raise result.error
    if result.status == "diverges":  # pragma: no cover - a divergence carries its error
        raise NonDeterminismError(result.detail or "replay diverged")
    raise WorkflowError(result.detail or result.status)
