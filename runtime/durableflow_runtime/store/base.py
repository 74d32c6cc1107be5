"""The store interface: everything the engine persists goes through these methods.

Each backend (SQLite, PostgreSQL) implements :class:`Store`. Writes that belong to a
running instance carry its :class:`Lease`; a backend applies them only while the lease's
``epoch`` is still the instance's current epoch (fencing), and fails them with
:class:`LeaseLost` otherwise. Writes for one instance are applied in the order they were
called, so the engine may fire a write without awaiting it and await a later one.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias
from urllib.parse import urlparse

import attrs

from durableflow._types import StatusName, StepRef

from ._output import ChunkRow, LogRow, NewChunk, NewLog, StreamInfo
from .transitions import FINAL_STATUSES as FINAL_STATUSES
from .transitions import ControlAction as ControlAction

__all__ = [
    "ChunkRow",
    "Claimed",
    "ControlAction",
    "EventRow",
    "FlowLimits",
    "FlowUsage",
    "HookDelivery",
    "HookKind",
    "HookRow",
    "InstanceCount",
    "InstanceRef",
    "InstanceRow",
    "Lease",
    "LeaseLost",
    "LogRow",
    "NewChunk",
    "NewInstance",
    "NewLog",
    "ScheduleState",
    "StepRow",
    "StepStatus",
    "StepType",
    "Store",
    "StreamInfo",
    "child_event_type",
    "open_store",
]

FINISHED: tuple[str, ...] = ("complete", "errored", "terminated")

#: Instances :meth:`Store.prune_finished` deletes per transaction: small enough that a
#: batch never holds the writer (SQLite) or many row locks (PostgreSQL) for long.
PRUNE_BATCH = 200


class LeaseLost(BaseException):
    """The instance's epoch moved on (terminated, restarted or claimed elsewhere):
    the holder of the old lease must stop without writing anything more."""


@attrs.frozen
class Lease:
    """The right to run one instance, valid while ``epoch`` is current."""

    workflow: str
    id: str
    key: int
    epoch: int


StepType: TypeAlias = Literal["do", "sleep", "wait_for_event", "run_workflow", "start_workflow"]
#: A step's status: a ``do`` is running, retrying (waiting out a back-off), complete or
#: failed; a sleep or a wait is waiting, complete (woken, or the event arrived), failed
#: (a wait that timed out) or cancelled (abandoned by the code, as the loser of a race).
#: A ``run_workflow`` step waits like an event wait; a ``start_workflow`` step is complete
#: as it is recorded.
StepStatus: TypeAlias = Literal["running", "retrying", "waiting", "complete", "failed", "cancelled"]


@attrs.frozen
class NewInstance:
    """An instance to create."""

    workflow: str
    id: str
    params: bytes | None
    created_at: float
    #: the W3C ``traceparent`` of the request that created it (its first activation's parent)
    trace: str | None = None
    #: the key of the instance that started it (``step.run_workflow``/``start_workflow``)
    parent: int | None = None
    #: 0-100: among queued instances of one workflow, higher starts first
    priority: int = 0
    #: the key ``key_concurrency`` counts it under (flow control), if any
    concurrency_key: str | None = None
    #: the ``version`` of the workflow class that created it: it runs on that class only
    version: str | None = None


@attrs.define
class InstanceRow:
    """An instance as stored."""

    key: int
    workflow: str
    id: str
    status: StatusName
    params: bytes | None
    output: bytes | None
    error: dict[str, str] | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    run_at: float | None
    epoch: int
    generation: int
    pause_requested: bool
    trace: str | None = None
    #: while ``rollingBack``: the status it ends with (``errored`` or ``terminated``)
    rollback_to: str | None = None
    #: how many times ``run()`` was run again under the workflow's ``run_retries``
    run_retries: int = 0
    parent: int | None = None  # the key of the instance that started it, if one did
    priority: int = 0
    concurrency_key: str | None = None
    version: str | None = None


@attrs.frozen
class InstanceRef:
    """Another instance, as the detail names it: a parent or a child."""

    workflow: str
    id: str
    status: str


def child_event_type(workflow: str, id: str) -> str:
    """The type of the event a child's end leaves for its parent.

    It holds a ``:``, which no event type sent through the API may, so it never meets
    a user's ``wait_for_event``.
    """
    return f"child:{workflow}/{id}"


@attrs.define
class StepRow:
    """One step of an instance's history."""

    name: str
    count: int
    seq: int
    type: StepType
    status: StepStatus
    attempts: int = 0
    attempt_log: list[dict[str, Any]] = attrs.field(factory=list)
    output: bytes | None = None
    error: dict[str, str] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    wake_at: float | None = None
    config: dict[str, Any] | None = None
    host: str | None = None  # which host ran it (stores that know several hosts)


@attrs.frozen
class Claimed:
    """A claimed instance with what its activation needs: its row and its step history."""

    lease: Lease
    row: InstanceRow
    steps: list[StepRow]
    #: claimed ahead of its wake-up (``claim``'s ``due``): the ``run_at`` it had, before
    #: which nothing new of it may run
    not_before: float | None = None


@attrs.frozen
class InstanceCount:
    """How many instances of one workflow are in one status, and how many of those are due
    (their ``run_at`` has passed: runnable, not yet claimed)."""

    workflow: str
    status: str
    count: int
    due: int


@attrs.frozen
class FlowLimits:
    """The flow control of one workflow, enforced by :meth:`Store.claim` across hosts.

    Attributes:
        max_concurrency: At most this many of its instances executing (``running`` or
            ``waitingForPause``) at once.
        key_concurrency: At most this many executing per ``concurrency_key``.
        rate: ``(starts, period in seconds)``: at most ``starts`` first starts per period.
        label: The rate as configured (``"100/minute"``), for messages.
    """

    max_concurrency: int | None = None
    key_concurrency: int | None = None
    rate: tuple[int, float] | None = None
    label: str = ""


@attrs.frozen
class FlowUsage:
    """What one workflow's limits are measured against at one moment.

    Attributes:
        executing: Its instances executing now.
        executing_for_key: Of those, the ones with the asked ``concurrency_key``.
        started: Its first starts within the rate period before now.
        next_start_free: When the oldest of those starts leaves the period (or ``None``).
    """

    executing: int
    executing_for_key: int
    started: int
    next_start_free: float | None


@attrs.frozen
class ScheduleState:
    """What the store keeps of a schedule: shared by every host."""

    name: str
    paused: bool
    last_tick: float | None


@attrs.frozen
class EventRow:
    """An event sent to an instance."""

    seq: int
    type: str
    payload: bytes | None
    created_at: float
    #: ``"name#count"`` of the wait that took it (``load_events`` only; else ``None``)
    consumed_by: str | None = None


HookKind: TypeAlias = Literal["hook", "webhook"]


@attrs.frozen
class HookRow:
    """A token registered by an instance: a hook (a ``wait_for_event`` with a token) or
    a webhook (``step.create_webhook``), with what deciding about a delivery needs.

    Attributes:
        channel: The event type its payloads are stored under in the instance's events
            (``hook:<seq>`` / ``webhook:<token>``: no user event type has a colon).
        verify: A webhook's verifier, described without its secret, or ``None``.
        step_status: The status of the step that registered it (``None`` once gone).
        step_config: That step's config (a hook's ``payload_type`` reference).
    """

    token: str
    kind: HookKind
    workflow: str
    instance_id: str
    key: int
    instance_status: str
    step: str
    count: int
    channel: str
    verify: dict[str, Any] | None
    created_at: float
    consumed_at: float | None
    step_status: str | None
    step_config: dict[str, Any] | None

    def refusal(self) -> HookDelivery | None:
        """Why a payload cannot be delivered now (``None``: it can)."""
        if self.instance_status in FINAL_STATUSES or self.consumed_at is not None:
            return "gone"
        if self.kind == "hook" and self.step_status != "waiting":
            return "unknown"  # timed out, cancelled or restarted: as if never registered
        return None


#: What :meth:`Store.deliver_hook` did: ``delivered``; ``unknown`` (no such live token);
#: ``gone`` (known, but it takes nothing more: consumed, or its instance ended).
HookDelivery: TypeAlias = Literal["delivered", "unknown", "gone"]


class Store(abc.ABC):
    """Persistence for instances, their step histories and their events."""

    #: True when one host owns the whole store (SQLite): a ``running`` instance found at
    #: start-up was left by a crash and is resumed at once.
    single_host: bool = True
    #: Per workflow, the limits :meth:`claim` enforces (see :meth:`set_flow_limits`).
    flow_limits: dict[str, FlowLimits] = {}  # replaced by set_flow_limits, never mutated

    def set_flow_limits(self, limits: dict[str, FlowLimits]) -> None:
        """Enforce ``limits`` from the next claim on (workflows absent: unlimited)."""
        self.flow_limits = {
            name: flow
            for name, flow in limits.items()
            if flow.max_concurrency or flow.key_concurrency or flow.rate
        }

    #: The ``workflow/version`` keys (``_queries.runs_on``) of the instances this host
    #: has code for: claims and ``next_run_at`` see only those, so an instance whose
    #: version this host cannot run stays where it is for a host that can. ``None``: all.
    runnable: tuple[str, ...] | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and disconnect."""

    # --- instances -------------------------------------------------------------------
    @abc.abstractmethod
    async def create_instances(self, rows: Sequence[NewInstance]) -> None:
        """Create instances, runnable at once; all or none.

        Raises:
            InstanceExistsError: One of the ids is taken (naming it).
        """

    async def create_and_claim(self, rows: Sequence[NewInstance], now: float) -> list[Claimed]:
        """:meth:`create_instances`, and claim them for this host in the same statement
        when nothing else is due (no instance's ``run_at`` at or before ``now``), so that
        no queued instance is passed over; the claimed ones, or ``[]``. A store where a
        claim costs no round trip (SQLite) only creates them."""
        await self.create_instances(rows)
        return []

    @abc.abstractmethod
    async def get_instance(self, workflow: str, id: str) -> InstanceRow | None:
        """One instance, or ``None``."""

    @abc.abstractmethod
    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None,
        limit: int,
        cursor: int | None,
        id_prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        version: str | None = None,
    ) -> list[InstanceRow]:
        """Instances newest first, with ``key`` below ``cursor`` when one is given.

        ``id_prefix`` keeps the ids that start with it, taken literally (its ``%`` and
        ``_`` are no wildcards: see :func:`like_prefix`) and case-sensitively;
        ``created_after`` (inclusive) and ``created_before`` (exclusive) bound
        ``created_at``; ``version`` keeps the instances created at that version.
        """

    @abc.abstractmethod
    async def in_flight_by_version(self, workflow: str) -> dict[str | None, int]:
        """How many instances of ``workflow`` are not finished, per recorded version."""

    @abc.abstractmethod
    async def status_counts(self, workflow: str) -> dict[str, int]:
        """How many instances of ``workflow`` are in each status (statuses with none are
        left out)."""

    @abc.abstractmethod
    async def load_steps(self, key: int) -> list[StepRow]:
        """An instance's step history, in the order the steps first ran."""

    # --- scheduling ------------------------------------------------------------------
    @abc.abstractmethod
    async def recover(self, now: float) -> None:
        """At start-up: make instances a crash left ``running`` runnable again."""

    @abc.abstractmethod
    async def claim(self, now: float, limit: int, due: float | None = None) -> list[Lease]:
        """Take up to ``limit`` runnable instances, marking them running: those due at
        ``now``, then, up to ``due``, those waiting on a timer only (a sleep or back-off:
        no event wait) in order of ``run_at``. A workflow with flow limits is only claimed
        when due."""

    async def claim_work(self, now: float, limit: int, due: float | None = None) -> list[Claimed]:
        """``claim``, and load each claimed instance's row and history.

        Backends may override this to read everything in one round trip.
        """
        claimed = []
        for lease in await self.claim(now, limit, due):
            row = await self.get_instance(lease.workflow, lease.id)
            if row is not None and row.epoch == lease.epoch:
                claimed.append(Claimed(lease, row, await self.load_steps(lease.key)))
        return claimed

    async def claim_next(
        self, now: float, limit: int, due: float | None = None
    ) -> tuple[list[Claimed], float | None]:
        """``claim_work``, and ``next_run_at`` of what it left: the earliest ``run_at``
        that a claim at ``now`` did not take (``None``: none, or, when the claim took
        ``limit``, not read: there may be more to claim at once).

        Backends may override this to read both in one round trip.
        """
        claimed = await self.claim_work(now, limit, due)
        if len(claimed) >= limit:
            return claimed, None
        return claimed, await self._next_after(claimed, now)

    async def _next_after(self, claimed: list[Claimed], now: float) -> float | None:
        """``next_run_at`` after a claim that took ``claimed``: a store fault fails it
        only when nothing was claimed (what was claimed runs; the next claim meets it)."""
        try:
            return await self.next_run_at()
        except Exception:
            if not claimed:
                raise
            return now

    @abc.abstractmethod
    async def next_run_at(self) -> float | None:
        """The earliest ``run_at`` of any instance, or ``None``."""

    @abc.abstractmethod
    async def instance_counts(self, now: float) -> list[InstanceCount]:
        """How many instances each workflow has in each status, and how many are due.

        One grouped query (the metrics read it every few seconds).
        """

    @abc.abstractmethod
    async def flow_usage(
        self, workflow: str, concurrency_key: str | None, now: float, period: float
    ) -> FlowUsage:
        """How many of ``workflow``'s instances execute (with ``concurrency_key``) and
        how many started within ``period`` seconds before ``now``."""

    # --- schedules --------------------------------------------------------------------
    @abc.abstractmethod
    async def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule the store knows of, by name."""

    @abc.abstractmethod
    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> None:
        """Pause or resume a schedule; a resumed one catches up nothing before ``now``."""

    @abc.abstractmethod
    async def mark_schedule_tick(self, name: str, tick: float) -> None:
        """Record that the schedule's ticks up to ``tick`` are done (never moves back)."""

    # --- writes by a running instance (fenced by its lease) ---------------------------
    @abc.abstractmethod
    def put_step(self, lease: Lease, step: StepRow) -> asyncio.Future[None]:
        """Insert or replace one step of the history."""

    def put_step_nowait(self, lease: Lease, step: StepRow) -> None:
        """``put_step`` without waiting for it: its failure, if any, is not reported.

        The engine uses this to record that an attempt started; the attempt's outcome is
        written with ``put_step`` and awaited, and writes apply in call order.
        """
        future = self.put_step(lease, step)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    @abc.abstractmethod
    def take_event(
        self, lease: Lease, step: StepRow, type: str, now: float
    ) -> asyncio.Future[EventRow | None]:
        """Consume the oldest unconsumed event of ``type`` for the wait ``step``.

        When there is one, it is marked consumed and the step is stored complete with the
        event as its output, in one transaction; otherwise the step is stored as given.
        """

    @abc.abstractmethod
    async def pending_events(self, lease: Lease, types: Sequence[str]) -> dict[str, float]:
        """For each of ``types`` with an unconsumed event, the oldest one's ``created_at``."""

    @abc.abstractmethod
    async def oldest_events(self, lease: Lease, types: Sequence[str]) -> dict[str, EventRow]:
        """For each of ``types`` with an unconsumed event, the oldest one (with its payload).

        The engine reads the ends of many children at once this way, then consumes each
        with :meth:`take_event` without waiting for it.
        """

    @abc.abstractmethod
    def suspend(
        self, lease: Lease, run_at: float | None, wait_types: Sequence[str], now: float
    ) -> asyncio.Future[str]:
        """Drop the instance from memory until ``run_at`` (or an event of ``wait_types``).

        Becomes ``paused`` instead when a pause was asked. Returns the new status.
        """

    @abc.abstractmethod
    def begin_rollback(
        self, lease: Lease, error: dict[str, str], rollback_to: str
    ) -> asyncio.Future[None]:
        """Mark the instance ``rollingBack`` with ``error`` (what failed it), to end as
        ``rollback_to`` once its rollbacks ran; the lease stays held."""

    @abc.abstractmethod
    def suspend_rollback(self, lease: Lease, run_at: float) -> asyncio.Future[None]:
        """Drop a ``rollingBack`` instance from memory until ``run_at`` (a rollback's
        retry back-off); it stays ``rollingBack`` and the lease ends."""

    @abc.abstractmethod
    def retry_run(
        self, lease: Lease, run_at: float, error: dict[str, str], dropped: Sequence[StepRow]
    ) -> asyncio.Future[None]:
        """Run the instance again at ``run_at`` (the workflow's ``run_retries``): the
        ``dropped`` steps (those that failed) leave the history, ``run_retries`` counts
        one more, ``error`` is kept as the last one; the lease ends."""

    @abc.abstractmethod
    def finish(
        self,
        lease: Lease,
        status: str,
        output: bytes | None,
        error: dict[str, str] | None,
        now: float,
        *,
        parent: int | None = None,
    ) -> asyncio.Future[None]:
        """End the instance: ``complete``, ``errored`` or (after a rollback) ``terminated``.

        With ``parent`` (the instance's ``parent`` key), the same transaction leaves the
        parent the event of the child's end (:func:`child_event_type`, payload
        ``{"status", "output", "error"}``) and wakes it if it waits for that event.
        """

    @abc.abstractmethod
    def start_child(
        self, lease: Lease, step: StepRow, child: NewInstance
    ) -> asyncio.Future[Literal["created", "adopted", "taken"]]:
        """Create ``child`` (whose ``parent`` is the lease's instance) and store ``step``,
        in one transaction fenced by ``lease``.

        Returns:
            ``created``; ``adopted`` when an instance with the child's id exists and is
            already this instance's child (a restart runs the parent again): the step is
            stored, and an ended child's end event is left again unless one is pending;
            ``taken`` when the id belongs to another instance: nothing is stored.
        """

    @abc.abstractmethod
    async def terminate(
        self, workflow: str, id: str, now: float, *, cascade: bool = False
    ) -> list[InstanceRow]:
        """Terminate an instance (the ``terminate`` of :meth:`control`) and, with
        ``cascade``, in the same transaction its descendants (children, their children...)
        that have not ended. Each terminated instance that is a child leaves its parent the
        event of its end, as :meth:`finish` does.

        Returns:
            The rows afterwards: the instance first, then the descendants terminated.

        Raises:
            NotFoundError: No such instance.
            InvalidTransitionError: The instance has ended.
        """

    @abc.abstractmethod
    async def relatives(self, row: InstanceRow) -> tuple[InstanceRef | None, list[InstanceRef]]:
        """The instance's parent (``None`` without one, or when it was deleted) and its
        children, oldest first."""

    # --- streams and logs (see ._output) -----------------------------------------------
    @abc.abstractmethod
    def append_chunk(self, lease: Lease, chunk: NewChunk) -> asyncio.Future[int]:
        """Append a chunk to one of the instance's streams; its index.

        Raises (through the future):
            LeaseLost: The lease is no longer current.
        """

    @abc.abstractmethod
    def append_log(self, lease: Lease, entry: NewLog) -> asyncio.Future[None]:
        """Append a log entry; one whose ``run_key`` is stored already is ignored."""

    @abc.abstractmethod
    async def read_chunks(self, key: int, stream: str, start: int, limit: int) -> list[ChunkRow]:
        """Up to ``limit`` chunks of a stream from index ``start`` on, in order."""

    @abc.abstractmethod
    async def read_logs(self, key: int, after: int, limit: int) -> list[LogRow]:
        """Up to ``limit`` log entries with ``seq`` above ``after``, in order."""

    @abc.abstractmethod
    async def list_streams(self, key: int) -> list[StreamInfo]:
        """The instance's streams, by name, with their sizes."""

    # --- control ----------------------------------------------------------------------
    @abc.abstractmethod
    async def control(
        self, workflow: str, id: str, action: ControlAction, now: float
    ) -> InstanceRow:
        """Pause, resume, terminate or restart; returns the row afterwards.

        Raises:
            NotFoundError: No such instance.
            InvalidTransitionError: The instance's state does not allow it.
        """

    @abc.abstractmethod
    async def restart_from(self, workflow: str, id: str, step: StepRef, now: float) -> InstanceRow:
        """Restart from a step of the history: that step and every step started after it
        are dropped with the events they consumed; the rest of the history and pending
        events stay. Returns the row afterwards.

        Raises:
            NotFoundError: No such instance.
            ValidationError: No such step in its history.
        """

    @abc.abstractmethod
    async def delete_instance(self, workflow: str, id: str, now: float | None = None) -> bool:
        """Delete an instance, in any status, with every row stored for it (see
        ``transitions.INSTANCE_TABLES``); a running activation loses its lease.

        With ``now``, a child that had not ended leaves its parent the end of a terminated
        child in the same transaction (as :meth:`terminate` does), so a parent waiting for
        it goes on.

        Returns:
            Whether there was such an instance.
        """

    @abc.abstractmethod
    async def load_events(self, key: int) -> list[EventRow]:
        """Every event stored for an instance, consumed or not, oldest first."""

    @abc.abstractmethod
    async def send_event(
        self, workflow: str, id: str, type: str, payload: bytes | None, now: float
    ) -> None:
        """Store an event and wake the instance if it waits for that type.

        Raises:
            NotFoundError: No such instance.
            InvalidTransitionError: The instance has ended.
        """

    # --- hooks and webhooks ------------------------------------------------------------
    @abc.abstractmethod
    def register_hook(
        self, lease: Lease, hook: HookRow, step: StepRow | None
    ) -> asyncio.Future[bool]:
        """Register ``hook.token`` for the running instance, and write ``step`` with it.

        A token is unique among live registrations of the whole store; a registration
        that is no longer live (its wait ended, its payload came, its instance ended) is
        dropped to make room. Returns ``False``, writing nothing, when a live one holds it.
        """

    @abc.abstractmethod
    async def find_hook(self, token: str) -> HookRow | None:
        """The registration of ``token``, live or not, or ``None``."""

    @abc.abstractmethod
    async def deliver_hook(
        self, token: str, kind: HookKind, payload: bytes | None, now: float
    ) -> tuple[HookDelivery, HookRow | None]:
        """Store ``payload`` for the live registration of ``token`` (of ``kind``) and wake
        its instance, all in one transaction; a registration takes one payload."""

    @abc.abstractmethod
    async def waiting_configs(self, workflow: str, id: str) -> list[dict[str, Any]]:
        """The configs of the instance's ``wait_for_event`` steps that wait, oldest first."""

    # --- retention ----------------------------------------------------------------------
    @abc.abstractmethod
    async def delete_finished(
        self,
        ended_before: float,
        *,
        statuses: Sequence[str] = FINISHED,
        workflow: str | None = None,
        limit: int = PRUNE_BATCH,
    ) -> int:
        """Delete up to ``limit`` finished instances in one transaction, oldest end first.

        An instance goes when its status is one of ``statuses`` (all finished ones), it
        ended before ``ended_before`` and, with ``workflow``, it is of that workflow; its
        steps, events, stream chunks and log entries go with it. Hosts sharing a store may call this at the same time:
        each instance is deleted once and none waits on another's batch.

        Returns:
            How many instances were deleted.
        """

    async def prune_finished(
        self,
        ended_before: float,
        *,
        statuses: Sequence[str] = FINISHED,
        workflow: str | None = None,
        batch: int = PRUNE_BATCH,
        pause: float = 0.01,
    ) -> int:
        """:meth:`delete_finished` batch after batch until nothing is left to delete.

        Between batches the event loop gets ``pause`` seconds for the writes of running
        instances, so a large prune never holds them up for more than one small batch.

        Returns:
            How many instances were deleted in all.

        Raises:
            ValidationError: A status that is not a finished one.
        """
        from durableflow import ValidationError

        wrong = sorted(set(statuses) - FINAL_STATUSES)
        if wrong or not statuses:
            raise ValidationError(
                f"only finished instances can be pruned: status must be one of "
                f"{', '.join(sorted(FINAL_STATUSES))}, not {', '.join(map(repr, wrong)) or 'none'}"
            )
        total = 0
        while True:
            deleted = await self.delete_finished(
                ended_before, statuses=statuses, workflow=workflow, limit=batch
            )
            total += deleted
            if deleted < batch:
                return total
            await asyncio.sleep(pause)

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:  # noqa: B027
        """Be told ``(workflow, id, what)`` when another host changes an instance.

        Single-host stores have no other hosts and ignore this.
        """


def open_store(url: str, **options: Any) -> Store:
    """The store for a URL: ``sqlite:///path`` or ``postgresql://...``.

    Raises:
        ValidationError: An unknown scheme.
    """
    from durableflow import ValidationError

    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore.from_url(url, **options)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore.from_url(url, **options)
    raise ValidationError(
        f"unsupported storage url {redact_url(url)!r}: expected sqlite:///path/to/state.db "
        "or postgresql://user@host/database"
    )


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by ``***`` (for messages and logs)."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()
