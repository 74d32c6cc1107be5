"""OpenTelemetry spans for the engine (``[server] tracing = "otel"``, extra ``durableflow[otel]``).

One span per activation (a replay of ``run()``, from its claim to its suspension or end)
and, inside it, one span per step attempt. User code in a step callback runs with the
attempt's span current, so its own instrumented calls (HTTP clients, databases) are its
children.

* **Across replays:** each activation's span links to the span of the previous activation
  that ran a step attempt. The link is kept where it costs nothing extra: the step's stored
  config (``config["trace"]``, a W3C ``traceparent`` string), written with the attempt's
  result anyway.
* **From the create request:** a ``traceparent`` header on ``POST .../instances`` (or the
  batch) makes the instance's first activation a child of the caller's span. The header
  is stored with the instance (column ``trace``), so this holds whichever host runs the
  first activation, and after a restart.
* **Exporter:** a ``TracerProvider`` the user installed (``opentelemetry-instrument``,
  their own ``trace.set_tracer_provider``) is used as is; otherwise the host builds one from
  the standard environment: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and
  ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, needs ``opentelemetry-exporter-otlp``;
  ``console`` prints each span as JSON on stdout; ``none``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from durableflow import __version__

from .metrics import Observer
from .store.base import Claimed, StepRow

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Tracing", "provider_from_env"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: The key of a step's stored config that holds its activation's ``traceparent``.
TRACE_KEY = "trace"
_OUTCOMES = {"complete": "complete", "retrying": "retry", "failed": "failed"}


def provider_from_env() -> trace.TracerProvider:
    """The user's tracer provider if they installed one, else one built from ``OTEL_*``.

    Raises:
        RuntimeError: ``OTEL_TRACES_EXPORTER`` names an exporter that is not installed.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip()
        exporter: SpanExporter
        if name == "none" or not name:
            continue
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            continue
        if name != "otlp":
            raise RuntimeError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}")
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise RuntimeError(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http "
                "(pip install opentelemetry-exporter-otlp), or set it to console or none"
            ) from None
        exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _traceparent(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _span_context(traceparent: str) -> trace.SpanContext | None:
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


class Tracing(Observer):
    """Spans for activations and step attempts.

    Args:
        engine: The engine to watch (its change notifications give each activation's
            outcome).
        provider: Where spans go (default: :func:`provider_from_env`).
    """

    def __init__(self, engine: Engine, provider: trace.TracerProvider | None = None) -> None:
        self.provider = provider or provider_from_env()
        self.tracer = self.provider.get_tracer("durableflow", __version__)
        self._open: dict[tuple[str, str], Span] = {}
        #: Each open activation's traceparent, written into its steps' configs.
        self._parents: dict[tuple[str, str], str] = {}
        engine.add_listener(self._changed)

    def activation_started(self, workflow: str, id: str, work: Claimed) -> Any:
        key = (workflow, id)
        # the creator's trace context, stored with the instance (any host, any restart);
        # only the first activation is its child, later ones link to the one before
        first = not any(TRACE_KEY in (s.config or {}) for s in work.steps)
        traceparent = work.row.trace if first else None
        # never the scheduler's context: a trace is the instance's, not the host's
        parent = (
            _PROPAGATOR.extract({"traceparent": traceparent})
            if traceparent
            else otel_context.Context()
        )
        links = []
        previous = next(
            (
                s.config[TRACE_KEY]
                for s in reversed(work.steps)
                if s.config and TRACE_KEY in s.config
            ),
            None,
        )
        if previous is not None and (linked := _span_context(previous)) is not None:
            links.append(Link(linked, {"durableflow.link": "previous activation"}))
        span = self.tracer.start_span(
            f"activation {workflow}",
            context=parent,
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "durableflow.workflow": workflow,
                "durableflow.instance_id": id,
                "durableflow.replayed_steps": len(work.steps),
            },
        )
        self._open[key] = span
        own = _traceparent(span)
        if own is not None:
            self._parents[key] = own
        token = otel_context.attach(trace.set_span_in_context(span))
        return (key, span, token)

    def activation_ended(self, token: Any) -> None:
        key, span, attached = token
        otel_context.detach(attached)
        if self._open.get(key) is span:
            del self._open[key]
            self._parents.pop(key, None)
        if not span.is_recording():
            return
        attributes = getattr(span, "attributes", None) or {}
        if "durableflow.outcome" not in attributes:
            span.set_attribute("durableflow.outcome", "interrupted")
        span.end()

    def _changed(self, workflow: str, id: str, status: str | None) -> None:
        if status is None or status == "running":
            return
        span = self._open.get((workflow, id))
        if span is None:
            return
        span.set_attribute("durableflow.outcome", status)
        if status == "errored":
            span.set_status(Status(StatusCode.ERROR, "the instance errored"))

    def step_started(self, workflow: str, id: str, step: StepRow) -> Any:
        traceparent = self._parents.get((workflow, id))
        if traceparent is not None and step.config is not None:
            # a copy: a do step's config dict is shared by every step resolved alike
            # (``_config_json``'s cache), and the traceparent is this activation's alone
            step.config = {**step.config, TRACE_KEY: traceparent}  # stored with the outcome
        span = self.tracer.start_span(
            f"step {step.name}",
            kind=SpanKind.INTERNAL,
            attributes={
                "durableflow.workflow": workflow,
                "durableflow.instance_id": id,
                "durableflow.step.name": step.name,
                "durableflow.step.count": step.count,
                "durableflow.step.attempt": step.attempts,
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def step_ended(self, workflow: str, id: str, step: StepRow, token: Any) -> None:
        span, attached = token
        otel_context.detach(attached)
        outcome = _OUTCOMES.get(step.status, "interrupted")
        span.set_attribute("durableflow.outcome", outcome)
        if outcome in ("retry", "failed") and step.error is not None:
            span.add_event(
                "exception",
                {
                    "exception.type": step.error.get("name", ""),
                    "exception.message": step.error.get("message", ""),
                },
            )
            span.set_status(Status(StatusCode.ERROR, step.error.get("message", "")))
        span.end()

    def close(self) -> None:
        shutdown = getattr(self.provider, "force_flush", None)
        if shutdown is not None:
            shutdown()
