"""Value types shared by the SDK and the host: events, step context, instance status."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar, get_args

import attrs
import typing_extensions

from ._config import ResolvedStepConfig
from ._errors import ValidationError
from ._output import OutputSink, StreamWriter, check_level, check_stream_name

__all__ = [
    "BULK_ACTIONS",
    "MAX_BULK",
    "STATUSES",
    "BulkAction",
    "BulkResult",
    "CreateOptions",
    "ErrorInfo",
    "InstanceStatus",
    "RollbackContext",
    "StatusName",
    "StepContext",
    "StepRef",
    "StepRefType",
    "WorkflowEvent",
    "WorkflowStepEvent",
    "check_bulk",
    "check_id",
    "check_step_name",
    "check_token",
]

ParamsT = TypeVar("ParamsT")
T = TypeVar("T")
#: A workflow's output type (the return annotation of its ``run()``); ``Any`` when unsaid.
OutputT = typing_extensions.TypeVar("OutputT", default=Any)
PayloadT = TypeVar("PayloadT")

StatusName: TypeAlias = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waiting",
    "waitingForPause",
    "rollingBack",
    "unknown",
]
STATUSES: tuple[StatusName, ...] = get_args(StatusName)


@attrs.frozen
class WorkflowEvent(Generic[ParamsT]):
    """What ``run()`` receives: the instance's params and identity.

    Attributes:
        payload: The params given at ``create``, structured into ``ParamsT``.
        timestamp: When the instance was created (UTC).
        instance_id: The instance's id.
        workflow_name: The workflow's configured name (``""`` in an event built by hand
            without one).
        version: The ``version`` of the workflow class that created the instance (``None``
            when that class declares none); the instance always runs on the class of
            this version, so one class may branch on it.
    """

    payload: ParamsT
    timestamp: datetime
    instance_id: str
    workflow_name: str = ""
    version: str | None = None


@attrs.frozen
class WorkflowStepEvent(Generic[PayloadT]):
    """An event delivered to ``step.wait_for_event``.

    Attributes:
        type: The event's type.
        payload: Its JSON payload, structured into the wait's ``payload_type`` when it has
            one (``WorkflowStepEvent[PayloadT]``).
        timestamp: When it was sent (UTC).
    """

    type: str
    payload: PayloadT
    timestamp: datetime


@attrs.frozen
class StepContext:
    """Passed to a step callback that takes one argument.

    Attributes:
        attempt: 1-based number of this attempt.
        name: The step's name.
        count: 1-based occurrence of this name in the run.
        step_id: Stable across attempts and replays: use it as an idempotency key.
        config: The step's resolved config, every default applied (Cloudflare's
            ``ResolvedStepConfig`` shape: ``retries.limit``, ``retries.delay`` (``None``
            for a delay function), ``retries.backoff``, ``timeout``, ``sensitive``).
    """

    attempt: int
    name: str
    count: int
    step_id: str
    config: ResolvedStepConfig
    _sink: OutputSink | None = attrs.field(default=None, repr=False, eq=False, kw_only=True)

    def stream(self, name: str = "default") -> StreamWriter:
        """A writer on one of the instance's streams, for this attempt.

        ``await ctx.stream("tokens").write(chunk)`` appends a chunk that readers
        (``instance.stream("tokens")``, ``GET .../streams/tokens``) see at once. Chunks
        are durable and ordered per stream; each is marked with this step and attempt.

        Raises:
            ValidationError: A bad stream name, or a context the host did not make.
        """
        check_stream_name(name)
        return self._output().stream(name)

    def log(self, message: str, /, *, level: str = "info", **fields: Any) -> None:
        """Add an entry to the instance's log, marked with this step and attempt.

        Each attempt logs what it logs (a retried step logs again); the entry also goes
        to the ``durableflow.workflow`` Python logger.

        Args:
            message: The message.
            level: ``debug``, ``info`` (default), ``warning`` or ``error``.
            **fields: JSON-representable values stored with it.

        Raises:
            ValidationError: A bad level or message.
        """
        if not isinstance(message, str):
            raise ValidationError(f"a log message must be a str, not {type(message).__name__}")
        self._output().log(check_level(level), message, fields)

    def _output(self) -> OutputSink:
        if self._sink is None:
            raise ValidationError(
                f"step {self.name!r}: this StepContext was not made by a host, so it has "
                "no streams and no log"
            )
        return self._sink


@attrs.frozen
class ErrorInfo:
    """Why an instance or a step failed: the error's class name and message."""

    name: str
    message: str


@attrs.frozen
class RollbackContext(Generic[T]):
    """What a step's rollback handler receives when the instance is rolled back.

    Attributes:
        step: The context of the step being undone (its name, count, ``step_id``, the
            attempt that ended it, and its resolved config).
        output: The step's result, restored to its annotated type; ``None`` for a step
            that had not completed (the step whose failure started the rollback, or a
            step that was running when the instance was terminated).
        error: What failed the instance (for ``terminate(rollback=True)``:
            ``Terminated``).
    """

    step: StepContext
    output: T
    error: ErrorInfo


@attrs.frozen
class InstanceStatus(Generic[OutputT]):
    """An instance's status as ``WorkflowInstance.status()`` reports it.

    Attributes:
        status: One of Cloudflare's status strings.
        error: ``{name, message}`` of the error that ended it, if it errored.
        output: What ``run()`` returned, once complete, restored to the return
            annotation of ``run()`` by the in-process binding, and by a ``Client``
            binding given ``output_type``; plain JSON otherwise. It is ``None`` until the
            instance is ``complete``; it is typed ``OutputT`` (not ``OutputT | None``) so
            that untyped code keeps reading it as ``Any``: check ``status`` first.
    """

    status: StatusName
    error: ErrorInfo | None = None
    output: OutputT = None  # type: ignore[assignment]


@attrs.frozen
class CreateOptions(Generic[ParamsT]):
    """One entry of ``Workflow.create_batch``."""

    id: str | None = None
    params: ParamsT | None = None


StepRefType: TypeAlias = Literal["do", "sleep", "wait_for_event"]
_STEP_REF_TYPES: tuple[StepRefType, ...] = get_args(StepRefType)


@attrs.frozen
class StepRef:
    """A step of an instance's history, as ``restart(from_step=...)`` names it.

    The ``count``-th step called ``name`` of kind ``type`` in the order the steps started
    (Cloudflare's ``{name, count, type}``).

    Attributes:
        name: The step's name.
        count: Which occurrence of that name (1-based).
        type: ``"do"``, ``"sleep"`` or ``"wait_for_event"``.
    """

    name: str
    count: int = 1
    type: StepRefType = "do"

    @classmethod
    def parse(cls, value: object, *, where: str = "from_step") -> StepRef:
        """A ``StepRef`` from itself or a ``{"name", "count"?, "type"?}`` dict.

        Raises:
            ValidationError: Something else, an unknown key, or a bad field (naming it).
        """
        if isinstance(value, StepRef):
            fields: dict[str, Any] = attrs.asdict(value)
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {"name", "count", "type"})
            if unknown:
                raise ValidationError(f"unknown key(s) in {where}: {', '.join(unknown)}")
            if "name" not in value:
                raise ValidationError(f"{where} needs a 'name'")
            fields = {"count": 1, "type": "do", **value}
        else:
            raise ValidationError(
                f"{where} must be a StepRef or a dict with name, count and type, "
                f"not {type(value).__name__}"
            )
        name, count, kind = fields["name"], fields["count"], fields["type"]
        try:
            check_step_name(name)
        except ValidationError as exc:
            raise ValidationError(f"{where}.name: {exc.message}") from None
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValidationError(f"{where}.count must be a whole number >= 1, not {count!r}")
        if kind not in _STEP_REF_TYPES:
            raise ValidationError(
                f"{where}.type must be one of {', '.join(_STEP_REF_TYPES)}, not {kind!r}"
            )
        return cls(name, count, kind)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "count", "type"}``."""
        return {"name": self.name, "count": self.count, "type": self.type}

    def __str__(self) -> str:
        return f"{self.type} step {self.name!r} (#{self.count})"


BulkAction: TypeAlias = Literal["pause", "resume", "terminate", "restart", "delete"]
BULK_ACTIONS: tuple[BulkAction, ...] = get_args(BulkAction)
#: The most instances one bulk action (or ``delete_batch``) touches.
MAX_BULK = 1000


@attrs.frozen
class BulkResult:
    """What a bulk action did to one instance.

    Attributes:
        id: The instance's id.
        result: ``"applied"`` or ``"skipped"``.
        reason: Why it was skipped (``None`` when applied).
        status: The instance's status afterwards (``None`` once deleted or unknown).
    """

    id: str
    result: Literal["applied", "skipped"]
    reason: str | None = None
    status: StatusName | None = None

    def to_json(self) -> dict[str, Any]:
        """The HTTP API's shape of one result."""
        return {"id": self.id, "result": self.result, "reason": self.reason, "status": self.status}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BulkResult:
        """One result of the HTTP API's answer."""
        return cls(data["id"], data["result"], data.get("reason"), data.get("status"))


def check_bulk(
    action: object, ids: object, status: object
) -> tuple[BulkAction, list[str] | None, StatusName | None]:
    """Validate a bulk request: an action, and exactly one of ``ids`` and ``status``.

    Repeated ids are kept once, in their first place.

    Raises:
        ValidationError: Naming what is wrong.
    """
    if action not in BULK_ACTIONS:
        raise ValidationError(f"unknown bulk action {action!r} (one of {', '.join(BULK_ACTIONS)})")
    if (ids is None) == (status is None):
        raise ValidationError("give either 'ids' or 'status' (exactly one of them)")
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        return action, None, status
    if isinstance(ids, str | bytes) or not isinstance(ids, list | tuple):
        raise ValidationError(f"'ids' must be a list of instance ids, not {type(ids).__name__}")
    if not ids:
        raise ValidationError("'ids' is empty: give at least one instance id")
    if len(ids) > MAX_BULK:
        raise ValidationError(f"a bulk action takes at most {MAX_BULK} ids, not {len(ids)}")
    for index, id in enumerate(ids):
        try:
            check_id(id)
        except ValidationError as exc:
            raise ValidationError(f"ids[{index}]: {exc.message}") from None
    return action, list(dict.fromkeys(ids)), None


_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # always fullmatch: "$" allows "\n"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(value: object, *, what: str = "instance id", max_length: int = 100) -> str:
    """Validate an instance id, event type or workflow name.

    Raises:
        ValidationError: The value is not 1..max_length characters of ``[A-Za-z0-9_-]``
            not starting with ``-``.
    """
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_length
        or not _ID.fullmatch(value)
    ):
        raise ValidationError(
            f"invalid {what} {value!r}: use 1-{max_length} characters of A-Z a-z 0-9 _ -, "
            "not starting with '-'"
        )
    return value


_TOKEN = re.compile(r"[A-Za-z0-9_.:~@-]+")


def check_token(value: object) -> str:
    """Validate a hook token: 1-256 characters of ``A-Z a-z 0-9 _ . : ~ @ -``.

    Raises:
        ValidationError: The value is not such a string.
    """
    if not isinstance(value, str) or not value or len(value) > 256 or not _TOKEN.fullmatch(value):
        raise ValidationError(
            f"invalid hook token {value!r}: use 1-256 characters of A-Z a-z 0-9 _ . : ~ @ -"
        )
    return value


def check_step_name(value: object) -> str:
    """Validate a step name: 1-256 characters, no control characters."""
    if not isinstance(value, str) or not value or len(value) > 256 or _CONTROL.search(value):
        raise ValidationError(
            f"invalid step name {value!r}: use 1-256 characters without control characters"
        )
    return value
