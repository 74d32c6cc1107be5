"""The batch planner: the writer's queued writes cut into rounds that keep each instance's
writes in call order while different instances' writes share one statement per kind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .._rows import StepValues
from ..base import Lease, LeaseLost

__all__ = ["NO_LEASE", "Op", "Round", "lost", "plan"]


class Op:
    """One queued fenced write."""

    __slots__ = ("args", "fn", "future", "kind", "lease", "parent", "releases", "step")

    def __init__(
        self,
        kind: str,
        lease: Lease,
        future: asyncio.Future[Any],
        *,
        step: StepValues | None = None,
        args: tuple[Any, ...] = (),
        fn: Callable[[Any], Awaitable[Any]] | None = None,
        releases: bool = False,
        parent: tuple[int, str] | None = None,
    ) -> None:
        self.kind = kind  # "step" | "finish" | "suspend" | "chunk" | "log" | "call"
        self.lease = lease
        self.future = future
        self.step = step
        self.args = args
        self.fn = fn
        self.releases = releases  # a success ends the lease (suspend, finish)
        # a finish of a child: its parent's key and the payload of the event of its end
        self.parent = parent


def lost(lease: Lease, why: str = "") -> LeaseLost:
    suffix = f": {why}" if why else ""
    return LeaseLost(f"{lease.workflow}/{lease.id} (epoch {lease.epoch}){suffix}")


# The lease of writer operations that belong to no instance (lease renewal).
NO_LEASE = Lease("", "", -1, 0)


class Round:
    """Writes of different instances applied together: one statement per kind."""

    __slots__ = ("calls", "chunks", "finishes", "logs", "steps", "suspends")

    def __init__(self) -> None:
        self.steps: list[Op] = []
        self.finishes: list[Op] = []
        self.suspends: list[Op] = []
        # at most one of each instance per round (only step writes share a segment), so a
        # chunk's index can be computed per row of one statement
        self.chunks: list[Op] = []
        self.logs: list[Op] = []
        self.calls: list[Op] = []

    def statements(self) -> int:
        """How many statements the round takes; a call takes several."""
        grouped = (
            bool(self.steps)
            + bool(self.finishes)
            + bool(self.suspends)
            + bool(self.chunks)
            + bool(self.logs)
        )
        # the ends of children are told to their parents: lock, insert, wake
        told = 3 * any(op.parent is not None for op in self.finishes)
        return grouped + told + 2 * len(self.calls)


def plan(batch: list[Op]) -> list[Round]:
    """Order a batch into rounds that keep each instance's writes in call order.

    Each instance's writes are cut into segments, in call order: a run of step writes of
    one lease is one segment, anything else is a segment of its own. Round ``r`` holds the
    ``r``-th segment of every instance, so one instance's writes keep their order and
    different instances' writes share statements.
    """
    segments: dict[int, list[list[Op]]] = {}
    for op in batch:
        segs = segments.setdefault(op.lease.key, [])
        last = segs[-1] if segs else None
        if (
            last is not None
            and op.kind == "step"
            and last[0].kind == "step"
            and last[0].lease.epoch == op.lease.epoch
        ):
            last.append(op)
        else:
            segs.append([op])
    rounds = [Round() for _ in range(max(len(s) for s in segments.values()))]
    for segs in segments.values():
        for round, seg in zip(rounds, segs, strict=False):
            kind = seg[0].kind
            if kind == "step":
                round.steps.extend(seg)
            elif kind == "finish":
                round.finishes.extend(seg)
            elif kind == "suspend":
                round.suspends.extend(seg)
            elif kind == "chunk":
                round.chunks.extend(seg)
            elif kind == "log":
                round.logs.extend(seg)
            else:
                round.calls.extend(seg)
    return rounds
