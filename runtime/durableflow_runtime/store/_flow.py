"""Flow control, written once for both stores: what a claim of a limited workflow may take.

A workflow with :class:`~.base.FlowLimits` is claimed apart from the others, in one
transaction per workflow: the store measures what runs now (:meth:`FlowPlan.measure`'s
three counts), reads the due candidates that could still fit (highest priority first),
and :meth:`FlowPlan.pick` takes them one by one while every limit holds. On PostgreSQL
that transaction first takes an advisory lock named after the workflow, so two hosts
measure and claim one after the other and never exceed a limit together; SQLite's single
writer already runs every claim alone.

Priority costs nothing on the hot path: a queued instance's ``run_at`` is its creation
time moved back by :data:`PRIORITY_STEP` per priority point (:func:`queued_run_at`), so the
claim's ``ORDER BY run_at`` already takes higher priorities first, FIFO within one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .base import FlowLimits, FlowUsage

if TYPE_CHECKING:
    from ._queries import Queries
    from .transitions import Statement

__all__ = [
    "EXECUTING",
    "LONGEST_PERIOD",
    "PRIORITY_STEP",
    "Blocked",
    "FlowPlan",
    "queued_run_at",
    "rate_reason",
    "why_blocked",
]

#: How far back one priority point moves a queued instance's ``run_at`` (ten years):
#: more than any queue's age, so priority always wins over arrival order.
PRIORITY_STEP = 10 * 365 * 86400.0

#: The condition on an instance that is executing (it holds a concurrency slot): running,
#: pausing, or running its rollbacks (a rolling-back instance waiting out a back-off has
#: a ``run_at``, and holds none).
EXECUTING = (
    "(status IN ('running', 'waitingForPause') OR (status = 'rollingBack' AND run_at IS NULL))"
)

#: The longest period a ``rate_limit`` counts starts over (``/hour``): a store drops
#: older ``flow_starts`` rows when it opens (a workflow's own claims drop the rows past
#: its period as they go).
LONGEST_PERIOD = 3600.0

#: Seconds before a claim looks again at a workflow a concurrency limit blocked (an
#: instance that ends on this host wakes its claim loop at once; this bounds the wait
#: for one ending on another host).
CONCURRENCY_RECHECK = 0.5


def queued_run_at(created_at: float, priority: int) -> float:
    """The ``run_at`` of a new instance: due at once, ordered by priority then age."""
    return created_at - priority * PRIORITY_STEP


def rate_reason(flow: FlowLimits) -> str:
    """What the detail's ``blocked`` says of an instance the rate limit holds back."""
    return f"rate limit {flow.label} reached" if flow.label else "rate limit reached"


def why_blocked(
    flow: FlowLimits, usage: FlowUsage, concurrency_key: str | None, fresh: bool
) -> str | None:
    """Why a due instance of a limited workflow is not running, or ``None``."""
    if flow.max_concurrency is not None and usage.executing >= flow.max_concurrency:
        return f"concurrency limit {flow.max_concurrency} reached"
    if (
        flow.key_concurrency is not None
        and concurrency_key is not None
        and usage.executing_for_key >= flow.key_concurrency
    ):
        return f"concurrency limit {flow.key_concurrency} reached for key {concurrency_key!r}"
    if fresh and flow.rate is not None and usage.started >= flow.rate[0]:
        return rate_reason(flow)
    return None


@attrs.define
class FlowPlan:
    """One claim of one limited workflow: what runs now, and what may start.

    Build it with :meth:`measure` from the rows of the three queries of
    ``Queries.flow_*``; read :meth:`candidates_filter` to query the due instances; take
    them with :meth:`pick`; :attr:`blocked_until` then says when to look again.
    """

    flow: FlowLimits
    now: float
    executing: int
    by_key: dict[str, int]
    started: int
    oldest_start: float | None
    #: after :meth:`pick`: when a due instance left behind could fit (``None``: none left)
    blocked_until: float | None = None
    #: after :meth:`pick`: how many of the instances taken start for the first time (a
    #: rate-limited claim records them in ``flow_starts`` and drops the rows that left
    #: the period; the count reads only the period's, so rows left over do no harm)
    new_starts: int = 0

    @classmethod
    def measure(
        cls,
        flow: FlowLimits,
        now: float,
        executing: Any,
        by_key: Iterable[Sequence[Any]],
        started: Sequence[Any] | None,
    ) -> FlowPlan:
        """A plan from the counts: executing, executing per key, ``(starts, oldest)``."""
        count, oldest = (started[0], started[1]) if started is not None else (0, None)
        return cls(
            flow=flow,
            now=now,
            executing=int(executing or 0),
            by_key={str(r[0]): int(r[1]) for r in by_key},
            started=int(count or 0),
            oldest_start=float(oldest) if oldest is not None else None,
        )

    @property
    def room(self) -> int | None:
        """How many more may execute (``None``: no workflow-wide limit)."""
        if self.flow.max_concurrency is None:
            return None
        return max(self.flow.max_concurrency - self.executing, 0)

    def candidates_filter(self) -> tuple[bool, list[str]]:
        """``(fresh_ok, saturated_keys)``: whether never-started instances may start (the
        rate allows one more), and the concurrency keys that are full."""
        fresh_ok = self.flow.rate is None or self.started < self.flow.rate[0]
        kc = self.flow.key_concurrency
        saturated = [k for k, n in self.by_key.items() if kc is not None and n >= kc]
        return fresh_ok, saturated

    def candidates(
        self, queries: Queries, workflow: str, room: int, runnable: Sequence[str] | None
    ) -> Statement:
        """The query of the due instances that could fit, for a host with ``room`` free
        (a few more than could start, so a full key does not hide the others; some even
        when none can start, to tell whether any wait), among those whose version it has
        code for (``runnable``: ``Store.runnable``)."""
        want = room if self.room is None else min(room, self.room)
        fresh_ok, saturated = self.candidates_filter()
        return queries.flow_candidates(
            workflow, self.now, fresh_ok, saturated, want * 4 + 16, runnable
        )

    def pick(self, candidates: Sequence[Sequence[Any]], room: int) -> list[int]:
        """The keys to claim among ``(key, fresh, concurrency_key)`` candidates (in claim
        order), at most ``room``; sets :attr:`blocked_until`."""
        flow = self.flow
        taken: list[int] = []
        left_behind = False
        rate_blocked = not self.candidates_filter()[0]
        for key, fresh, ckey in candidates:
            if flow.max_concurrency is not None and self.executing >= flow.max_concurrency:
                left_behind = True
                break
            if len(taken) >= room:
                break  # this host is full: not a limit, another claim takes the rest
            if fresh and flow.rate is not None and self.started >= flow.rate[0]:
                left_behind = rate_blocked = True
                continue
            kc = flow.key_concurrency
            if kc is not None and ckey is not None and self.by_key.get(ckey, 0) >= kc:
                left_behind = True
                continue
            taken.append(int(key))
            self.executing += 1
            if fresh:
                self.started += 1
                self.new_starts += 1
                if self.oldest_start is None:
                    self.oldest_start = self.now
            if ckey is not None:
                self.by_key[ckey] = self.by_key.get(ckey, 0) + 1
        if rate_blocked and self.flow.rate is not None:
            left_behind = True
        self.blocked_until = self._recheck_at() if left_behind else None
        return taken

    def _recheck_at(self) -> float:
        """When a due instance left behind may fit: a concurrency slot may free any time
        (rechecked shortly), a rate slot when the oldest start leaves the period."""
        at = self.now + CONCURRENCY_RECHECK
        rate = self.flow.rate
        if rate is not None and self.started >= rate[0] and self.oldest_start is not None:
            concurrency_full = (
                self.flow.max_concurrency is not None
                and self.executing >= self.flow.max_concurrency
            )
            if not concurrency_full:
                at = max(self.oldest_start + rate[1], self.now + 0.01)
        return at


class Blocked:
    """The limited workflows whose due instances the last claims left behind, and when
    to look at each again: ``next_run_at`` skips their due instances until then, so the
    claim loop sleeps instead of spinning on them."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}
        #: the time of the claim that last left something behind
        self.at = 0.0

    def note(self, workflow: str, until: float | None, now: float) -> None:
        """Record one claim's outcome for ``workflow``."""
        if until is None:
            self.until.pop(workflow, None)
        else:
            self.until[workflow] = until
            self.at = now

    def earliest(self, found: float | None) -> float | None:
        """``found`` (the next ``run_at`` outside blocked workflows) or the earliest time
        to look at a blocked one again, whichever comes first."""
        times = [*self.until.values(), *([found] if found is not None else [])]
        return min(times) if times else None
