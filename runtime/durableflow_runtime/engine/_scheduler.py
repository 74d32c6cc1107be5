"""The loop over ``run_at``: claim runnable instances, run each in an activation, sleep
until the next one is due or something wakes the loop.

The scheduler owns what is in memory: the activations running now (at most the engine's
``max_concurrency``), the task of each, and the wake-up event. An activation ends by
completing, failing or suspending the instance in the store; ``_drive`` decides which.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durableflow import (
    LimitExceededError,
    NonDeterminismError,
    NonRetryableError,
    SerializationError,
    StepFailedError,
    StoreUnavailableError,
    WorkflowEntrypoint,
    WorkflowEvent,
)
from durableflow._entrypoint import params_type
from durableflow._serde import dumps, loads, structure

from ..clock import Clock
from ..store.base import Claimed, InstanceRow, LeaseLost, StepRow
from ..store.transitions import TERMINATED_ERROR
from ._activation import _Activation, _Suspend
from ._records import _error_info
from ._rollback import run_rollbacks
from ._spec import RETRY_AFTER, WorkflowSpec, no_code_message
from ._step import _EngineStep

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("durableflow")


def workflow_and_event(
    spec: WorkflowSpec, row: InstanceRow, env: Any
) -> tuple[WorkflowEntrypoint[Any, Any], WorkflowEvent[Any]]:
    """The workflow object that runs ``row`` (of the class of its version) and the event
    its ``run()`` gets.

    Raises:
        LookupError: No class of the row's version (callers check ``class_for`` first).
    """
    cls = spec.class_for(row.version)
    if cls is None:
        raise LookupError(no_code_message(row.version))
    ptype = spec.params_type if cls is spec.cls else params_type(cls)
    event: WorkflowEvent[Any] = WorkflowEvent(
        payload=structure(loads(row.params), ptype),
        timestamp=datetime.fromtimestamp(row.created_at, UTC),
        instance_id=row.id,
        workflow_name=spec.name,
        version=row.version,
    )
    return cls(env), event


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


_UNOBSERVED = object()  # observe: an activation that never started
#: Pauses and resumes told to no activation are kept this long, at most this many: long
#: enough to span a claim and the start of the activations it launches.
_MISSED_SECONDS = 10.0
_MISSED_KEPT = 10_000


class Scheduler:
    """Claims runnable instances from the engine's store and runs each in an activation.

    Args:
        engine: The engine whose store, clock, workflows and limits it uses.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.active: dict[tuple[str, str], _Activation] = {}
        self._finished: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running = 0  # activations launched and not yet ended
        self._holding = 0  # of those, held in memory on a timer (``_Activation.hold``)
        self._reserved = 0  # slots taken by creates that may claim, until they return
        #: pause/resume told while no activation of the instance ran here (loop time, what):
        #: one claimed meanwhile, not yet started, takes it (``_activate``)
        self._missed: dict[tuple[str, str], tuple[float, str]] = {}
        self._wake = asyncio.Event()
        # the last claim was cut short by max_concurrency: an ending activation frees room
        self._bound = False
        # a clock whose time jumps when the loop finds nothing to run (a test's): the loop
        # must look each time the last activation ends
        self._jumps = type(engine.clock).idle is not Clock.idle
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop (the store is open)."""
        self._loop = asyncio.create_task(self._schedule(), name="durableflow-scheduler")

    async def stop(self, grace: float) -> None:
        """Stop claiming; running activations get ``grace`` seconds, then are cancelled."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for act in list(self.active.values()):
            act.release()  # held on a timer: suspends now (the engine is draining)
        tasks = list(self._finished.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def kick(self) -> None:
        """Wake the loop: something may have become runnable."""
        self._wake.set()

    def steer(self, workflow: str, id: str, what: str) -> None:
        """Tell the instance's running activation, if any, of a change: ``pause``,
        ``resume``, or ``terminate``/``restart``/``delete``/``lost`` (which cancel it)."""
        act = self.active.get((workflow, id))
        if act is None:
            if what in ("pause", "resume"):
                now = asyncio.get_running_loop().time()
                missed = self._missed
                missed.pop((workflow, id), None)
                missed[(workflow, id)] = (now, what)  # the dict is in the order they came
                for old in list(itertools.islice(missed, max(len(missed) - _MISSED_KEPT, 1))):
                    if len(missed) <= _MISSED_KEPT and now - missed[old][0] < _MISSED_SECONDS:
                        break
                    del missed[old]
            return
        if what == "pause":
            act.pause_requested = True
            act.release()  # held on a timer: suspends now, to be paused
        elif what == "resume":
            act.pause_requested = False
        elif what in ("terminate", "terminate_rollback", "restart", "delete", "lost"):
            act.cancelled_for = what
            if act.task is not None:
                act.task.cancel()

    async def _schedule(self) -> None:
        engine = self.engine
        store = engine.store
        clock = engine.clock
        store_fault = ""  # the last claim failure logged, until a claim works again
        while True:
            self._wake.clear()
            # held activations wait on a timer in memory: they take no slot until it fires
            free = self.room()
            # claim ahead (instances due within the look-ahead) while there is room to hold
            ahead = engine.lookahead if self._holding < engine.max_held else 0.0
            due = clock.now()
            next_at: float | None = None  # when to claim again (read with the claim)
            self._bound = free <= 0
            if free > 0:
                try:
                    claim_started = engine.observer.claim_started()  # observe: claim latency
                    claimed_at = asyncio.get_running_loop().time()
                    now = clock.now()
                    due = now + ahead
                    claimed, next_at = await store.claim_next(now, free, due)
                    engine.observer.claimed(claim_started, claimed, clock.now())  # observe:
                except Exception as exc:
                    store_fault = await _claim_failed(exc, store_fault)
                    continue
                if store_fault:
                    log.warning("claiming work works again")
                    store_fault = ""
                for work in claimed:
                    self._launch(work, claimed_at)
                if len(claimed) == free:
                    self._bound = True
                    continue
            if self._wake.is_set():
                continue
            if not self._running and clock.idle(next_at):
                continue
            timer: asyncio.Task[None] | None = None
            if next_at is not None:
                # the next one beyond the look-ahead: claim it that long before it is due;
                # one within it was left by this claim (flow limits, another host's lock):
                # look again when it is due
                wake = next_at - ahead if next_at > due else next_at
                timer = asyncio.ensure_future(clock.sleep_until(wake))
            elif engine.poll_interval is not None:
                timer = asyncio.ensure_future(asyncio.sleep(engine.poll_interval))
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

    def room(self) -> int:
        """How many more activations may run now (held ones take no slot)."""
        return self.engine.max_concurrency - (self._running - self._holding) - self._reserved

    def reserve(self, count: int) -> bool:
        """Take ``count`` slots for a create that may claim (``Engine.create``), if there
        is room for them all; give them back with :meth:`release` once it returned."""
        if self.room() < count:
            return False
        self._reserved += count
        return True

    def release(self, count: int) -> None:
        """Give back slots :meth:`reserve` took (what the create claimed is launched)."""
        self._reserved -= count

    def adopt(self, claimed: list[Claimed], claimed_at: float) -> None:
        """Run instances claimed outside the claim loop (claimed by their create)."""
        for work in claimed:
            self._launch(work, claimed_at)
        if claimed and self.room() <= 0:
            self._bound = True

    def hold(self) -> bool:
        """Take a place for an activation to wait on a timer in memory (its slot freed
        for other work); whether there was one."""
        if self._holding >= self.engine.max_held:
            return False
        self._holding += 1
        self.kick()  # a slot is free: claim more
        return True

    def unhold(self) -> None:
        """An activation held on a timer runs again (or ended)."""
        self._holding -= 1

    def _launch(self, work: Claimed, claimed_at: float) -> None:
        engine = self.engine
        lease = work.lease
        key = (lease.workflow, lease.id)
        spec = engine.workflows.get(lease.workflow)
        if spec is None:
            # e.g. a rolling deploy: a host with the workflow will take it
            log.error(
                "instance %s/%s: no workflow %r on this host",
                *key,
                lease.workflow,
                extra={"workflow": key[0], "instance": key[1]},
            )
            now = engine.clock.now()
            future = engine.store.suspend(lease, now + RETRY_AFTER, (), now)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        if spec.class_for(work.row.version) is None:
            # claims skip what this host cannot run (Store.runnable); a store that was
            # handed no such list: leave the instance for a host with its code
            log.warning(
                "instance %s/%s: %s; trying again in %ss",
                *key,
                no_code_message(work.row.version),
                RETRY_AFTER,
                extra={"workflow": key[0], "instance": key[1]},
            )
            now = engine.clock.now()
            future = engine.store.suspend(lease, now + RETRY_AFTER, (), now)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        previous = self._finished.pop(key, None)
        task = asyncio.create_task(self._activate(spec, work, previous, claimed_at))
        self._running += 1
        self._finished[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._finished.get(key) is task:
            del self._finished[key]

    async def _activate(
        self,
        spec: WorkflowSpec,
        work: Claimed,
        previous: asyncio.Task[None] | None,
        claimed_at: float,
    ) -> None:
        engine = self.engine
        lease, row = work.lease, work.row
        key = (lease.workflow, lease.id)
        observed: Any = _UNOBSERVED  # observe: the activation's token
        act: _Activation | None = None
        quiet = False  # the instance ended leaving nothing runnable: no claim needed
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # a cancelled activation of the same instance
            act = _Activation(
                engine,
                spec,
                lease,
                work.steps,
                row.generation,
                row.pause_requested,
                collecting=row.status == "rollingBack",
            )
            act.parent = row.parent
            act.not_before = work.not_before
            missed = self._missed.pop(key, None)
            if missed is not None and missed[0] >= claimed_at:
                # told after the claim read the row, before this activation could hear it
                act.pause_requested = missed[1] == "pause"
            observed = engine.observer.activation_started(spec.name, lease.id, work)  # observe:
            self.active[key] = act
            engine.notify(lease.workflow, lease.id, "running")
            act.task = asyncio.current_task()
            quiet = await self._drive(act, row)
        except LeaseLost:
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            # The engine or the store failed (not user code, whose errors end the
            # instance): leave it runnable a little later rather than stuck as running.
            log.exception(
                "instance %s/%s: activation failed; retrying in %ss",
                *key,
                RETRY_AFTER,
                extra={"workflow": key[0], "instance": key[1]},
            )
            with contextlib.suppress(Exception, LeaseLost):
                now = engine.clock.now()
                await engine.store.suspend(lease, now + RETRY_AFTER, (), now)
        finally:
            if observed is not _UNOBSERVED:
                engine.observer.activation_ended(observed)  # observe: activation over
            active = self.active.get(key)
            if act is not None:
                act.drop_hold()
            if active is not None and active.lease == lease:
                active.drop_parked()
                del self.active[key]
            self._running -= 1
            if not quiet or self._bound or (self._jumps and not self._running):
                self.kick()

    async def _drive(self, act: _Activation, row: InstanceRow) -> bool:
        """Run the instance until it ends or suspends; whether it ended leaving nothing
        runnable that was not before (a finish with no parent to wake nor flow limit to
        free: then the scheduler need not claim again)."""
        lease = act.lease
        outcome: str
        output: Any = None
        error: BaseException | None = None
        try:
            workflow, event = workflow_and_event(act.spec, row, self.engine.env)
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
                return False  # terminated, restarted or deleted: the store already says so
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
        if act.collecting:  # run() was replayed to register the rollbacks to resume
            act.stop_parked()
            await self._roll_back(act, row.error or TERMINATED_ERROR, row.rollback_to)
            return False
        if act.fatal is not None:
            outcome, error = "errored", act.fatal
        if outcome != "suspend" and act.not_before is not None:
            await act.until_due()  # claimed ahead: it ends no earlier than it was due
        if outcome == "suspend":
            act.stop_parked()  # waits still pending wake the instance later
        else:
            act.abandon_parked()  # run() ended without them: they never resolve
        now = self.engine.clock.now()
        if outcome == "suspend":
            run_at = min(act.wake_times) if act.wake_times else None
            if act.progressed_while_stopping or (run_at is None and not act.wait_types):
                # progress to continue from, or a pause the store may find withdrawn by now
                # (then the instance must run again rather than wait for nothing)
                run_at = now
            status = await self.engine.store.suspend(lease, run_at, act.wait_types, now)
            self.engine.notify(lease.workflow, lease.id, status)
            return False
        data: bytes | None = None
        if outcome == "complete":
            try:
                data = dumps(output, what="the output of run()")
                act.check_size(data, "the output of run()")
            except (SerializationError, LimitExceededError) as exc:
                outcome, error = "errored", exc
                data = None
        info = _error_info(error) if error is not None else None
        if outcome == "errored" and info is not None:
            if await self._retry_run(act, row, error, info):
                return False
            if act.rollbacks:
                await self.engine.store.begin_rollback(lease, info, "errored")
                self.engine.notify(lease.workflow, lease.id, "rollingBack")
                await self._roll_back(act, info, "errored")
                return False
        await self.engine.observer.commit(  # observe: commit latency
            self.engine.store.finish(lease, outcome, data, info, now, parent=act.parent)
        )
        self.engine.notify(lease.workflow, lease.id, outcome)
        return act.parent is None and lease.workflow not in self.engine.store.flow_limits

    async def _roll_back(self, act: _Activation, error: dict[str, str], then: str | None) -> None:
        """Run the rollbacks of a ``rollingBack`` instance, then end it as ``then``
        (``errored`` with ``error``, or ``terminated``)."""
        lease = act.lease
        due = await run_rollbacks(act, error)
        if due is not None:  # a handler's retry back-off: the instance waits, rolling back
            await self.engine.store.suspend_rollback(lease, due)
            return
        status = "terminated" if then == "terminated" else "errored"
        now = self.engine.clock.now()
        await self.engine.store.finish(
            lease, status, None, error if status == "errored" else None, now
        )
        self.engine.notify(lease.workflow, lease.id, status)

    async def _retry_run(
        self,
        act: _Activation,
        row: InstanceRow,
        error: BaseException | None,
        info: dict[str, str],
    ) -> bool:
        """Under the workflow's ``run_retries``, schedule ``run()`` to run again after the
        back-off (its failed steps dropped from the history); whether it was."""
        policy = act.spec.run_retries
        if (
            policy is None
            or row.run_retries >= policy.retries.limit
            or isinstance(error, NonRetryableError | NonDeterminismError)
            or (isinstance(error, StepFailedError) and error.error_name == "NonRetryableError")
            or act.fatal is not None
        ):
            return False
        now = self.engine.clock.now()
        run_at = now + policy.delay_before_retry(row.run_retries + 1)
        # the failed steps at the end of the history run again (with the waits run()
        # left behind when it raised); one that run() caught before going on stays as
        # it is (replay hands it the same failure)
        dropped: list[StepRow] = []
        for step in sorted(act.order, key=lambda s: s.seq, reverse=True):
            if step.status not in ("failed", "cancelled"):
                break
            dropped.append(step)
        await self.engine.store.retry_run(act.lease, run_at, info, dropped)
        self.engine.notify(act.lease.workflow, act.lease.id, "waiting")
        return True


async def _claim_failed(exc: Exception, store_fault: str) -> str:
    """Log a failed claim (a full disk or an outage: one line, not a traceback a second;
    anything else with its traceback), wait a second; the store fault now logged."""
    if isinstance(exc, StoreUnavailableError):
        if str(exc) != store_fault:
            log.warning("claiming work failed, retrying every second: %s", exc)
        store_fault = str(exc)
    else:
        log.exception("claiming work failed; retrying")
    await asyncio.sleep(1.0)
    return store_fault
