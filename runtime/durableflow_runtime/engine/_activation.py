"""The replay of one instance: its ``run()`` from the claim to the suspension or the end.

An activation walks the stored history as ``run()`` calls the step object, hands
recorded results back, decides when every branch of ``run()`` is blocked on a wait
(``_Parked``), resolves waits in their recorded order, and stops with ``_Suspend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from durableflow import (
    LimitExceededError,
    NonDeterminismError,
    ValidationError,
    WorkflowStepEvent,
)
from durableflow._output import LogLevel
from durableflow._serde import loads

from ..store._rows import child_end
from ..store.base import EventRow, Lease, StepRow, StepType
from ._hooks import taken
from ._output import log_entry
from ._records import _event_timeout, _resolved_seq
from ._rollback import Undo
from ._spec import InstanceHooks, WorkflowSpec

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("durableflow")


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
    event_type: str | None = None  # the type (or a hook's channel) whose events it takes
    payload_type: Any = None  # a wait's payload_type: what a taken payload is structured into
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


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


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
        collecting: bool = False,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.lease = lease
        self.generation = generation
        self.history = {(s.name, s.count): s for s in history}
        self.order = history
        self.visited: set[tuple[str, int]] = set()
        self.counts: dict[str, int] = {}
        self.entered = 0  # steps run() has entered: where its step.log calls are
        self.run_logs: dict[int, int] = {}  # step.log calls made at each such position
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
        #: a replay check (``_replay``): recorded waits park, so that the history's
        #: order is judged, while nothing new runs (``pause_requested`` is set too)
        self.replay_only = False
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
        #: held in memory until a timer within the engine's look-ahead (``hold``)
        self.held: asyncio.TimerHandle | None = None
        #: claimed ahead of its wake-up: nothing new runs before this time
        self.not_before: float | None = None
        # replay only to learn the rollback handlers (the instance is rolling back): every
        # step or wait that would run or block stops that branch of run() instead
        self.collecting = collecting
        self.rollbacks: dict[tuple[str, int], Undo] = {}
        self.parent: int | None = None  # the key of the instance that started this one
        # child instance id -> the run_workflow step waiting for it (built when first asked)
        self.waited_children: dict[tuple[str, str], tuple[str, int]] | None = None
        self.child_ends: dict[str, EventRow] = {}  # children's ends read, not yet handed out
        self.hooks: InstanceHooks | None = (
            engine.hooks_for(spec.name, lease.id) if engine.has_hooks else None
        )

    # --- bookkeeping ---------------------------------------------------------------
    def check_stop(self) -> None:
        """Called before anything new runs: no new work once the activation is stopping."""
        if self.stopping or self.pause_requested or self.engine.draining or self.collecting:
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
        self.entered += 1
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
        if self.not_before is not None:
            await self.until_due()
        self.visited.add(key)
        return count, None

    async def until_due(self) -> None:
        """Claimed ahead of its wake-up (a run() retried after a back-off, say), the replay
        reached something new: it waits for the time the instance was due."""
        when = self.not_before
        if when is not None and self.engine.clock.now() < when:
            self.begin()  # not blocked on waits: settle() must not decide meanwhile
            try:
                await self.engine.clock.sleep_until(when)
            finally:
                self.end(False)
        self.not_before = None

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

    def register_rollback(self, undo: Undo) -> None:
        """Keep a step's rollback handler: it runs if the instance rolls back."""
        self.rollbacks[(undo.step.name, undo.step.count)] = undo

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
            not self.collecting
            and self.at_frontier()
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
        self.decide()

    def decide(self) -> None:
        """``settle``, ending the activation on what it raises."""
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
                    batch = (entry.step.config or {}).get("batch")
                    if batch is not None:
                        self.replay_batch(batch)
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
            if not self.hold(live, now):
                self.stop_parked()
            return
        self.resolve_timer(chosen[0], now)
        self.arm()

    def hold(self, live: list[_Parked], now: float) -> bool:
        """Every live wait is a timer: when the first one is due within the engine's
        look-ahead, wait for it here, in memory, rather than suspend and be claimed and
        replayed again when it is due (an instance claimed ahead of its wake-up,
        ``Scheduler._schedule``, waits here). Whether it holds."""
        engine = self.engine
        if self.replay_only or self.collecting or self.held is not None or engine.lookahead <= 0:
            return False
        first = min((e.deadline for e in live if e.deadline is not None), default=None)
        if first is None or first - now > engine.lookahead or not engine.scheduler.hold():
            return False
        self.held = asyncio.get_running_loop().call_later(max(first - now, 0.0), self._fired, first)
        return True

    def _fired(self, due: float) -> None:
        """The timer of a hold is due: the wait it was for ends now."""
        late = self.engine.clock.now() - due
        self.engine.observer.timer_fired(self.spec.name, late)  # observe: wake-up lateness
        self.release()

    def release(self) -> None:
        """End a hold: the timer is due, or the instance is to pause or the host drains
        (``settle`` then suspends it)."""
        if self.held is None:
            return
        self.drop_hold()
        if not (self.stopping or self.finished):
            self.decide()

    def drop_hold(self) -> None:
        """Give up the hold without deciding anything (the activation is over)."""
        if self.held is not None:
            self.held.cancel()
            self.held = None
            self.engine.scheduler.unhold()

    async def settle_events(self, live: list[_Parked]) -> None:
        """``settle`` when event waits are live: which events arrived is a store read.

        The ends of children (``run_workflow`` waits) are read whole, all that arrived in
        one read, and handed out one per decision from :attr:`child_ends` until none of the
        live waits has one there: a parent gathering many children takes every end that has
        arrived in one activation, with one read."""
        engine = self.engine
        try:
            types = sorted(
                {e.event_type for e in live if e.event_type and e.step.type != "run_workflow"}
            )
            arrived: dict[str, float] = {}
            if types:
                self.begin()
                try:
                    arrived = await engine.store.pending_events(self.lease, types)
                finally:
                    self.end(False)
            children = [
                e.event_type for e in live if e.event_type and e.step.type == "run_workflow"
            ]
            if children and not any(t in self.child_ends for t in children):
                self.begin()
                try:
                    self.child_ends = await engine.store.oldest_events(self.lease, children)
                finally:
                    self.end(False)
            for type in children:
                if type in self.child_ends:
                    arrived[type] = self.child_ends[type].created_at
            now = engine.clock.now()
            chosen = self.choose(live, arrived, now)
            if chosen is None:
                self.stop_parked()
            elif chosen[1] == "due":
                self.resolve_timer(chosen[0], now)
            elif chosen[1] == "event" and chosen[0].step.type == "run_workflow":
                self.resolve_child_ends(self._child_batch(live, chosen[0], arrived, now), now)
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

    def replay_batch(self, batch: int) -> None:
        """Hand back, in the same turn, the other waits that ended in one decision with the
        one just handed back (``resolve_child_ends``), as that decision did."""
        members = {
            _resolved_seq(e.step): e
            for e in self.parked
            if e.kind == "gated" and not e.closed and (e.step.config or {}).get("batch") == batch
        }
        while not self.at_frontier():
            seq = self.gates[self.gate_pos]
            entry = members.pop(seq, None)
            if entry is None:
                return
            self.mark_replayed(seq)
            entry.settle()

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
        children = [e for e in live if e.step.type == "run_workflow"]
        if children:
            # a child's end has a type of its own: no order among waits to keep, no sort
            best = self._choose_child_end(children, arrived, now)
            live = [e for e in live if e.step.type != "run_workflow"]
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

    def _choose_child_end(
        self, waits: list[_Parked], arrived: dict[str, float], now: float
    ) -> tuple[float, int, _Parked, str] | None:
        """``choose`` among ``run_workflow`` waits: the first to have its child's end, or
        to pass its timeout."""
        forced = self.hooks.event_timeout_forced if self.hooks is not None else None
        best: tuple[float, int, _Parked, str] | None = None
        for entry in waits:
            if entry.closed:
                continue
            seq = entry.step.seq
            if forced is not None and forced(entry.step.name):
                ready = (now, seq, entry, "timeout")
            elif (at := arrived.get(entry.event_type or "")) is not None:
                ready = (at, seq, entry, "event")
            elif entry.deadline is not None and entry.deadline <= now:
                ready = (entry.deadline, seq, entry, "timeout")
            else:
                continue
            if best is None or ready[:2] < best[:2]:
                best = ready
        return best

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

    def _child_batch(
        self, live: list[_Parked], first: _Parked, arrived: dict[str, float], now: float
    ) -> list[_Parked]:
        """The ``run_workflow`` waits to end together with ``first``: every one whose
        child's end has been read, when nothing else (a timer, an event, a child's timeout)
        is ready; else ``first`` alone. In the order of the ends' arrival."""
        children = [e for e in live if e.step.type == "run_workflow" and not e.closed]
        others = [e for e in live if e.step.type != "run_workflow"]
        if any(e.deadline is not None and e.deadline <= now for e in children) or (
            others and self.choose(others, arrived, now) is not None
        ):
            return [first]
        ready = [e for e in children if (e.event_type or "") in self.child_ends]
        ready.sort(key=lambda e: (self.child_ends[e.event_type or ""].created_at, e.step.seq))
        return ready or [first]

    def resolve_child_ends(self, entries: list[_Parked], now: float) -> None:
        """End ``run_workflow`` waits with their children's ends, each recorded with its
        place in the order of events. Several ended in one decision are marked as one batch
        (``config["batch"]``: the first one's place), and replay hands them back together.
        Each event is consumed by a write queued now and not awaited (as a wait's row is:
        see :meth:`write_step`); the step in memory is what it stores."""
        batch: int | None = None
        for entry in entries:
            assert entry.event_type is not None
            event = self.child_ends.pop(entry.event_type)
            if len(entries) > 1:
                batch = self.next_seq if batch is None else batch
                entry.step.config = {**(entry.step.config or {}), "batch": batch}
            self.resolve_child_end(entry, event, now)
        self.engine.notify(self.spec.name, self.lease.id, None)

    def resolve_child_end(self, entry: _Parked, event: EventRow, now: float) -> None:
        """End one ``run_workflow`` wait with its child's end (see ``resolve_child_ends``)."""
        step = entry.step
        entry.closed = True
        self.resolve_now(step)
        assert entry.event_type is not None
        future = self.engine.store.take_event(self.lease, step, entry.event_type, now)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        end = child_end(event.payload)
        step.status = end.step_status
        step.output = end.output.encode() if end.output is not None else None
        step.error = end.error
        step.config = {**(step.config or {}), "status": end.child_status}
        step.ended_at = now
        step.wake_at = None
        entry.settle()  # run_workflow returns or raises from the step

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
            raw = WorkflowStepEvent(
                type=event.type,
                payload=loads(event.payload),
                timestamp=datetime.fromtimestamp(event.created_at, UTC),
            )
            try:
                value = taken(raw, step.config or {}, entry.payload_type)
            except ValidationError as exc:
                # the payload is consumed; the step fails for good, as the error says
                step.status = "failed"
                step.error = {"name": "ValidationError", "message": exc.message}
                self.begin()
                try:
                    await engine.store.put_step(self.lease, step)
                finally:
                    self.end(False)
                entry.settle(error=exc)
            else:
                entry.settle(value)
        elif how == "timeout":
            assert entry.event_type is not None
            type = (step.config or {}).get("type", entry.event_type)
            step.status = "failed"
            step.ended_at = now
            step.error = {
                "name": "EventTimeoutError",
                "message": f"wait_for_event {step.name!r} timed out waiting for an event of "
                f"type {type!r}",
            }
            if step.type == "run_workflow":
                config = step.config = {**(step.config or {}), "status": "running"}
                step.error = {
                    "name": "TimeoutError",
                    "message": f"child {config.get('workflow')}/{config.get('id')} did not end "
                    f"within {config.get('timeout', 0):g}s",
                }
            self.begin()
            try:
                await engine.store.put_step(self.lease, step)
            finally:
                self.end(False)
            if step.type == "run_workflow":
                entry.settle()  # run_workflow raises from the step as stored
            else:
                entry.settle(error=_event_timeout(step, type))
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

    def run_log(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        """``step.log`` in ``run()``: recorded once per execution (see ``_output``)."""
        position = self.entered
        n = self.run_logs.get(position, 0)
        self.run_logs[position] = n + 1
        if not self.at_frontier() or self.replay_only:
            return  # replaying: an earlier activation logged it (or a check: nothing is)
        key = f"{self.generation}:{position}:{n}"
        log_entry(self, level, message, fields, step=None, attempt=None, run_key=key)

    def step_id(self, name: str, count: int) -> str:
        raw = f"{self.spec.name}\x00{self.lease.id}\x00{self.generation}\x00{name}\x00{count}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def check_size(self, data: bytes, what: str) -> None:
        limit = self.engine.limits.max_payload_bytes
        if len(data) > limit:
            raise LimitExceededError(f"{what} is {len(data)} bytes, over the limit of {limit}")
