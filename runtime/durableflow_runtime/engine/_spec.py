"""What the engine is given: its workflows, its limits, and a test harness's hooks."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import attrs

from durableflow import ResolvedStepConfig, ValidationError, WorkflowEntrypoint
from durableflow._entrypoint import output_type, params_type

from ..store.base import FlowLimits

log = logging.getLogger("durableflow")

WorkflowClass = type[WorkflowEntrypoint[Any, Any]]

MiB = 1024 * 1024
#: The longest concurrency key kept (a longer value read from params is cut).
MAX_KEY_LENGTH = 256
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
        previous: Older classes of the workflow, each with a ``version`` of its own,
            that keep running the instances their versions created.
        version: The version new instances record (``cls.version``).
        classes: Every class this host runs the workflow's instances on, by version.

    Raises:
        ValidationError: A version that is not a short string, a previous class without
            a version, or two classes with the same version.
    """

    name: str
    cls: WorkflowClass
    binding: str = ""
    defaults: ResolvedStepConfig = attrs.field(factory=ResolvedStepConfig)
    run_retries: ResolvedStepConfig | None = None
    #: flow control: what the store's claim enforces for it across hosts
    flow: FlowLimits = attrs.field(factory=FlowLimits)
    #: dotted path (``params.customer_id``) of the value ``key_concurrency`` counts by
    concurrency_key: str | None = None
    previous: tuple[WorkflowClass, ...] = ()

    params_type: Any = attrs.field(init=False, eq=False)
    #: the return annotation of ``run()``: bindings restore outputs to it
    output_type: Any = attrs.field(init=False, eq=False)
    version: str | None = attrs.field(init=False, eq=False)
    classes: dict[str | None, WorkflowClass] = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "params_type", params_type(self.cls))
        try:
            output = output_type(self.cls)
        except ValidationError as exc:
            # the output is still stored and shown; only its restoration is lost, so say so
            log.warning("workflow %r: %s; outputs are returned as plain JSON", self.name, exc)
            output = Any
        object.__setattr__(self, "output_type", output)
        object.__setattr__(self, "version", class_version(self.cls))
        classes: dict[str | None, WorkflowClass] = {self.version: self.cls}
        for old in self.previous:
            version = class_version(old)
            if version is None:
                raise ValidationError(
                    f"workflow {self.name!r}: previous class {old.__name__} has no version "
                    "(give it version = '...': it serves the instances of that version)"
                )
            if version in classes:
                raise ValidationError(
                    f"workflow {self.name!r}: classes {classes[version].__name__} and "
                    f"{old.__name__} both have version {version!r} (each version needs "
                    "one class)"
                )
            classes[version] = old
        object.__setattr__(self, "classes", classes)

    def class_for(self, version: str | None) -> WorkflowClass | None:
        """The class that runs the instances created at ``version`` (``None``: none here)."""
        return self.classes.get(version)

    def flow_key(self, params: Any, given: str | None) -> str | None:
        """The concurrency key of an instance with these (unstructured) params: ``given``
        when set, else the value at the workflow's ``concurrency_key`` path.

        Raises:
            ValidationError: ``given`` is not a string of 1-256 characters, or the path
                finds nothing, or finds something else than a string, number or boolean.
        """
        if given is not None:
            if not 0 < len(given) <= MAX_KEY_LENGTH:
                raise ValidationError(
                    f"concurrency_key must be a string of 1 to {MAX_KEY_LENGTH} characters, "
                    f"not {given!r}"
                )
            return given
        if self.concurrency_key is None:
            return None
        value: Any = {"params": params}
        for part in self.concurrency_key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ValidationError(
                    f"workflow {self.name!r} counts concurrency by {self.concurrency_key}, "
                    f"which these params lack (give concurrency_key= to create instead)"
                )
            value = value[part]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float) and str(value):
            return str(value)[:MAX_KEY_LENGTH]
        raise ValidationError(
            f"workflow {self.name!r}: {self.concurrency_key} must be a string or a number "
            f"to count concurrency by, not {value!r}"
        )


_VERSION_MAX = 64


def class_version(cls: WorkflowClass) -> str | None:
    """A workflow class's ``version``, checked: ``None`` or 1 to 64 printable characters.

    Raises:
        ValidationError: Anything else, naming the class.
    """
    version = getattr(cls, "version", None)
    if version is None:
        return None
    if (
        not isinstance(version, str)
        or not 1 <= len(version) <= _VERSION_MAX
        or not version.isprintable()
    ):
        raise ValidationError(
            f"{cls.__name__}.version must be None or a string of 1 to {_VERSION_MAX} "
            f"printable characters, not {version!r}"
        )
    return version


def no_code_message(version: str | None) -> str:
    """What an instance whose version has no class on this host is ``blocked`` by."""
    if version is None:
        return "no code for instances without a version on this host"
    return f"no code for version {version!r} on this host"


def check_priority(priority: object) -> int:
    """A create's ``priority``: 0 (the default) to 100, higher first.

    Raises:
        ValidationError: Anything else.
    """
    if priority is None:
        return 0
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # JSON's 5.0 is the integer 5 (as JSON Schema says)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise ValidationError(f"priority must be an integer from 0 to 100, not {priority!r}")
    return priority


class InstanceHooks(Protocol):
    """What a test harness may change for one instance (``durableflow.testing``)."""

    def step_outcome(self, name: str, count: int, attempt: int) -> tuple[str, Any] | None:
        """``("result", value)``, ``("error", exception)``, ``("timeout", None)`` or ``None``."""

    def sleeps_disabled(self) -> bool: ...

    def retry_delays_disabled(self) -> bool: ...

    def event_timeout_forced(self, name: str) -> bool: ...
