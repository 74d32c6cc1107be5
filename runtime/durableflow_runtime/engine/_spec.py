"""What the engine is given: its workflows, its limits, and a test harness's hooks."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import attrs

from durableflow import ResolvedStepConfig, ValidationError, WorkflowEntrypoint
from durableflow._entrypoint import output_type, params_type

log = logging.getLogger("durableflow")

MiB = 1024 * 1024
#: Instance ids that would be read as a route below ``/instances/`` (``batch``, and
#: ``actions`` for bulk actions).
RESERVED_INSTANCE_IDS = frozenset({"batch", "actions"})
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
        run_retries: The workflow-level retry policy (``limit``, ``delay``, ``backoff``):
            how often ``run()`` runs again from its history when it raises; ``None``: never.
    """

    name: str
    cls: type[WorkflowEntrypoint[Any, Any]]
    binding: str = ""
    defaults: ResolvedStepConfig = attrs.field(factory=ResolvedStepConfig)
    run_retries: ResolvedStepConfig | None = None

    params_type: Any = attrs.field(init=False, eq=False)
    #: the return annotation of ``run()``: bindings restore outputs to it
    output_type: Any = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "params_type", params_type(self.cls))
        try:
            output = output_type(self.cls)
        except ValidationError as exc:
            # the output is still stored and shown; only its restoration is lost, so say so
            log.warning("workflow %r: %s; outputs are returned as plain JSON", self.name, exc)
            output = Any
        object.__setattr__(self, "output_type", output)


class InstanceHooks(Protocol):
    """What a test harness may change for one instance (``durableflow.testing``)."""

    def step_outcome(self, name: str, count: int, attempt: int) -> tuple[str, Any] | None:
        """``("result", value)``, ``("error", exception)``, ``("timeout", None)`` or ``None``."""

    def sleeps_disabled(self) -> bool: ...

    def retry_delays_disabled(self) -> bool: ...

    def event_timeout_forced(self, name: str) -> bool: ...
