"""The engine: drives users' ``run()`` by replay and records every effect in the store.

One way in for work: an instance becomes runnable in the store (created, woken by a
timer, sent an event, resumed), the scheduler claims it, an *activation* replays its
``run()`` against the stored history, and the activation ends by completing, failing, or
suspending (sleep, wait, retry back-off, pause, shutdown). A suspended instance holds no
memory: it is one row with a ``run_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeAlias, get_type_hints

import attrs

from durableflow import (
    CreateOptions,
    ErrorInfo,
    EventTimeoutError,
    InstanceFailedError,
    InstanceStatus,
    InvalidParamsError,
    LimitExceededError,
    NonDeterminismError,
    NonRetryableError,
    NotFoundError,
    ResolvedStepConfig,
    SerializationError,
    StepContext,
    StepFailedError,
    StepTimeoutError,
    StoreUnavailableError,
    ValidationError,
    Workflow,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInstance,
    WorkflowStep,
    WorkflowStepEvent,
)
from durableflow._config import resolve_config
from durableflow._duration import Duration, to_seconds
from durableflow._entrypoint import params_type
from durableflow._serde import describe_structure_error, dumps, loads, structure, unstructure
from durableflow._types import STATUSES, check_id

from .clock import Clock, RealClock
from .metrics import NO_OBSERVER, Observer  # observe: the hooks' interface
from .store.base import (
    FINAL_STATUSES,
    FINISHED,
    Claimed,
    ControlAction,
    Lease,
    LeaseLost,
    NewInstance,
    StepRow,
    StepType,
    Store,
)
from .store.transitions import allowed_actions

__all__ = [
    "Bindings",
    "Engine",
    "EngineInstance",
    "EngineWorkflow",
    "InstanceHooks",
    "Limits",
    "WorkflowSpec",
]

log = logging.getLogger("durableflow")

MiB = 1024 * 1024
#: Instance ids that would be read as a route below ``/instances/`` (``batch``, and
#: ``actions`` for bulk actions).
RESERVED_INSTANCE_IDS = frozenset({"batch", "actions"})
_UNOBSERVED = object()  # observe: an activation that never started
RETRY_AFTER = 5.0  # seconds before an activation that failed inside the engine runs again


@attrs.frozen
class Limits:
    """Limits on what one instance may hold; each violation is a clear error."""

    max_payload_bytes: int = MiB
    max_steps: int = 10_000
    max_batch: int = 100
    max_sleep_seconds: float = 365 * 86400.0


@attrs.frozen
class WorkflowSpec:
    """One workflow the engine runs.

    Attributes:
        name: The workflow's name (URL segment).
        cls: The ``WorkflowEntrypoint`` subclass.
        binding: The attribute under which ``env`` exposes its binding.
        defaults: Step config defaults for its steps.
    """

    name: str
    cls: type[WorkflowEntrypoint[Any, Any]]
    binding: str = ""
    defaults: ResolvedStepConfig = attrs.field(factory=ResolvedStepConfig)

    params_type: Any = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "params_type", params_type(self.cls))


class InstanceHooks(Protocol):
    """What a test harness may change for one instance (``durableflow.testing``)."""

    def step_outcome(self, name: str, count: int, attempt: int) -> tuple[str, Any] | None:
        """``("result", value)``, ``("error", exception)``, ``("timeout", None)`` or ``None``."""

    def sleeps_disabled(self) -> bool: ...

    def retry_delays_disabled(self) -> bool: ...

    def event_timeout_forced(self, name: str) -> bool: ...


class _Suspend(BaseException):
    """Control flow: the activation stops here and the instance waits in the store."""


# Event-loop turns with no movement before run() counts as blocked on waits: enough for
# the chains of wake-ups that gather and asyncio.wait build to run out; fewer while only
# run()'s own task has used the step object (a task it has just created runs within the
# next turn, before the count could end).
_QUIET_TURNS = 16
_QUIET_TURNS_ONE_TASK = 2

ParkKind: TypeAlias = Literal["sleep", "event", "retry", "gated", "cancelled"]


@attrs.define(eq=False)
class _Parked:
    """A branch of ``run()`` blocked on a wait.

    ``kind``: ``sleep``, ``event`` (a ``wait_for_event``) and ``retry`` (a back-off) are
    live and wake the instance at ``deadline`` (or on an event of ``event_type``);
    ``gated`` is a wait the history says resolved, handed back in its recorded turn;
    ``cancelled`` is a wait an earlier run cancelled, which never resolves again.
    """

    step: StepRow
    kind: ParkKind
    future: asyncio.Future[Any]
    deadline: float | None = None
    event_type: str | None = None
    closed: bool = False  # resolved, stopped or abandoned: nothing more to record
    task: asyncio.Task[Any] | None = None  # the task blocked on it

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        """Hand the branch its outcome (unless the activation already let it go)."""
        self.closed = True
        if not self.future.done():
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)


def _read_suspend(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _resolved_seq(step: StepRow) -> int | None:
    """Where a wait's resolution stands among the history's events (``None`` if it has
    not resolved, or was recorded before waits were ordered)."""
    if step.type == "do" or step.config is None or step.status not in ("complete", "failed"):
        return None
    seq = step.config.get("resolved_seq")
    return seq if isinstance(seq, int) else None


class Bindings:
    """The ``env`` the host gives workflows: one attribute per workflow binding."""

    def __init__(self, bindings: Mapping[str, Workflow[Any]]) -> None:
        self.__dict__.update(bindings)

    def __repr__(self) -> str:
        return f"Bindings({', '.join(sorted(self.__dict__))})"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


_CTX_CACHE: dict[Any, bool] = {}
_CONFIG_JSON: dict[ResolvedStepConfig, dict[str, Any]] = {}


def _parse_time(value: str | None, name: str) -> float | None:
    """An ISO 8601 time of a query (UTC when it names no offset) as epoch seconds."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} must be an ISO 8601 time such as 2026-03-01T12:00:00Z, not {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # times are shown rounded to the microsecond: half a microsecond earlier, a bound
    # compares with the time as shown (an instance's own created_at includes it)
    return parsed.timestamp() - 5e-7


def _wait_fields(step: StepRow) -> dict[str, Any]:
    """What a ``wait_for_event`` step adds to the detail: the event type it waits for and
    the JSON Schema of its payload (``null`` when the wait declares no payload type; a wait
    that declares one records the schema in its config as ``payload_schema``)."""
    config = step.config or {}
    return {"event_type": config.get("type"), "payload_schema": config.get("payload_schema")}


def _config_json(config: ResolvedStepConfig) -> dict[str, Any]:
    cached = _CONFIG_JSON.get(config)
    if cached is None:
        cached = _CONFIG_JSON[config] = config.to_json()
    return cached


_RETURN_CACHE: dict[Any, Any] = {}


def _wants_ctx(callback: Callable[..., Any]) -> bool:
    code = getattr(callback, "__code__", None)
    cached = _CTX_CACHE.get(code) if code is not None else None
    if cached is not None:
        return cached
    try:
        params = [
            p
            for p in inspect.signature(callback).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) > 1:
        raise ValidationError(
            f"a step callback takes no argument or one (ctx), not {len(params)}: {callback!r}"
        )
    wants = len(params) == 1
    if code is not None:
        _CTX_CACHE[code] = wants
    return wants


class _UnresolvedReturn:
    """A return annotation that cannot be resolved: the step fails rather than hand
    ``run()`` a value of another type than the annotation says."""

    def __init__(self, message: str) -> None:
        self.message = message


#: Resolved return types of callables without code of their own (bounded: such
#: callables may be created anew for every call).
_RETURN_CACHE_LIMIT = 1024


def _annotated_function(callback: Callable[..., Any]) -> Any:
    """The function whose annotations describe ``callback``'s result."""
    seen = 0
    target: Any = callback
    while seen < 8:
        seen += 1
        if isinstance(target, functools.partial):
            target = target.func
        elif inspect.ismethod(target):
            target = target.__func__
        elif not hasattr(target, "__code__") and callable(target) and not isinstance(target, type):
            call = inspect.getattr_static(type(target), "__call__", None)  # its method
            if call is None or not hasattr(call, "__code__"):
                return target
            target = call
        else:
            return target
    return target


def _return_type(callback: Callable[..., Any]) -> Any:
    """The callback's annotated result type (``Any`` when it has none).

    Returns:
        The type, or an :class:`_UnresolvedReturn` when the annotation names something
        that cannot be found (a class defined inside ``run()`` under ``from __future__
        import annotations``, a name imported only under ``TYPE_CHECKING``).
    """
    function = _annotated_function(callback)
    code = getattr(function, "__code__", None)
    key = code if code is not None else function
    cached = _RETURN_CACHE.get(key)
    if cached is not None:
        return cached
    annotations = getattr(function, "__annotations__", None) or {}
    if "return" not in annotations:
        hint: Any = Any
        cacheable = True
    else:
        hint, cacheable = _resolve_return(callback, function, annotations["return"])
    if hint is None or hint is type(None):
        hint = Any
    if cacheable:
        if len(_RETURN_CACHE) >= _RETURN_CACHE_LIMIT:
            _RETURN_CACHE.pop(next(iter(_RETURN_CACHE)))
        _RETURN_CACHE[key] = hint
    return hint


def _resolve_return(callback: Any, function: Any, raw: Any) -> tuple[Any, bool]:
    """``(type, cacheable)``: from the module's globals, else from the closure."""
    try:
        return get_type_hints(function).get("return", Any), True
    except Exception as exc:
        first = exc
    # a class defined in run() and used in the callback's body is in its closure; it is a
    # new class object on every replay, so this resolution is not cached
    closure = getattr(function, "__closure__", None) or ()
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    local: dict[str, Any] = {}
    for name, cell in zip(names, closure, strict=False):
        with contextlib.suppress(ValueError):
            local[name] = cell.cell_contents
    if local:
        try:
            return get_type_hints(function, localns=local).get("return", Any), False
        except Exception:
            pass
    name = getattr(callback, "__qualname__", None) or repr(callback)
    text = raw if isinstance(raw, str) else getattr(raw, "__name__", repr(raw))
    return (
        _UnresolvedReturn(
            f"cannot resolve the return annotation {text!r} of step callback {name} "
            f"({type(first).__name__}: {first}): define the type at module level and "
            "import it at run time (not only under TYPE_CHECKING), or remove the annotation"
        ),
        False,
    )


def _error_info(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, StepFailedError):
        return {"name": exc.error_name, "message": exc.error_message}
    return {"name": type(exc).__name__, "message": str(exc)}


def _failed(step: StepRow) -> StepFailedError:
    error = step.error or {"name": "Error", "message": "step failed"}
    cls = StepTimeoutError if error["name"] == "StepTimeoutError" else StepFailedError
    return cls(
        f"step {step.name!r} failed: {error['name']}: {error['message']}",
        step_name=step.name,
        error_name=error["name"],
        error_message=error["message"],
    )


class _Activation:
    """One replay of one instance's ``run()``, from its claim to its suspension or end."""

    def __init__(
        self,
        engine: Engine,
        spec: WorkflowSpec,
        lease: Lease,
        history: list[StepRow],
        generation: int,
        pause_requested: bool,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.lease = lease
        self.generation = generation
        self.history = {(s.name, s.count): s for s in history}
        self.order = history
        self.visited: set[tuple[str, int]] = set()
        self.counts: dict[str, int] = {}
        # The history as a sequence of events: each step's start (its seq) and each wait's
        # resolution (its resolved_seq). Replay hands a recorded resolution back only when
        # every event before it has been replayed, so waits resolve in their recorded order.
        gates = [s.seq for s in history]
        for s in history:
            if s.type != "do" and s.config is not None and (r := _resolved_seq(s)) is not None:
                gates.append(r)
        gates.sort()
        self.gates = gates
        self.gate_pos = 0
        self.replayed: set[int] = set()
        self.next_seq = max(self.gates, default=-1) + 1
        self.parked: list[_Parked] = []
        self.armed = False  # a turn counter runs (see arm)
        self.finished = False  # run() returned or raised
        self.quiet = 0
        self.quiet_mark = 0
        self.activity = 0  # bumped by anything that shows run() is moving
        self.branched = False  # a task other than run()'s own has used the step object
        self.settler: asyncio.Task[None] | None = None  # a decision that reads the store
        self.broken: BaseException | None = None  # a decision failed (store, lease)
        self.pause_requested = pause_requested
        self.stopping = False  # a suspend was raised somewhere, or the host shuts down
        self.wake_times: list[float] = []
        self.wait_types: list[str] = []
        self.inflight = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.progressed_while_stopping = False
        self.fatal: BaseException | None = None
        self.cancelled_for: str | None = None
        self.task: asyncio.Task[Any] | None = None
        self.hooks: InstanceHooks | None = (
            engine.hooks_for(spec.name, lease.id) if engine.has_hooks else None
        )

    # --- bookkeeping ---------------------------------------------------------------
    def check_stop(self) -> None:
        """Called before anything new runs: no new work once the activation is stopping."""
        if self.stopping or self.pause_requested or self.engine.draining:
            if self.engine.draining and not self.pause_requested:
                self.wake_times.append(self.engine.clock.now())
            self.stopping = True
            raise _Suspend()

    def begin(self) -> None:
        self.inflight += 1
        self.activity += 1
        self.drained.clear()

    def end(self, progressed: bool) -> None:
        self.inflight -= 1
        self.activity += 1
        if progressed and self.stopping:
            self.progressed_while_stopping = True
        if self.inflight == 0:
            self.drained.set()
            if self.parked:
                self.arm()

    def fail(self, error: BaseException) -> BaseException:
        """Record an error that ends the instance even if user code catches it."""
        if self.fatal is None:
            self.fatal = error
        return error

    async def enter(self, name: str, type: StepType) -> tuple[int, StepRow | None]:
        if not self.branched and asyncio.current_task() is not self.task:
            self.branched = True
        count = self.counts.get(name, 0) + 1
        self.counts[name] = count
        key = (name, count)
        step = self.history.get(key)
        if step is not None:
            if step.type != type:
                raise self.fail(
                    NonDeterminismError(
                        f"instance {self.lease.id!r}: replay asked for {type} step {name!r} "
                        f"(#{count}) but the history has a {step.type} step by that name; "
                        "the workflow code changed incompatibly"
                    )
                )
            self.visited.add(key)
            self.mark_replayed(step.seq)
            return count, step
        if len(self.visited) < len(self.history):
            self.begin()  # not idle: siblings are still replaying
            try:
                await self._let_siblings_replay()
            finally:
                self.end(False)
            missing = [s for s in self.order if (s.name, s.count) not in self.visited]
            if missing:
                expected = missing[0]
                raise self.fail(
                    NonDeterminismError(
                        f"instance {self.lease.id!r}: replay diverged from the stored "
                        f"history: expected {expected.type} step {expected.name!r} "
                        f"(#{expected.count}) but found {type} step {name!r} (#{count}); "
                        "the workflow code changed incompatibly or is not deterministic"
                    )
                )
        if len(self.history) >= self.engine.limits.max_steps:
            raise self.fail(
                LimitExceededError(
                    f"instance {self.lease.id!r} reached the limit of "
                    f"{self.engine.limits.max_steps} steps"
                )
            )
        self.visited.add(key)
        return count, None

    async def _let_siblings_replay(self) -> None:
        # Concurrent branches (asyncio.gather) replay their cached steps without yielding;
        # give them turns until three in a row bring no progress before judging the order.
        idle_turns = 0
        seen = len(self.visited)
        while idle_turns < 3 and len(self.visited) < len(self.history):
            await asyncio.sleep(0)
            idle_turns = idle_turns + 1 if len(self.visited) == seen else 0
            seen = len(self.visited)

    def new_step(self, name: str, count: int, type: StepType) -> StepRow:
        step = StepRow(name=name, count=count, seq=self.next_seq, type=type, status="running")
        self.next_seq += 1
        self.activity += 1
        self.history[(name, count)] = step
        self.order.append(step)
        return step

    # --- waits ------------------------------------------------------------------------
    def write_step(self, step: StepRow) -> None:
        """Queue a wait's row, not awaited. Unlike an attempt's start (``put_step_nowait``,
        which SQLite may write late or never), it is queued now, in order, so it is
        stored before the activation's ``suspend``: a claim that follows at once sees it.
        A failure (a lost lease) surfaces in the activation's next awaited write."""
        future = self.engine.store.put_step(self.lease, step)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def mark_replayed(self, seq: int) -> None:
        """Note that replay reached the history event ``seq``."""
        self.replayed.add(seq)
        self.activity += 1
        while self.gate_pos < len(self.gates) and self.gates[self.gate_pos] in self.replayed:
            self.gate_pos += 1

    def at_frontier(self) -> bool:
        """Whether replay has caught up with every recorded event (what happens now is new)."""
        return self.gate_pos >= len(self.gates)

    def resolve_now(self, step: StepRow) -> int:
        """Give ``step`` the next sequence number as the moment it resolved."""
        seq = self.next_seq
        self.next_seq += 1
        self.activity += 1
        step.config = {**(step.config or {}), "resolved_seq": seq}
        return seq

    def sleep_is_over(self, step: StepRow) -> bool:
        """End a sleep on the spot, without waiting for ``run()`` to block, when that is
        what settle() would do then: replay has caught up with the history, no other
        wait is pending (none could have become ready earlier), and it is due. A sleep
        over as it starts resolves right after its own start; a woken sequential sleep
        right after everything replayed; replay hands either back at the same point."""
        now = self.engine.clock.now()
        assert step.wake_at is not None
        if not (
            self.at_frontier()
            and (step.wake_at <= now or (self.hooks is not None and self.hooks.sleeps_disabled()))
            and not any(e.kind in ("sleep", "event", "retry") and not e.closed for e in self.parked)
        ):
            return False
        self.resolve_now(step)
        step.status = "complete"
        step.ended_at = now
        self.write_step(step)
        self.engine.notify(self.spec.name, self.lease.id, None)
        return True

    async def replay_resolution(self, step: StepRow) -> None:
        """Return when a wait recorded as resolved reaches its turn in the replay."""
        seq = _resolved_seq(step)
        if seq is None:
            return  # recorded before waits were ordered: they resolved one after another
        if self.gate_pos < len(self.gates) and self.gates[self.gate_pos] == seq:
            self.mark_replayed(seq)
            return
        await self.park(_Parked(step, "gated", asyncio.get_running_loop().create_future()))

    async def park(self, entry: _Parked) -> Any:
        """Block a branch of ``run()`` on a wait until settle() resolves it or the
        activation stops; a task cancelled by user code records its wait as cancelled."""
        self.parked.append(entry)
        self.activity += 1
        entry.task = asyncio.current_task()
        self.arm()
        try:
            return await entry.future
        except asyncio.CancelledError:
            if (
                not entry.closed
                and entry.kind in ("sleep", "event")
                and not self.stopping
                and self.cancelled_for is None
            ):
                self.record_cancelled(entry.step)
            raise
        finally:
            entry.closed = True
            with contextlib.suppress(ValueError):
                self.parked.remove(entry)
            self.activity += 1

    def record_cancelled(self, step: StepRow) -> None:
        """A wait abandoned by ``run()``: stored as cancelled, never resumed by replay."""
        step.status = "cancelled"
        step.ended_at = self.engine.clock.now()
        step.wake_at = None
        self.write_step(step)
        self.engine.notify(self.spec.name, self.lease.id, None)

    def stop_parked(self) -> None:
        """Stop every parked branch with ``_Suspend``, keeping what live waits need to
        wake the instance: their deadlines and event types."""
        self.stopping = True
        for entry in list(self.parked):
            if entry.closed:
                continue
            if entry.kind in ("sleep", "event", "retry"):
                if entry.deadline is not None:
                    self.wake_times.append(entry.deadline)
                if entry.event_type is not None:
                    self.wait_types.append(entry.event_type)
            if entry.task is not None and entry.task is not self.task:
                # a task of the user's (asyncio.wait, create_task) ends with this _Suspend,
                # which nobody may read: reading it spares the log "exception never retrieved"
                entry.task.add_done_callback(_read_suspend)
            entry.settle(error=_Suspend())

    def abandon_parked(self) -> None:
        """``run()`` ended with waits still pending: they are cancelled."""
        for entry in list(self.parked):
            if entry.closed:
                continue
            entry.closed = True
            if entry.kind in ("sleep", "event"):
                self.record_cancelled(entry.step)
            entry.future.cancel()

    def drop_parked(self) -> None:
        """The activation is over: no branch of ``run()`` stays blocked on a wait."""
        for entry in list(self.parked):
            entry.closed = True
            entry.future.cancel()

    def arm(self) -> None:
        """Start counting event-loop turns towards the point where ``run()`` is blocked on
        waits only: no step callback or store call in flight, and nothing moving (no step
        asked for, no wait parked or ended) for a few turns in a row. A callback per turn
        is cheaper than a task, and most activations end at the first such point."""
        if self.armed or self.settler is not None or self.stopping or self.finished:
            return
        self.armed = True
        self.quiet, self.quiet_mark = 0, self.activity
        asyncio.get_running_loop().call_soon(self.tick)

    def tick(self) -> None:
        if self.stopping or self.finished or not self.parked or self.inflight:
            self.armed = False  # end() arms again when the last call in flight returns
            return
        if self.activity != self.quiet_mark:
            self.quiet, self.quiet_mark = 0, self.activity
        else:
            self.quiet += 1
        if self.quiet < (_QUIET_TURNS if self.branched else _QUIET_TURNS_ONE_TASK):
            asyncio.get_running_loop().call_soon(self.tick)
            return
        self.armed = False
        try:
            self.settle()
        except NonDeterminismError as exc:
            self.fail(exc)
            self.stop_parked()
        except Exception as exc:  # the engine failed: the activation is retried later
            self.broken = exc
            self.stop_parked()

    def settle(self) -> None:
        """One decision at a point where ``run()`` is blocked on waits only."""
        if not self.at_frontier():
            seq = self.gates[self.gate_pos]
            for entry in self.parked:
                if entry.kind == "gated" and _resolved_seq(entry.step) == seq:
                    self.mark_replayed(seq)
                    entry.settle()
                    self.arm()
                    return
            raise NonDeterminismError(self.stuck_message(seq))
        live = [e for e in self.parked if e.kind in ("sleep", "event", "retry") and not e.closed]
        if not live:
            cancelled = [e for e in self.parked if e.kind == "cancelled"]
            if cancelled:
                step = cancelled[0].step
                raise NonDeterminismError(
                    f"instance {self.lease.id!r}: run() waits on {step.type} step "
                    f"{step.name!r} (#{step.count}), which an earlier run of it cancelled; "
                    "the workflow code changed incompatibly or is not deterministic"
                )
            return
        if self.pause_requested or self.engine.draining:
            self.stop_parked()
            return
        if any(e.kind == "event" for e in live):
            self.settler = asyncio.create_task(
                self.settle_events(live), name=f"durableflow-settle-{self.lease.id}"
            )
            return
        now = self.engine.clock.now()
        chosen = self.choose(live, {}, now)
        if chosen is None:
            self.stop_parked()
            return
        self.resolve_timer(chosen[0], now)
        self.arm()

    async def settle_events(self, live: list[_Parked]) -> None:
        """``settle`` when event waits are live: which events arrived is a store read."""
        engine = self.engine
        try:
            types = sorted({e.event_type for e in live if e.event_type is not None})
            self.begin()
            try:
                arrived = await engine.store.pending_events(self.lease, types)
            finally:
                self.end(False)
            now = engine.clock.now()
            chosen = self.choose(live, arrived, now)
            if chosen is None:
                self.stop_parked()
            elif chosen[1] == "due":
                self.resolve_timer(chosen[0], now)
            else:
                await self.resolve_event(chosen[0], chosen[1], now)
        except NonDeterminismError as exc:
            self.fail(exc)
            self.stop_parked()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the store or the lease: the activation fails
            self.broken = exc
            self.stop_parked()
        finally:
            self.settler = None
        self.arm()

    def choose(
        self, live: list[_Parked], arrived: dict[str, float], now: float
    ) -> tuple[_Parked, str] | None:
        """The live wait that became ready first and how (``due``, ``event``, ``timeout``),
        or ``None``: a sleep or back-off past its deadline, an event wait whose type has an
        unconsumed event (the oldest goes to the first wait of its type), or one past its
        timeout."""
        hooks = self.hooks
        best: tuple[float, int, _Parked, str] | None = None
        offered: set[str] = set()
        for entry in sorted(live, key=lambda e: e.step.seq):
            if entry.closed:  # let go while the events were read (terminate, restart)
                continue
            ready: tuple[float, str] | None = None
            if entry.kind == "event":
                assert entry.event_type is not None
                if hooks is not None and hooks.event_timeout_forced(entry.step.name):
                    ready = (now, "timeout")
                elif entry.event_type in arrived and entry.event_type not in offered:
                    offered.add(entry.event_type)  # the oldest event goes to the first wait
                    ready = (arrived[entry.event_type], "event")
                elif entry.deadline is not None and entry.deadline <= now:
                    ready = (entry.deadline, "timeout")
            else:
                skip = hooks is not None and (
                    hooks.sleeps_disabled()
                    if entry.kind == "sleep"
                    else hooks.retry_delays_disabled()
                )
                if skip:
                    ready = (now, "due")
                elif entry.deadline is not None and entry.deadline <= now:
                    ready = (entry.deadline, "due")
            if ready is not None and (best is None or ready[0] < best[0]):
                best = (ready[0], entry.step.seq, entry, ready[1])
        return None if best is None else (best[2], best[3])

    def resolve_timer(self, entry: _Parked, now: float) -> None:
        """End a sleep that is due (recorded, with its place in the order of events), or
        let a retry whose back-off is over run its next attempt."""
        if entry.kind == "retry":
            entry.settle()
            self.activity += 1
            return
        step = entry.step
        self.resolve_now(step)
        step.status = "complete"
        step.ended_at = now
        self.write_step(step)
        entry.settle()
        self.engine.notify(self.spec.name, self.lease.id, None)

    async def resolve_event(self, entry: _Parked, how: str, now: float) -> None:
        """End an event wait with its event or its timeout, recorded with its place in the
        order of events."""
        engine = self.engine
        step = entry.step
        entry.closed = True  # from here on it ends this way, even if its task is cancelled
        self.resolve_now(step)
        if how == "event":
            assert entry.event_type is not None
            self.begin()
            try:
                event = await engine.store.take_event(self.lease, step, entry.event_type, now)
            finally:
                self.end(False)
            if event is None:  # pending_events saw it: nothing else consumes this instance's events
                raise RuntimeError(f"the event of type {entry.event_type!r} vanished")
            step.status = "complete"
            step.ended_at = now
            step.wake_at = None
            entry.settle(
                WorkflowStepEvent(
                    type=event.type,
                    payload=loads(event.payload),
                    timestamp=datetime.fromtimestamp(event.created_at, UTC),
                )
            )
        elif how == "timeout":
            assert entry.event_type is not None
            step.status = "failed"
            step.ended_at = now
            step.error = {
                "name": "EventTimeoutError",
                "message": f"wait_for_event {step.name!r} timed out waiting for an event of "
                f"type {entry.event_type!r}",
            }
            self.begin()
            try:
                await engine.store.put_step(self.lease, step)
            finally:
                self.end(False)
            entry.settle(error=_event_timeout(step, entry.event_type))
        engine.notify(self.spec.name, self.lease.id, None)

    def check_replayed_all(self) -> None:
        """``run()`` returned: it must have replayed every step and wait end of the history."""
        if len(self.visited) < len(self.history):
            missing = [s for s in self.order if (s.name, s.count) not in self.visited]
            self.fail(
                NonDeterminismError(
                    f"instance {self.lease.id!r}: run() returned without replaying "
                    f"{missing[0].type} step {missing[0].name!r} (#{missing[0].count}) "
                    "from its history; the workflow code changed incompatibly"
                )
            )
        elif not self.at_frontier():
            self.fail(NonDeterminismError(self.stuck_message(self.gates[self.gate_pos])))

    def stuck_message(self, seq: int) -> str:
        for step in self.order:
            if step.seq == seq and (step.name, step.count) not in self.visited:
                what = f"{step.type} step {step.name!r} (#{step.count})"
                break
            if _resolved_seq(step) == seq:
                what = f"the end of {step.type} step {step.name!r} (#{step.count})"
                break
        else:  # pragma: no cover - every gate comes from a step
            what = f"event {seq}"
        return (
            f"instance {self.lease.id!r}: replay diverged from the stored history: run() "
            f"got no further, but the history goes on with {what}; the workflow code "
            "changed incompatibly or is not deterministic"
        )

    def step_id(self, name: str, count: int) -> str:
        raw = f"{self.spec.name}\x00{self.lease.id}\x00{self.generation}\x00{name}\x00{count}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def check_size(self, data: bytes, what: str) -> None:
        limit = self.engine.limits.max_payload_bytes
        if len(data) > limit:
            raise LimitExceededError(f"{what} is {len(data)} bytes, over the limit of {limit}")


class _EngineStep(WorkflowStep):
    """The step object handed to ``run()``: the engine's side of the SDK's ``WorkflowStep``."""

    def __init__(self, act: _Activation) -> None:
        self._act = act

    def _do(self, name: str, config: Any, callback: Callable[..., Awaitable[Any]]) -> Any:
        return self._run_do(name, config, callback)

    async def _run_do(self, name: str, config: Any, callback: Callable[..., Awaitable[Any]]) -> Any:
        act = self._act
        engine = act.engine
        clock = engine.clock
        # validate before the step takes its key, so a bad call leaves the history checks intact
        wants_ctx = _wants_ctx(callback)
        fresh_config = resolve_config(config, act.spec.defaults)
        count, step = await act.enter(name, "do")
        result_type = _return_type(callback)
        if step is not None:
            if step.status == "complete":
                if isinstance(result_type, _UnresolvedReturn):
                    raise act.fail(SerializationError(f"step {name!r}: {result_type.message}"))
                return structure(loads(step.output), result_type)
            if step.status == "failed":
                raise _failed(step)
            resolved = ResolvedStepConfig.from_json(step.config or {})
            back_off = step.wake_at if step.status == "retrying" else None
        else:
            resolved = fresh_config
            step = act.new_step(name, count, "do")
            step.config = _config_json(resolved)
            back_off = None
        store = engine.store
        lease = act.lease
        while True:
            if (
                back_off is not None
                and back_off > clock.now()
                and not (act.hooks and act.hooks.retry_delays_disabled())
            ):
                # the back-off is a timer like a sleep: it waits beside the run's other waits
                act.check_stop()
                loop = asyncio.get_running_loop()
                await act.park(_Parked(step, "retry", loop.create_future(), deadline=back_off))
            back_off = None
            act.check_stop()
            attempt = step.attempts + 1
            now = clock.now()
            step.attempts = attempt
            step.status = "running"
            step.wake_at = None
            if step.started_at is None:
                step.started_at = now
            entry: dict[str, Any] = {"started_at": now, "ended_at": None, "error": None}
            step.attempt_log.append(entry)
            store.put_step_nowait(lease, step)
            act.begin()
            observed = engine.observer.step_started(act.spec.name, lease.id, step)  # observe:
            progressed = False
            try:
                outcome = act.hooks.step_outcome(name, count, attempt) if act.hooks else None
                timer = clock.timeout(resolved.timeout)
                try:
                    if isinstance(result_type, _UnresolvedReturn):
                        raise NonRetryableError(result_type.message)
                    async with timer:
                        if outcome is None:
                            if wants_ctx:
                                ctx = StepContext(
                                    attempt=attempt,
                                    name=name,
                                    count=count,
                                    step_id=act.step_id(name, count),
                                    config=resolved,
                                )
                                result = await _awaited(name, callback(ctx))
                            else:
                                result = await _awaited(name, callback())
                        elif outcome[0] == "result":
                            result = outcome[1]
                        elif outcome[0] == "error":
                            raise outcome[1]
                        else:
                            raise TimeoutError
                except (NonRetryableError, _NotAwaitable) as exc:
                    await self._fail_step(step, entry, _error_info(exc))
                    raise _failed(step) from exc
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and (
                        timer.expired() or (outcome is not None and outcome[0] == "timeout")
                    ):
                        error = {
                            "name": "StepTimeoutError",
                            "message": f"step {name!r} attempt {attempt} timed out after "
                            f"{resolved.timeout:g}s",
                        }
                    else:
                        error = _error_info(exc)
                    if attempt > resolved.limit:
                        await self._fail_step(step, entry, error)
                        raise _failed(step) from exc
                    now = clock.now()
                    delay = resolved.delay_before_retry(attempt)
                    if act.hooks and act.hooks.retry_delays_disabled():
                        delay = 0.0
                    entry["ended_at"] = now
                    entry["error"] = error
                    step.error = error
                    step.status = "retrying"
                    step.wake_at = now + delay
                    await engine.observer.commit(store.put_step(lease, step))  # observe:
                    progressed = True
                    if delay > 0:
                        back_off = step.wake_at
                    continue
                try:
                    data = dumps(result, what=lambda: f"the result of step {name!r}")
                    act.check_size(data, f"the result of step {name!r}")
                except (SerializationError, LimitExceededError) as exc:
                    await self._fail_step(step, entry, _error_info(exc))
                    raise _failed(step) from exc
                now = clock.now()
                entry["ended_at"] = now
                step.status = "complete"
                step.output = data
                step.error = None
                step.ended_at = now
                await engine.observer.commit(store.put_step(lease, step))  # observe:
                progressed = True
                engine.notify(act.spec.name, lease.id, None)
                return result
            finally:
                engine.observer.step_ended(act.spec.name, lease.id, step, observed)  # observe:
                act.end(progressed)

    async def _fail_step(self, step: StepRow, entry: dict[str, Any], error: dict[str, str]) -> None:
        now = self._act.engine.clock.now()
        entry["ended_at"] = now
        entry["error"] = error
        step.error = error
        step.status = "failed"
        step.ended_at = now
        await self._act.engine.store.put_step(self._act.lease, step)
        self._act.engine.notify(self._act.spec.name, self._act.lease.id, None)

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
        self, step: StepRow, kind: ParkKind, deadline: float | None, type: str | None
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
        act.check_stop()
        return await act.park(_Parked(step, kind, _future(), deadline=deadline, event_type=type))

    async def _wait_for_event(self, name: str, type: str, timeout: Duration) -> WorkflowStepEvent:
        act = self._act
        engine = act.engine
        clock = engine.clock
        seconds = to_seconds(timeout, what=f"timeout of wait_for_event {name!r}")
        count, step = await act.enter(name, "wait_for_event")
        if step is not None:
            if step.status == "complete":
                await act.replay_resolution(step)
                return _step_event(step.output)
            if step.status == "failed":
                await act.replay_resolution(step)
                raise _event_timeout(step, type)
            event: WorkflowStepEvent = await self._park_recorded(step, "event", step.wake_at, type)
            return event
        act.check_stop()
        now = clock.now()
        step = act.new_step(name, count, "wait_for_event")
        step.status = "waiting"
        step.started_at = now
        step.wake_at = now + seconds
        step.attempts = 1
        step.config = {"type": type, "timeout": seconds}
        # even an event already sent is taken when run() next blocks, in the order of waits
        act.write_step(step)
        event = await act.park(
            _Parked(step, "event", _future(), deadline=step.wake_at, event_type=type)
        )
        return event


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


class _NotAwaitable(ValidationError):
    """A step callback returned something that cannot be awaited (a plain function)."""


def _awaited(name: str, value: Any) -> Awaitable[Any]:
    if not inspect.isawaitable(value):
        raise _NotAwaitable(
            f"the callback of step {name!r} returned {type(value).__name__}, not an awaitable: "
            "step callbacks must be async functions (async def)"
        )
    return value


def _step_event(output: bytes | None) -> WorkflowStepEvent:
    data = loads(output) or {}
    return WorkflowStepEvent(
        type=data.get("type", ""),
        payload=data.get("payload"),
        timestamp=datetime.fromtimestamp(data.get("timestamp", 0.0), UTC),
    )


def _event_timeout(step: StepRow, type: str) -> EventTimeoutError:
    message = (step.error or {}).get("message") or f"wait_for_event {step.name!r} timed out"
    return EventTimeoutError(message, step_name=step.name, event_type=type)


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class Engine:
    """Runs workflow instances from a store.

    Args:
        store: Where everything is persisted.
        workflows: The workflows this engine runs.
        clock: Where time comes from (a ``VirtualClock`` in tests).
        max_concurrency: How many instances run (are in memory) at once; the rest queue.
        limits: Size and count limits.
        poll_interval: Seconds between store polls when the store cannot push wake-ups.
    """

    def __init__(
        self,
        store: Store,
        workflows: Sequence[WorkflowSpec],
        *,
        clock: Clock | None = None,
        max_concurrency: int = 256,
        limits: Limits | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or RealClock()
        self.max_concurrency = max_concurrency
        self.limits = limits or Limits()
        self.poll_interval = poll_interval
        self.workflows: dict[str, WorkflowSpec] = {}
        for spec in workflows:
            check_id(spec.name, what="workflow name", max_length=64)
            if spec.name in self.workflows:
                raise ValidationError(f"workflow name {spec.name!r} is used twice")
            self.workflows[spec.name] = spec
        self.bindings: dict[str, EngineWorkflow] = {}
        for spec in self.workflows.values():
            binding = spec.binding or spec.name
            if binding in self.bindings:
                raise ValidationError(f"binding {binding!r} is used twice")
            self.bindings[binding] = EngineWorkflow(self, spec.name)
        self.env = Bindings(self.bindings)
        self.draining = False
        self.has_hooks = False
        self._hooks: Callable[[str, str], InstanceHooks | None] | None = None
        self._active: dict[tuple[str, str], _Activation] = {}
        self._finished: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running = 0  # activations launched and not yet ended
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str, str, str | None], None]] = []
        self._started = False
        self.observer: Observer = NO_OBSERVER  # observe: the host installs metrics/tracing

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, resume what a crash left running, and start scheduling."""
        await self.store.open()
        self.store.subscribe(self._remote_change)
        if self.store.single_host:
            await self.store.recover(self.clock.now())
        self.draining = False
        self._started = True
        self._scheduler = asyncio.create_task(self._schedule(), name="durableflow-scheduler")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work; running steps get ``grace`` seconds to finish, then are cancelled.

        Instances cut off are resumed by the next engine on the same store.
        """
        if not self._started:
            return
        self._started = False
        self.draining = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        tasks = list(self._finished.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_hooks(self, hooks: Callable[[str, str], InstanceHooks | None] | None) -> None:
        """Install per-instance test hooks (``durableflow.testing``)."""
        self._hooks = hooks
        self.has_hooks = hooks is not None

    def hooks_for(self, workflow: str, id: str) -> InstanceHooks | None:
        return self._hooks(workflow, id) if self._hooks is not None else None

    # --- change notification ----------------------------------------------------------
    def add_listener(self, listener: Callable[[str, str, str | None], None]) -> None:
        """Call ``listener(workflow, id, status)`` on every change (status None: a step)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str, str, str | None], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def notify(self, workflow: str, id: str, status: str | None) -> None:
        for listener in list(self._listeners):
            listener(workflow, id, status)

    def _remote_change(self, workflow: str, id: str, what: str) -> None:
        """Another host changed an instance (or this host's lease on it was lost)."""
        act = self._active.get((workflow, id))
        if act is not None:
            if what == "pause":
                act.pause_requested = True
            elif what == "resume":
                act.pause_requested = False
            elif what in ("terminate", "restart", "lost"):
                self._cancel(act, what)
        self.notify(workflow, id, None)  # waiters re-read the instance
        self.kick()

    def kick(self) -> None:
        """Wake the scheduler: something may have become runnable."""
        self._wake.set()

    # --- scheduling -------------------------------------------------------------------
    async def _schedule(self) -> None:
        store = self.store
        clock = self.clock
        store_fault = ""  # the last claim failure logged, until a claim works again
        while True:
            self._wake.clear()
            free = self.max_concurrency - self._running
            if free > 0:
                try:
                    claim_started = self.observer.claim_started()  # observe: claim latency
                    claimed = await store.claim_work(clock.now(), free)
                    self.observer.claimed(claim_started, claimed, clock.now())  # observe: claim
                except StoreUnavailableError as exc:
                    # a full disk or an outage: one line, not a traceback a second
                    if str(exc) != store_fault:
                        log.warning("claiming work failed, retrying every second: %s", exc)
                    store_fault = str(exc)
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    log.exception("claiming work failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                if store_fault:
                    log.warning("claiming work works again")
                    store_fault = ""
                for work in claimed:
                    self._launch(work)
                if len(claimed) == free:
                    continue
            if self._wake.is_set():
                continue
            next_at = await store.next_run_at() if free > 0 else None
            if self._wake.is_set():
                continue
            if not self._running and clock.idle(next_at):
                continue
            timer: asyncio.Task[None] | None = None
            if next_at is not None:
                timer = asyncio.ensure_future(clock.sleep_until(next_at))
            elif self.poll_interval is not None:
                timer = asyncio.ensure_future(asyncio.sleep(self.poll_interval))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    [t for t in (timer, waker) if t is not None],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waker.cancel()
                if timer is not None:
                    timer.cancel()

    def _launch(self, work: Claimed) -> None:
        lease = work.lease
        key = (lease.workflow, lease.id)
        spec = self.workflows.get(lease.workflow)
        if spec is None:
            # e.g. a rolling deploy: a host with the workflow will take it
            log.error("instance %s/%s: no workflow %r on this host", *key, lease.workflow)
            now = self.clock.now()
            future = self.store.suspend(lease, now + RETRY_AFTER, (), now)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        previous = self._finished.pop(key, None)
        task = asyncio.create_task(self._activate(spec, work, previous))
        self._running += 1
        self._finished[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._finished.get(key) is task:
            del self._finished[key]

    async def _activate(
        self, spec: WorkflowSpec, work: Claimed, previous: asyncio.Task[None] | None
    ) -> None:
        lease, row = work.lease, work.row
        key = (lease.workflow, lease.id)
        observed: Any = _UNOBSERVED  # observe: the activation's token
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # a cancelled activation of the same instance
            act = _Activation(self, spec, lease, work.steps, row.generation, row.pause_requested)
            observed = self.observer.activation_started(spec.name, lease.id, work)  # observe:
            self._active[key] = act
            self.notify(lease.workflow, lease.id, "running")
            act.task = asyncio.current_task()
            await self._drive(act, row.params, row.created_at)
        except LeaseLost:
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            # The engine or the store failed (not user code, whose errors end the
            # instance): leave it runnable a little later rather than stuck as running.
            log.exception("instance %s/%s: activation failed; retrying in %ss", *key, RETRY_AFTER)
            with contextlib.suppress(Exception, LeaseLost):
                now = self.clock.now()
                await self.store.suspend(lease, now + RETRY_AFTER, (), now)
        finally:
            if observed is not _UNOBSERVED:
                self.observer.activation_ended(observed)  # observe: activation over
            active = self._active.get(key)
            if active is not None and active.lease == lease:
                active.drop_parked()
                del self._active[key]
            self._running -= 1
            self.kick()

    async def _drive(self, act: _Activation, params: bytes | None, created_at: float) -> None:
        spec = act.spec
        lease = act.lease
        outcome: str
        output: Any = None
        error: BaseException | None = None
        try:
            payload = structure(loads(params), spec.params_type)
            event: WorkflowEvent[Any] = WorkflowEvent(
                payload=payload,
                timestamp=datetime.fromtimestamp(created_at, UTC),
                instance_id=lease.id,
            )
            workflow = spec.cls(self.env)
            try:
                output = await workflow.run(event, _EngineStep(act))
            finally:
                act.finished = True
                if act.settler is not None:
                    act.settler.cancel()
            # run() may return after a branch was stopped (a task whose _Suspend it never
            # read): the run did not end, it is replayed later
            outcome = "suspend" if act.stopping and act.fatal is None else "complete"
            if outcome == "complete" and act.fatal is None:
                act.check_replayed_all()
        except _Suspend:
            outcome = "suspend"
        except asyncio.CancelledError:
            if act.cancelled_for is not None:
                return  # terminated or restarted: the store already says so
            raise
        except BaseExceptionGroup as group:  # asyncio.TaskGroup wraps what its tasks raise
            if group.subgroup(LeaseLost) is not None:
                raise LeaseLost(lease.id) from None
            failures = group.subgroup(Exception)
            if failures is not None:
                outcome, error = "errored", _first_leaf(failures)
            elif group.subgroup(_Suspend) is not None:
                outcome = "suspend"
            else:
                raise
        except Exception as exc:
            outcome = "errored"
            error = exc
        if act.inflight:
            await act.drained.wait()
        if act.broken is not None:
            raise act.broken
        if act.fatal is not None:
            outcome, error = "errored", act.fatal
        if outcome == "suspend":
            act.stop_parked()  # waits still pending wake the instance later
        else:
            act.abandon_parked()  # run() ended without them: they never resolve
        now = self.clock.now()
        if outcome == "suspend":
            run_at = min(act.wake_times) if act.wake_times else None
            if act.progressed_while_stopping or (run_at is None and not act.wait_types):
                # progress to continue from, or a pause the store may find withdrawn by now
                # (then the instance must run again rather than wait for nothing)
                run_at = now
            status = await self.store.suspend(lease, run_at, act.wait_types, now)
            self.notify(lease.workflow, lease.id, status)
            return
        data: bytes | None = None
        if outcome == "complete":
            try:
                data = dumps(output, what="the output of run()")
                act.check_size(data, "the output of run()")
            except (SerializationError, LimitExceededError) as exc:
                outcome, error = "errored", exc
                data = None
        info = _error_info(error) if error is not None else None
        await self.observer.commit(self.store.finish(lease, outcome, data, info, now))  # observe:
        self.notify(lease.workflow, lease.id, outcome)

    def _cancel(self, act: _Activation, why: str) -> None:
        act.cancelled_for = why
        if act.task is not None:
            act.task.cancel()

    # --- the binding's operations -----------------------------------------------------
    def spec(self, workflow: str) -> WorkflowSpec:
        try:
            return self.workflows[workflow]
        except KeyError:
            raise NotFoundError(f"no workflow named {workflow!r}") from None

    def prepare(self, workflow: str, id: str | None, params: Any) -> NewInstance:
        """Validate one instance to create.

        Raises:
            NotFoundError, ValidationError, InvalidParamsError, LimitExceededError.
        """
        spec = self.spec(workflow)
        instance_id = check_id(id) if id is not None else str(uuid.uuid4())
        if instance_id in RESERVED_INSTANCE_IDS:
            raise ValidationError(
                f"instance id {instance_id!r} is reserved (it names a route of the HTTP API)"
            )
        value = unstructure(params)
        ptype = spec.params_type
        if ptype is not Any:
            if value is None:
                name = getattr(ptype, "__name__", str(ptype))
                try:
                    structure(None, ptype)
                except Exception:
                    raise InvalidParamsError(
                        f"params are required for workflow {workflow!r} (expected {name})"
                    ) from None
            else:
                try:
                    structure(value, ptype)
                except Exception as exc:
                    raise InvalidParamsError(
                        f"invalid params for workflow {workflow!r}: "
                        + describe_structure_error(exc)
                    ) from None
        data = dumps(value, what="params") if value is not None else None
        if data is not None and len(data) > self.limits.max_payload_bytes:
            raise LimitExceededError(
                f"params are {len(data)} bytes, over the limit of {self.limits.max_payload_bytes}"
            )
        return NewInstance(workflow, instance_id, data, self.clock.now())

    async def create(self, workflow: str, items: Sequence[tuple[str | None, Any]]) -> list[str]:
        """Create instances (all or none); returns their ids."""
        if len(items) > self.limits.max_batch:
            raise LimitExceededError(
                f"a batch holds at most {self.limits.max_batch} instances, not {len(items)}"
            )
        rows = [self.prepare(workflow, id, params) for id, params in items]
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValidationError(f"instance id {dup!r} appears twice in the batch")
        await self.store.create_instances(rows)
        for row in rows:
            self.notify(workflow, row.id, "queued")
        self.kick()
        return ids

    async def status(self, workflow: str, id: str) -> InstanceStatus:
        """The instance's status, error and output."""
        self.spec(workflow)
        row = await self.store.get_instance(workflow, id)
        if row is None:
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        error = ErrorInfo(**row.error) if row.error else None
        return InstanceStatus(status=row.status, error=error, output=loads(row.output))

    async def control(self, workflow: str, id: str, action: ControlAction) -> str:
        """Pause, resume, terminate or restart; returns the new status."""
        self.spec(workflow)
        row = await self.store.control(workflow, id, action, self.clock.now())
        act = self._active.get((workflow, id))
        if act is not None:
            if action == "pause":
                act.pause_requested = True
            elif action == "resume":
                act.pause_requested = False
            else:
                self._cancel(act, action)
        self.notify(workflow, id, row.status)
        self.kick()
        return row.status

    async def send_event(self, workflow: str, id: str, type: str, payload: Any) -> None:
        """Deliver an event to an instance."""
        self.spec(workflow)
        check_id(type, what="event type")
        data = dumps(payload, what="the event payload") if payload is not None else None
        if data is not None and len(data) > self.limits.max_payload_bytes:
            raise LimitExceededError(
                f"the event payload is {len(data)} bytes, over the limit of "
                f"{self.limits.max_payload_bytes}"
            )
        await self.store.send_event(workflow, id, type, data, self.clock.now())
        self.kick()

    async def wait(
        self,
        workflow: str,
        id: str,
        predicate: Callable[[], Awaitable[bool]],
        timeout: float | None,
        *,
        steps: bool = False,
    ) -> None:
        """Wait until ``predicate()`` holds, re-checking it whenever the instance's status
        changes (and, with ``steps``, whenever one of its steps ends)."""
        changed = asyncio.Event()

        def listener(wf: str, iid: str, status: str | None) -> None:
            if wf == workflow and iid == id and (steps or status is not None):
                changed.set()

        # other hosts' progress is not announced step by step: look again now and then
        recheck = None if self.store.single_host else 1.0
        self.add_listener(listener)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    if await predicate():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), recheck)
        finally:
            self.remove_listener(listener)

    async def result(self, workflow: str, id: str, timeout: float | None) -> Any:
        """Wait for the instance to end; its output, or ``InstanceFailedError``."""
        final: list[InstanceStatus] = []

        async def ended() -> bool:
            st = await self.status(workflow, id)
            if st.status in FINAL_STATUSES:
                final.append(st)
                return True
            return False

        await self.wait(workflow, id, ended, timeout)
        st = final[0]
        if st.status == "complete":
            return st.output
        if st.status == "terminated":
            raise InstanceFailedError(f"instance {id!r} was terminated", status="terminated")
        assert st.error is not None
        raise InstanceFailedError(
            f"instance {id!r} errored: {st.error.name}: {st.error.message}",
            status="errored",
            error_name=st.error.name,
            error_message=st.error.message,
        )

    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        id_prefix: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Instances newest first, and the cursor of the next page (``None`` at the end).

        Args:
            workflow: The workflow's name.
            status: Only instances with this status.
            limit: Page size, 1 to 1000.
            cursor: The ``next_cursor`` of the previous page.
            id_prefix: Only instances whose id starts with this (taken literally).
            created_after: Only instances created at or after this ISO 8601 time.
            created_before: Only instances created before this ISO 8601 time.

        Raises:
            NotFoundError: Unknown workflow. ValidationError: a bad status, limit or cursor.
        """
        self.spec(workflow)
        if status is not None and status not in STATUSES:
            raise ValidationError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        if not 1 <= limit <= 1000:
            raise ValidationError(f"limit must be between 1 and 1000, not {limit}")
        after: int | None = None
        if cursor is not None:
            # a cursor is a row key this method handed out ("rows below this key"); one
            # past every 64-bit key simply means "from the newest"
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
                raise ValidationError(
                    f"invalid cursor {cursor!r}: pass the next_cursor of a previous page "
                    "(a decimal number of at most 19 digits)"
                )
            after = min(int(cursor), 2**63 - 1)
        if id_prefix is not None and not 1 <= len(id_prefix) <= 100:
            raise ValidationError("id_prefix must be 1 to 100 characters")
        rows = await self.store.list_instances(
            workflow,
            status=status,
            limit=limit + 1,
            cursor=after,
            id_prefix=id_prefix,
            created_after=_parse_time(created_after, "created_after"),
            created_before=_parse_time(created_before, "created_before"),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "id": r.id,
                "status": r.status,
                "error": r.error,
                "created_at": _iso(r.created_at),
                "started_at": _iso(r.started_at),
                "ended_at": _iso(r.ended_at),
            }
            for r in rows
        ]
        return items, (str(rows[-1].key) if more else None)

    async def prune(
        self, older_than: float, *, status: str | None = None, workflow: str | None = None
    ) -> int:
        """Delete finished instances that ended more than ``older_than`` seconds ago.

        Args:
            older_than: Age in seconds, counted from each instance's end.
            status: Only this finished status (default: complete, errored and terminated).
            workflow: Only this workflow's instances (default: every workflow's).

        Returns:
            How many instances were deleted, with their steps and events.

        Raises:
            NotFoundError: Unknown workflow. ValidationError: a status that is not finished.
        """
        if workflow is not None:
            self.spec(workflow)
        return await self.store.prune_finished(
            self.clock.now() - older_than,
            statuses=FINISHED if status is None else (status,),
            workflow=workflow,
        )

    async def describe(self, workflow: str, id: str) -> dict[str, Any]:
        """Everything known about an instance, JSON-ready (the HTTP API's detail)."""
        self.spec(workflow)
        row = await self.store.get_instance(workflow, id)
        if row is None:
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        steps = await self.store.load_steps(row.key)
        return {
            "id": row.id,
            "workflow": row.workflow,
            "status": row.status,
            "error": row.error,
            "output": loads(row.output),
            "params": loads(row.params),
            "created_at": _iso(row.created_at),
            "started_at": _iso(row.started_at),
            "ended_at": _iso(row.ended_at),
            "actions": allowed_actions(row.status),
            "steps": [
                {
                    "name": s.name,
                    "count": s.count,
                    "type": s.type,
                    "status": s.status,
                    "attempts": s.attempts,
                    "attempt_log": [
                        {
                            "started_at": _iso(a.get("started_at")),
                            "ended_at": _iso(a.get("ended_at")),
                            "error": a.get("error"),
                        }
                        for a in s.attempt_log
                    ],
                    "output": loads(s.output),
                    "error": s.error,
                    "started_at": _iso(s.started_at),
                    "ended_at": _iso(s.ended_at),
                    "wake_at": _iso(s.wake_at),
                    "host": s.host,
                    **(_wait_fields(s) if s.type == "wait_for_event" else {}),
                }
                for s in steps
            ],
        }


class EngineInstance(WorkflowInstance):
    """A ``WorkflowInstance`` that calls the engine in-process."""

    def __init__(self, engine: Engine, workflow: str, id: str) -> None:
        self._engine = engine
        self._workflow = workflow
        self.id = id

    async def status(self) -> InstanceStatus:
        return await self._engine.status(self._workflow, self.id)

    async def pause(self) -> None:
        await self._engine.control(self._workflow, self.id, "pause")

    async def resume(self) -> None:
        await self._engine.control(self._workflow, self.id, "resume")

    async def terminate(self) -> None:
        await self._engine.control(self._workflow, self.id, "terminate")

    async def restart(self) -> None:
        await self._engine.control(self._workflow, self.id, "restart")

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        await self._engine.send_event(self._workflow, self.id, type, payload)

    async def result(self, timeout: float | None = None) -> Any:
        return await self._engine.result(self._workflow, self.id, timeout)


class EngineWorkflow(Workflow[Any]):
    """A ``Workflow`` binding that calls the engine in-process."""

    def __init__(self, engine: Engine, workflow: str) -> None:
        self._engine = engine
        self.name = workflow

    async def create(self, *, id: str | None = None, params: Any = None) -> WorkflowInstance:
        [instance_id] = await self._engine.create(self.name, [(id, params)])
        return EngineInstance(self._engine, self.name, instance_id)

    async def create_batch(self, batch: Sequence[CreateOptions[Any]]) -> list[WorkflowInstance]:
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

    async def get(self, id: str) -> WorkflowInstance:
        await self._engine.status(self.name, id)  # raises NotFoundError
        return EngineInstance(self._engine, self.name, id)

    def __repr__(self) -> str:
        return f"<EngineWorkflow {self.name!r}>"
