"""The engine: the binding's operations, the life cycle, and change notification.

``Engine`` is what the host, the server and the testing kit hold. It validates and
records what callers ask (create, status, control, send_event, wait, result, list,
prune, describe) and owns a ``Scheduler`` that runs instances; an instance's replay is
an ``_Activation`` driving an ``_EngineStep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from durableflow import (
    BulkResult,
    ErrorInfo,
    InstanceFailedError,
    InstanceStatus,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
    WebhookRequest,
)
from durableflow._output import check_stream_name
from durableflow._serde import describe_structure_error, dumps, loads, structure, unstructure
from durableflow._types import (
    MAX_BULK,
    STATUSES,
    BulkAction,
    StepRef,
    check_bulk,
    check_id,
    check_token,
)

from ..clock import Clock, RealClock
from ..metrics import NO_OBSERVER, Observer  # observe: the hooks' interface
from ..schedules import ScheduleConfig, instance_id
from ..store._flow import why_blocked
from ..store._output import ChunkRow, LogRow, StreamInfo
from ..store._queries import runs_on
from ..store.base import (
    FINAL_STATUSES,
    FINISHED,
    Claimed,
    ControlAction,
    InstanceRow,
    NewInstance,
    Store,
)
from ._bindings import Bindings, EngineWorkflow
from ._costly import CostlyReads
from ._hooks import Verifiers, check_registered, find_verifier
from ._output import StreamHub, read_stream
from ._records import InstanceRecord
from ._replay import history_json
from ._scheduler import Scheduler
from ._schedules import ScheduleRunner
from ._spec import (
    RESERVED_INSTANCE_IDS,
    InstanceHooks,
    Limits,
    WorkflowSpec,
    check_priority,
    no_code_message,
)

if TYPE_CHECKING:
    from ._activation import _Activation


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")

#: Instances a bulk action steers at the same time.
_BULK_CONCURRENCY = 32

_ID_PREFIX = re.compile(r"[A-Za-z0-9_-]+")  # the characters of an instance id
_WEBHOOK_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what secrets.token_urlsafe draws

log = logging.getLogger("durableflow")


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


#: Seconds before its wake-up that a timer-only wait is claimed and held in memory: long
#: enough to replay ten thousand instances due at one instant before it comes.
DEFAULT_LOOKAHEAD = 2.0
#: Instances held in memory ahead of their wake-up, at most (a few KB each).
DEFAULT_MAX_HELD = 20_000


class Engine:
    """Runs workflow instances from a store.

    Args:
        store: Where everything is persisted.
        workflows: The workflows this engine runs.
        clock: Where time comes from (a ``VirtualClock`` in tests).
        max_concurrency: How many instances run (are in memory) at once; the rest queue.
        limits: Size and count limits.
        poll_interval: Seconds between store polls when the store cannot push wake-ups.
        public_url: The base URL outside services reach this host at: webhook URLs
            are ``<public_url>/hooks/<token>``.
        schedules: The ``[[schedules]]`` whose ticks it starts (params checked here).
        lookahead: Seconds ahead of its wake-up time an instance waiting on a timer only
            (a sleep, a retry's back-off) is claimed, replayed and held in memory, so that
            it continues at the instant it is due even when many are due at once. ``0``:
            claimed when due. Default: ``DEFAULT_LOOKAHEAD`` on the plain real clock, ``0`` on
            any other (the testing kit's clocks).
        max_held: How many such instances are held at once, at most; beyond it, the
            others are claimed when due.
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
        public_url: str = "http://127.0.0.1:8787",
        schedules: Sequence[ScheduleConfig] = (),
        lookahead: float | None = None,
        max_held: int = DEFAULT_MAX_HELD,
    ) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.verifiers = Verifiers()
        self.clock = clock or RealClock()
        self.max_concurrency = max_concurrency
        if lookahead is None:
            lookahead = DEFAULT_LOOKAHEAD if type(self.clock) is RealClock else 0.0
        self.lookahead = lookahead
        self.max_held = max_held
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
        self.scheduler = Scheduler(self)
        self._listeners: list[Callable[[str, str, str | None], None]] = []
        self.stream_hub = StreamHub()  # chunks written here, handed to readers here
        self.costly = CostlyReads()  # counts over a workflow's instances (_costly)
        self._started = False
        self.observer: Observer = NO_OBSERVER  # observe: the host installs metrics/tracing
        for schedule in schedules:
            try:
                self.prepare(schedule.workflow, instance_id(schedule.name, 0), schedule.params)
            except ValidationError as exc:
                raise ValidationError(f"schedule {schedule.name!r}: {exc.message}") from None
        self.schedules = ScheduleRunner(self, schedules)

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, resume what a crash left running, and start scheduling."""
        self.store.set_flow_limits({name: spec.flow for name, spec in self.workflows.items()})
        self.store.runnable = self.runnable()
        await self.store.open()
        self.store.subscribe(self._remote_change)
        if self.store.single_host:
            await self.store.recover(self.clock.now())
        self.draining = False
        self._started = True
        self.scheduler.start()
        self.schedules.start()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work; running steps get ``grace`` seconds to finish, then are cancelled.

        Instances cut off are resumed by the next engine on the same store.
        """
        if not self._started:
            return
        self._started = False
        self.draining = True
        await self.schedules.stop()
        await self.scheduler.stop(grace)
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
        if what == "stream":  # a chunk for readers: nothing to steer or to claim
            self.notify(workflow, id, None)
            return
        self.scheduler.steer(workflow, id, what)
        self.notify(workflow, id, None)  # waiters re-read the instance
        self.kick()

    def kick(self) -> None:
        """Wake the scheduler: something may have become runnable."""
        self.scheduler.kick()

    def runnable(self) -> tuple[str, ...]:
        """The ``workflow/version`` keys of every instance this engine has code for."""
        return tuple(
            runs_on(spec.name, version)
            for spec in self.workflows.values()
            for version in spec.classes
        )

    async def counts(self, workflow: str) -> dict[str, int]:
        """How many instances of ``workflow`` are in each status: exact while counting is
        quick, at most a few seconds old past a few hundred thousand (:mod:`._costly`)."""
        self.spec(workflow)
        return await self.costly.get(
            ("counts", workflow), lambda: self.store.status_counts(workflow)
        )

    async def versions(self, workflow: str) -> list[dict[str, Any]]:
        """The versions of a workflow: each that this host has code for or that instances
        not finished recorded, with ``current`` (new instances get it), ``code`` (this
        host runs it) and ``in_flight`` (its instances not finished)."""
        spec = self.spec(workflow)
        counts = await self.costly.get(
            ("versions", workflow), lambda: self.store.in_flight_by_version(workflow)
        )
        known = list(spec.classes) + sorted(
            (v for v in counts if v not in spec.classes), key=lambda v: (v is not None, v or "")
        )
        return [
            {
                "version": version,
                "class_name": cls.__name__ if (cls := spec.class_for(version)) else None,
                "current": version == spec.version,
                "code": cls is not None,
                "in_flight": counts.get(version, 0),
            }
            for version in known
        ]

    @property
    def _active(self) -> dict[tuple[str, str], _Activation]:
        """The activations in memory now, by ``(workflow, id)`` (tests look at it)."""
        return self.scheduler.active

    # --- the binding's operations -----------------------------------------------------
    def spec(self, workflow: str) -> WorkflowSpec:
        try:
            return self.workflows[workflow]
        except KeyError:
            raise NotFoundError(f"no workflow named {workflow!r}") from None

    def prepare(
        self,
        workflow: str,
        id: str | None,
        params: Any,
        *,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> NewInstance:
        """Validate one instance to create.

        Raises:
            NotFoundError, ValidationError, InvalidParamsError, LimitExceededError.
        """
        spec = self.spec(workflow)
        rank = check_priority(priority)
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
        return NewInstance(
            workflow,
            instance_id,
            data,
            self.clock.now(),
            priority=rank,
            concurrency_key=spec.flow_key(value, concurrency_key),
            version=spec.version,
        )

    async def create(
        self,
        workflow: str,
        items: Sequence[tuple[str | None, Any]],
        *,
        traceparent: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> list[str]:
        """Create instances (all or none); returns their ids.

        ``priority`` (0-100, default 0) and ``concurrency_key`` (default: read from the
        params by the workflow's ``concurrency_key`` path) apply to each of them.

        ``traceparent`` (a W3C trace context header, kept when well formed) is stored with
        each instance, so its first activation's span is a child of the creator's, on any
        host and after a restart.
        """
        if len(items) > self.limits.max_batch:
            raise LimitExceededError(
                f"a batch holds at most {self.limits.max_batch} instances, not {len(items)}"
            )
        rows = [
            self.prepare(workflow, id, params, priority=priority, concurrency_key=concurrency_key)
            for id, params in items
        ]
        if traceparent is not None and _TRACEPARENT.fullmatch(traceparent):
            rows = [attrs.evolve(r, trace=traceparent) for r in rows]
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValidationError(f"instance id {dup!r} appears twice in the batch")
        claimed: list[Claimed] = []
        claimed_at = asyncio.get_running_loop().time()
        if self._claims_at_create(workflow) and self.scheduler.reserve(len(rows)):
            try:  # the slots stay reserved while the create runs: creates at once, and
                # the claim loop meanwhile, never take more than max_concurrency between them
                started = self.observer.claim_started()  # observe: a create that claims
                claimed = await self.store.create_and_claim(rows, self.clock.now())
            finally:
                self.scheduler.release(len(rows))
            if claimed:
                self.observer.claimed(started, claimed, self.clock.now())  # observe:
        else:
            await self.store.create_instances(rows)
        for row in rows:
            self.notify(workflow, row.id, "queued")
        if claimed:
            self.scheduler.adopt(claimed, claimed_at)
        else:
            self.kick()
        return ids

    def _claims_at_create(self, workflow: str) -> bool:
        """Whether a create may claim its instances for this host in the same statement
        (``Store.create_and_claim``: only when nothing else is due, and when the scheduler
        has room for all of them): the engine runs, is not draining, and the workflow has
        no flow limits (those are claimed apart, under their own lock)."""
        return self._started and not self.draining and workflow not in self.store.flow_limits

    async def status(self, workflow: str, id: str) -> InstanceStatus:
        """The instance's status, error and output."""
        self.spec(workflow)
        row = await self.store.get_instance(workflow, id)
        if row is None:
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        error = ErrorInfo(**row.error) if row.error else None
        return InstanceStatus(status=row.status, error=error, output=loads(row.output))

    async def control(
        self,
        workflow: str,
        id: str,
        action: ControlAction,
        *,
        from_step: object = None,
        cascade: bool = False,
    ) -> str:
        """Pause, resume, terminate or restart; returns the new status.

        Args:
            from_step: With ``restart``: the step to restart from (a ``StepRef`` or a
                ``{"name", "count"?, "type"?}`` dict); ``None`` restarts from the start.
            cascade: With ``terminate``: also terminate the instance's running
                descendants, in the same transaction; with ``terminate_rollback``, after
                the instance starts rolling back. Without it, children outlive a
                terminated parent.

        Raises:
            NotFoundError, InvalidTransitionError, ValidationError (a bad ``from_step``).
        """
        self.spec(workflow)
        now = self.clock.now()
        if cascade and action not in ("terminate", "terminate_rollback"):
            raise ValidationError(f"cascade applies to terminate only, not to {action}")
        if from_step is not None and action != "restart":
            raise ValidationError(f"from_step goes with restart, not {action}")
        if action == "terminate":
            rows = await self.store.terminate(workflow, id, now, cascade=cascade)
            for done in rows:
                self.scheduler.steer(done.workflow, done.id, "terminate")
                self.notify(done.workflow, done.id, done.status)
            self.kick()  # a terminated child may have woken its parent
            return rows[0].status
        if from_step is not None:
            ref = StepRef.parse(from_step)
            row = await self.store.restart_from(workflow, id, ref, now)
        else:
            row = await self.store.control(workflow, id, action, now)
        self.scheduler.steer(workflow, id, action)
        self.notify(workflow, id, row.status)
        self.kick()
        if cascade:  # terminate_rollback: the children go as a plain terminate takes them
            _, children = await self.store.relatives(row)
            for child in children:
                if child.status not in FINAL_STATUSES:
                    with contextlib.suppress(InvalidTransitionError, NotFoundError):
                        await self.control(child.workflow, child.id, "terminate", cascade=True)
        return row.status

    async def delete(self, workflow: str, id: str) -> None:
        """Delete an instance and everything stored for it; a running activation stops.

        Raises:
            NotFoundError: No such instance.
        """
        self.spec(workflow)
        if not await self.store.delete_instance(workflow, id, self.clock.now()):
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        self.scheduler.steer(workflow, id, "delete")
        self.notify(workflow, id, None)
        self.kick()  # a deleted child may have woken its parent

    async def bulk(
        self,
        workflow: str,
        action: object,
        *,
        ids: object = None,
        status: object = None,
    ) -> tuple[list[BulkResult], bool]:
        """Apply a control action or ``delete`` to many instances, each on its own.

        Args:
            workflow: The workflow's name.
            action: ``pause``, ``resume``, ``terminate``, ``restart`` or ``delete``.
            ids: The instances' ids (at most 1,000), or
            status: every instance in this status (the newest 1,000 of them).

        Returns:
            One result per instance, in order, and whether more instances have ``status``
            than this call took.

        Raises:
            NotFoundError: Unknown workflow. ValidationError: a bad request.
        """
        self.spec(workflow)
        checked_action, id_list, checked_status = check_bulk(action, ids, status)
        more = False
        if id_list is None:
            rows, cursor = await self.list_instances(
                workflow, status=checked_status, limit=MAX_BULK
            )
            id_list, more = [r.id for r in rows], cursor is not None
        results: list[BulkResult] = []
        # a few at a time: SQLite commits them in one group, PostgreSQL uses its pool
        for start in range(0, len(id_list), _BULK_CONCURRENCY):
            chunk = id_list[start : start + _BULK_CONCURRENCY]
            results += await asyncio.gather(
                *(self._apply(workflow, checked_action, i) for i in chunk)
            )
        return results, more

    async def _apply(self, workflow: str, action: BulkAction, id: str) -> BulkResult:
        try:
            if action == "delete":
                await self.delete(workflow, id)
                return BulkResult(id, "applied")
            after = await self.control(workflow, id, action)
        except NotFoundError:
            return BulkResult(id, "skipped", "not found")
        except InvalidTransitionError as exc:
            row = await self.store.get_instance(workflow, id)
            return BulkResult(id, "skipped", exc.message, row.status if row else None)
        return BulkResult(id, "applied", None, after)  # type: ignore[arg-type]

    async def send_event(self, workflow: str, id: str, type: str, payload: Any) -> None:
        """Deliver an event to an instance.

        Raises:
            ValidationError: A wait for ``type`` is registered with a ``payload_type`` the
                payload does not fit.
        """
        self.spec(workflow)
        check_id(type, what="event type")
        data = self._payload_bytes(payload, "the event payload")
        for config in await self.store.waiting_configs(workflow, id):
            if config.get("type") == type and "channel" not in config:
                check_registered(config, payload)  # the first wait of the type takes it
                break
        await self.store.send_event(workflow, id, type, data, self.clock.now())
        self.kick()

    def _payload_bytes(self, payload: Any, what: str) -> bytes | None:
        data = dumps(payload, what=what) if payload is not None else None
        if data is not None and len(data) > self.limits.max_payload_bytes:
            raise LimitExceededError(
                f"{what} is {len(data)} bytes, over the limit of {self.limits.max_payload_bytes}"
            )
        return data

    async def resume_hook(self, token: str, payload: Any) -> tuple[str, str]:
        """Resume the wait that registered ``token``; returns its ``(workflow, id)``.

        Raises:
            NotFoundError: No wait with this token is waiting.
            ValidationError: The payload does not fit the wait's ``payload_type``.
        """
        check_token(token)
        data = self._payload_bytes(payload, "the hook payload")
        hook = await self.store.find_hook(token)
        if hook is not None and hook.kind == "hook" and hook.refusal() is None:
            check_registered(hook.step_config, payload)
            outcome, hook = await self.store.deliver_hook(token, "hook", data, self.clock.now())
            if outcome == "delivered" and hook is not None:
                self.kick()
                return hook.workflow, hook.instance_id
        raise NotFoundError(
            f"no hook waits with token {token!r} (unknown, expired, already resumed, or "
            "not registered yet: a hook takes payloads only while it waits)"
        )

    async def call_webhook(self, token: str, request: WebhookRequest) -> int:
        """A request to a webhook's URL: the HTTP status to answer.

        202 taken (the instance resumes), 401 its signature does not verify, 404 no such
        webhook, 410 it took a request already or its instance ended, 413 too large.
        """
        if not _WEBHOOK_TOKEN.fullmatch(token):
            return 404
        hook = await self.store.find_hook(token)
        if hook is None or hook.kind != "webhook":
            return 404
        if hook.refusal() is not None:
            return 410
        if hook.verify is not None:
            verifier = await find_verifier(self, hook)
            if verifier is None:
                log.warning(
                    "webhook of instance %s/%s: its verifier was not found by replaying "
                    "run() (did the code change?); request refused",
                    hook.workflow,
                    hook.instance_id,
                )
                return 401
            if not verifier.verify(request):
                return 401
        data = dumps(request.to_json(), what="the webhook request")
        if len(data) > self.limits.max_payload_bytes:
            return 413
        outcome, _ = await self.store.deliver_hook(token, "webhook", data, self.clock.now())
        if outcome == "delivered":
            self.kick()
            return 202
        return 410 if outcome == "gone" else 404

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
        version: str | None = None,
    ) -> tuple[list[InstanceRow], str | None]:
        """Instances newest first, and the cursor of the next page (``None`` at the end).

        The server turns the rows into JSON (``server/_models.py``).

        Args:
            workflow: The workflow's name.
            status: Only instances with this status.
            limit: Page size, 1 to 1000.
            cursor: The ``next_cursor`` of the previous page.
            id_prefix: Only instances whose id starts with this (taken literally).
            created_after: Only instances created at or after this ISO 8601 time.
            created_before: Only instances created before this ISO 8601 time.
            version: Only instances created at this version of the workflow's code.

        Raises:
            NotFoundError: Unknown workflow. ValidationError: a bad status, limit, cursor,
                id prefix, time or version.
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
        if version is not None and not 1 <= len(version) <= 64:
            raise ValidationError("version must be 1 to 64 characters")
        if id_prefix is not None and not _ID_PREFIX.fullmatch(id_prefix):
            # no id holds other characters (and PostgreSQL text cannot hold a NUL)
            return [], None
        rows = await self.store.list_instances(
            workflow,
            status=status,
            limit=limit + 1,
            cursor=after,
            id_prefix=id_prefix,
            created_after=_parse_time(created_after, "created_after"),
            created_before=_parse_time(created_before, "created_before"),
            version=version,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (str(rows[-1].key) if more else None)

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

    # --- streams and logs ---------------------------------------------------------------
    async def _key_of(self, workflow: str, id: str) -> int:
        self.spec(workflow)
        row = await self.store.get_instance(workflow, id)
        if row is None:
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        return row.key

    def read_stream(
        self, workflow: str, id: str, stream: str, start: int = 0
    ) -> AsyncGenerator[ChunkRow, None]:
        """The stored chunks of a stream from index ``start`` on, then each new one as it
        is written, until the instance has ended.

        Raises:
            NotFoundError: Unknown workflow or instance. ValidationError: a bad name or start.
        """
        check_stream_name(stream)
        given: object = start  # untyped callers may pass anything
        if isinstance(given, bool) or not isinstance(given, int) or given < 0:
            raise ValidationError(f"start must be a chunk index >= 0, not {start!r}")
        return read_stream(self, workflow, id, stream, start)

    async def streams(self, workflow: str, id: str) -> list[StreamInfo]:
        """The instance's streams with their sizes."""
        return await self.store.list_streams(await self._key_of(workflow, id))

    async def logs(
        self, workflow: str, id: str, *, after: int = 0, limit: int = 100
    ) -> list[LogRow]:
        """Up to ``limit`` log entries of the instance after ``seq`` ``after``, oldest first."""
        return await self.store.read_logs(await self._key_of(workflow, id), after, limit)

    async def describe(self, workflow: str, id: str) -> InstanceRecord:
        """Everything known about an instance: its row and its steps.

        The server turns it into the HTTP API's detail (``server/_models.py``).
        """
        self.spec(workflow)
        row = await self.store.get_instance(workflow, id)
        if row is None:
            raise NotFoundError(f"no instance {id!r} of workflow {workflow!r}")
        parent, children = await self.store.relatives(row)
        return InstanceRecord(
            row,
            await self.store.load_steps(row.key),
            parent,
            children,
            blocked=await self.why_blocked(row),
        )

    async def why_blocked(self, row: InstanceRow) -> str | None:
        """Why a runnable instance is not running, or ``None`` (the detail's ``blocked``):
        first no code for its version on this host (no limit matters then), then a flow
        limit that holds it back."""
        spec = self.workflows.get(row.workflow)
        if (
            row.status in ("queued", "waiting")
            and spec is not None
            and spec.class_for(row.version) is None
        ):
            return no_code_message(row.version)
        now = self.clock.now()
        flow = self.store.flow_limits.get(row.workflow)
        if flow is None or row.run_at is None or row.run_at > now:
            return None
        period = flow.rate[1] if flow.rate is not None else 0.0
        usage = await self.store.flow_usage(row.workflow, row.concurrency_key, now, period)
        return why_blocked(flow, usage, row.concurrency_key, row.started_at is None)

    async def history(self, workflow: str, id: str) -> dict[str, Any]:
        """The instance's history as ``durableflow instances export`` writes it, for
        ``durableflow.testing.replay`` (see ``_replay.history_json``)."""
        record = await self.describe(workflow, id)
        return history_json(record.instance, record.steps)
