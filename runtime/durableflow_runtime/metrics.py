"""What the host tells an operator: the engine's observation hooks and ``GET /metrics``.

The engine calls a few hooks on ``engine.observer`` (each call site is marked
``# observe:``): a claim, an activation, a step attempt, a commit. The default observer,
:data:`NO_OBSERVER`, does nothing, so an engine that nobody watches pays one method call
per hook. The host installs :class:`Metrics` (always) and the OpenTelemetry observer of
:mod:`.tracing` (with ``[server] tracing = "otel"``), fanned out by :class:`Observers`.

:class:`Metrics` keeps its own ``prometheus_client`` registry (never the global one, so
two hosts in one process do not mix), fed by those hooks and by the engine's change
listener (created and finished instances). The instance gauges come from one grouped
``COUNT`` query of the store, run at most once every :attr:`Metrics.cache_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from durableflow import __version__

from .store.base import FINISHED, Claimed, StepRow, Store

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "DEFAULT_STEP_NAME_LIMIT",
    "METRICS_PATH",
    "NO_OBSERVER",
    "Metrics",
    "Observer",
    "Observers",
    "add_metrics_route",
]

log = logging.getLogger("durableflow.host")

METRICS_PATH = "/metrics"
#: Distinct step names per workflow that get their own label; the rest fold into "other".
DEFAULT_STEP_NAME_LIMIT = 100
OTHER = "other"

# seconds: from a fast local step to a slow remote call
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_LATENESS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Observer:
    """The engine's observation hooks; this base class does nothing (tracing and metrics
    off). Subclasses override what they watch."""

    def claim_started(self) -> float:
        """Before a claim; returns what :meth:`claimed` gets back as ``started``."""
        return 0.0

    def claimed(self, started: float, claimed: Sequence[Claimed], now: float) -> None:
        """After a claim made at clock time ``now`` took ``claimed``."""

    def timer_fired(self, workflow: str, late: float) -> None:
        """A timer an activation held in memory for (``_Activation.hold``) fired ``late``
        seconds after its wake-up time."""

    def commit(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        """A write the engine is about to await; returns it (possibly watched)."""
        return future

    def activation_started(self, workflow: str, id: str, work: Claimed) -> Any:
        """An activation begins (in its own task, before ``run()``); a token for the end."""
        return None

    def activation_ended(self, token: Any) -> None:
        """The activation whose :meth:`activation_started` returned ``token`` is over."""

    def step_started(self, workflow: str, id: str, step: StepRow) -> Any:
        """An attempt of ``step`` begins (``step.attempts`` is its number); a token."""
        return None

    def step_ended(self, workflow: str, id: str, step: StepRow, token: Any) -> None:
        """The attempt is over; ``step.status`` says how (``running``: cut off)."""

    def close(self) -> None:
        """The host stops: flush what is buffered."""


#: The observer of an engine nobody watches.
NO_OBSERVER = Observer()


class Observers(Observer):
    """Several observers, called in order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def claim_started(self) -> float:
        return time.perf_counter()

    def claimed(self, started: float, claimed: Sequence[Claimed], now: float) -> None:
        for o in self.observers:
            o.claimed(started, claimed, now)

    def timer_fired(self, workflow: str, late: float) -> None:
        for o in self.observers:
            o.timer_fired(workflow, late)

    def commit(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        for o in self.observers:
            future = o.commit(future)
        return future

    def activation_started(self, workflow: str, id: str, work: Claimed) -> Any:
        return [o.activation_started(workflow, id, work) for o in self.observers]

    def activation_ended(self, token: Any) -> None:
        for o, t in zip(reversed(self.observers), reversed(token), strict=True):
            o.activation_ended(t)

    def step_started(self, workflow: str, id: str, step: StepRow) -> Any:
        return [o.step_started(workflow, id, step) for o in self.observers]

    def step_ended(self, workflow: str, id: str, step: StepRow, token: Any) -> None:
        for o, t in zip(reversed(self.observers), reversed(token), strict=True):
            o.step_ended(workflow, id, step, t)

    def close(self) -> None:
        for o in self.observers:
            o.close()


class _StoreStats(Collector):
    """Counters a store keeps itself (PostgreSQL: lease renewals and losses)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[CounterMetricFamily]:
        stats: dict[str, int] | None = getattr(self.store, "stats", None)
        if not stats:
            return
        for key, name, doc in (
            ("lease_renewals", "durableflow_lease_renewals", "Leases this host renewed."),
            (
                "leases_lost",
                "durableflow_leases_lost",
                "Leases this host lost (another host took the instance over).",
            ),
        ):
            if key in stats:
                yield CounterMetricFamily(name, doc, value=stats[key])


class Metrics(Observer):
    """The host's Prometheus metrics (see docs/operations.md for each one).

    Args:
        engine: The engine to watch (its store, clock and change notifications).
        step_name_limit: Distinct step names per workflow with a label of their own; later
            names are counted under ``other``.
        cache_seconds: How long one read of the instance counts is served.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        step_name_limit: int = DEFAULT_STEP_NAME_LIMIT,
        cache_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.step_name_limit = step_name_limit
        self.cache_seconds = cache_seconds
        self._step_names: dict[str, set[str]] = {}
        self._step_children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}
        self._read_at = -float("inf")
        self._reading: asyncio.Lock | None = None
        r = self.registry = CollectorRegistry()
        wf, step = ["workflow"], ["workflow", "step"]
        self.instances = Gauge(
            "durableflow_instances", "Instances by workflow and status.", ["workflow", "status"],
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "durableflow_queue_depth",
            "Instances that are due (their run time has passed) and not yet running.",
            wf,
            registry=r,
        )
        self.created_total = Counter(
            "durableflow_instances_created",
            "Instances queued by a create or a restart on this host.",
            wf,
            registry=r,
        )
        self.finished_total = Counter(
            "durableflow_instances_finished",
            "Instances that ended on this host, by final status.",
            ["workflow", "status"],
            registry=r,
        )
        self.activations = Counter(
            "durableflow_activations", "Activations (replays of run()) started.", wf, registry=r
        )
        self.attempts = Counter(
            "durableflow_step_attempts", "Step attempts that ended.", step, registry=r
        )
        self.failures = Counter(
            "durableflow_step_failures", "Step attempts that raised (retried or not).", step,
            registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "durableflow_step_retries", "Failed step attempts that will be retried.", step,
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "durableflow_step_duration_seconds",
            "How long a step attempt took (callback and its commit).",
            step,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.lateness = Histogram(
            "durableflow_wakeup_lateness_seconds",
            "How late a timer (sleep, retry back-off, event timeout) was acted on after its "
            "wake-up time: the instance claimed then, or its activation, held in memory "
            "ahead of it, resumed.",
            wf,
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.claim_seconds = Histogram(
            "durableflow_claim_seconds",
            "How long one claim of due instances took (with their histories), or a create "
            "that claimed its instances.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "durableflow_commit_seconds",
            "How long a step result or an instance's end took to be committed.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        info = Info("durableflow_build", "The host's version.", registry=r)
        info.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "store": type(engine.store).__name__,
            }
        )
        r.register(_StoreStats(engine.store))
        engine.add_listener(self._changed)

    # --- the engine's hooks -------------------------------------------------------------
    def claim_started(self) -> float:
        return time.perf_counter()

    def claimed(self, started: float, claimed: Sequence[Claimed], now: float) -> None:
        self.claim_seconds.observe(time.perf_counter() - started)
        for work in claimed:
            # the earliest passed timer is what the instance was due for
            due = min(
                (
                    s.wake_at
                    for s in work.steps
                    if s.wake_at is not None
                    and s.wake_at <= now
                    and s.status in ("waiting", "retrying")
                ),
                default=None,
            )
            if due is not None:
                self.lateness.labels(work.lease.workflow).observe(now - due)

    def timer_fired(self, workflow: str, late: float) -> None:
        self.lateness.labels(workflow).observe(max(late, 0.0))

    def commit(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        started = time.perf_counter()
        observe = self.commit_seconds.observe
        future.add_done_callback(lambda _f: observe(time.perf_counter() - started))
        return future

    def activation_started(self, workflow: str, id: str, work: Claimed) -> Any:
        self.activations.labels(workflow).inc()
        return None

    def step_ended(self, workflow: str, id: str, step: StepRow, token: Any) -> None:
        status = step.status
        if status == "running":
            return  # cut off (suspension, shutdown, a lost lease): it runs again
        children = self._step_children.get((workflow, step.name))
        if children is None:
            children = self._children(workflow, step.name)
        attempts, failures, retries, duration = children
        attempts.inc()
        if status != "complete":
            failures.inc()
            if status == "retrying":
                retries.inc()
        entry = step.attempt_log[-1] if step.attempt_log else None
        if entry is not None and entry.get("ended_at") is not None:
            duration.observe(entry["ended_at"] - entry["started_at"])

    def _children(self, workflow: str, step: str) -> tuple[Any, Any, Any, Any]:
        """The labelled metrics of one step name (looked up once: ``labels()`` is not free)."""
        name = self.step_label(workflow, step)
        # the names folded into "other" are unbounded: cached once, under "other"
        key = (workflow, step) if name != OTHER else (workflow, "\0other")
        children = self._step_children.get(key)
        if children is None:
            children = self._step_children[key] = (
                self.attempts.labels(workflow, name),
                self.failures.labels(workflow, name),
                self.retries.labels(workflow, name),
                self.duration.labels(workflow, name),
            )
        return children

    def step_label(self, workflow: str, name: str) -> str:
        """``name``, or ``other`` once the workflow has ``step_name_limit`` other names."""
        names = self._step_names.setdefault(workflow, set())
        if name in names:
            return name
        if len(names) >= self.step_name_limit:
            return OTHER
        names.add(name)
        return name

    def _changed(self, workflow: str, id: str, status: str | None) -> None:
        if status == "queued":
            self.created_total.labels(workflow).inc()
        elif status in FINISHED:
            self.finished_total.labels(workflow, status).inc()

    # --- the scrape ---------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the instance counts from the store, unless the last read is recent."""
        if time.monotonic() - self._read_at < self.cache_seconds:
            return
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:  # concurrent scrapes share one query
            if time.monotonic() - self._read_at < self.cache_seconds:
                return
            engine = self.engine
            counts = await engine.costly.get(
                "instance_counts", lambda: engine.store.instance_counts(engine.clock.now())
            )
            self.instances.clear()
            self.queue_depth.clear()
            due: dict[str, int] = dict.fromkeys(self.engine.workflows, 0)
            for c in counts:
                self.instances.labels(c.workflow, c.status).set(c.count)
                due[c.workflow] = due.get(c.workflow, 0) + c.due
            for workflow, n in due.items():
                self.queue_depth.labels(workflow).set(n)
            self._read_at = time.monotonic()

    async def scrape(self) -> bytes:
        """The metrics in Prometheus' text format."""
        await self.refresh()
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``."""
        body = await self.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_of(observer: Observer) -> Metrics | None:
    """The :class:`Metrics` among an engine's observers, if any."""
    if isinstance(observer, Metrics):
        return observer
    if isinstance(observer, Observers):
        return next((o for o in observer.observers if isinstance(o, Metrics)), None)
    return None


def add_metrics_route(app: web.Application, engine: Engine) -> None:
    """Serve ``GET /metrics`` on ``app`` when the engine has metrics."""
    metrics = metrics_of(engine.observer)
    if metrics is None:
        return
    if any(r.canonical == METRICS_PATH for r in app.router.resources()):
        # the user's app factory serves its own /metrics: theirs wins, ours is not served
        log.warning(
            "the app already has a route on %s: the host's metrics are not served", METRICS_PATH
        )
        return
    route = app.router.add_route("GET", METRICS_PATH, metrics.handle)
    route.resource.add_route("HEAD", metrics.handle)  # type: ignore[union-attr]


def build_observer(
    engine: Engine, *, step_name_limit: int = DEFAULT_STEP_NAME_LIMIT, tracing: str = "off"
) -> Observer:
    """The host's observer: metrics, and OpenTelemetry spans with ``tracing="otel"``."""
    metrics = Metrics(engine, step_name_limit=step_name_limit)
    if tracing != "otel":
        return metrics
    from .tracing import Tracing  # the otel extra: imported only when asked for

    return Observers([metrics, Tracing(engine)])
