"""The API's answers about instances, as attrs classes: one class per schema of the same
name in ``openapi.py`` (a unit test holds the fields and the schemas together).

The engine hands over typed records (the store's rows, ``InstanceRecord``); these classes
say how each becomes JSON, in one place each: ``InstanceDetail.from_record`` is where the
instance detail is built (a new field of the detail is added there and in its schema).
Times are ISO 8601 strings in UTC with a ``Z``; ``to_json()`` keeps the fields in the
order they are declared, which is the order on the wire, and hands ``output`` and
``params`` over as they are (no copy of a large JSON value).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs

from durableflow._serde import loads

from ..engine import InstanceRecord, rollback_record
from ..store.base import InstanceRow, StepRow
from ..store.transitions import allowed_actions

__all__ = [
    "REDACTED",
    "Attempt",
    "InstanceDetail",
    "InstanceList",
    "InstanceSummary",
    "Rollback",
    "Step",
    "is_sensitive",
    "iso",
]

#: What every surface shows in place of a sensitive step's output.
REDACTED = "[redacted]"


def is_sensitive(step: StepRow) -> bool:
    """Whether a step was configured with ``sensitive="output"`` (its config is frozen at
    its first attempt, so this holds on every host and after every restart)."""
    return step.type == "do" and (step.config or {}).get("sensitive") == "output"


def iso(ts: float | None) -> str | None:
    """A timestamp (seconds since the epoch) as ``2026-01-31T12:00:00.5Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@attrs.frozen
class Attempt:
    """One attempt of a ``do`` step (schema ``Attempt``)."""

    started_at: str | None
    ended_at: str | None
    error: dict[str, str] | None

    @classmethod
    def from_log(cls, entry: dict[str, Any]) -> Attempt:
        """One entry of a step row's ``attempt_log``."""
        return cls(
            started_at=iso(entry.get("started_at")),
            ended_at=iso(entry.get("ended_at")),
            error=entry.get("error"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen
class Rollback:
    """The rollback of a ``do`` step, once it started (schema ``Rollback``)."""

    status: str
    attempts: int
    attempt_log: list[Attempt]
    error: dict[str, str] | None
    started_at: str | None
    ended_at: str | None
    wake_at: str | None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Rollback:
        """The rollback record a step row keeps (engine/_rollback.py)."""
        return cls(
            status=record.get("status", "running"),
            attempts=int(record.get("attempts") or 0),
            attempt_log=[Attempt.from_log(a) for a in record.get("attempt_log") or []],
            error=record.get("error"),
            started_at=iso(record.get("started_at")),
            ended_at=iso(record.get("ended_at")),
            wake_at=iso(record.get("wake_at")),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order."""
        data = attrs.asdict(self, recurse=False)
        data["attempt_log"] = [a.to_json() for a in self.attempt_log]
        return data


@attrs.frozen
class Step:
    """One step of an instance (schema ``Step``)."""

    name: str
    count: int
    type: str
    status: str
    attempts: int
    attempt_log: list[Attempt]
    output: Any
    error: dict[str, str] | None
    started_at: str | None
    ended_at: str | None
    wake_at: str | None
    host: str | None
    #: its rollback handler's run, once the instance rolled back (``do`` steps only)
    rollback: Rollback | None
    #: ``wait_for_event`` steps only: the type waited for, and the JSON Schema of the
    #: payload a wait declares (``None``: it declares none; the wait's config holds it)
    event_type: str | None = None
    payload_schema: dict[str, Any] | None = None
    #: ``run_workflow``/``start_workflow`` steps only: the child, ``{"workflow", "id"}``
    child: dict[str, str] | None = None
    #: a hook's wait only: the token that resumes it (``POST /api/hooks/{token}``)
    hook_token: str | None = None

    @classmethod
    def from_row(cls, step: StepRow, *, reveal: bool = False) -> Step:
        """A step row of the history. The output of a step configured with
        ``sensitive="output"`` is shown as ``"[redacted]"`` unless ``reveal`` (the
        testing kit's ``wait_for_step_result``); its error is shown as it is."""
        config = (step.config or {}) if step.type == "wait_for_event" else {}
        record = rollback_record(step)
        output = (
            REDACTED
            if (not reveal and step.output is not None and is_sensitive(step))
            else loads(step.output)
        )
        return cls(
            name=step.name,
            count=step.count,
            type=step.type,
            status=step.status,
            attempts=step.attempts,
            attempt_log=[Attempt.from_log(a) for a in step.attempt_log],
            output=output,
            error=step.error,
            started_at=iso(step.started_at),
            ended_at=iso(step.ended_at),
            wake_at=iso(step.wake_at),
            host=step.host,
            rollback=Rollback.from_record(record) if record is not None else None,
            event_type=config.get("type"),
            payload_schema=config.get("payload_schema"),
            child=_child_of(step),
            hook_token=None if config.get("webhook") else config.get("token"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order (the wait's fields on waits only)."""
        data = attrs.asdict(self, recurse=False)
        data["attempt_log"] = [a.to_json() for a in self.attempt_log]
        data["rollback"] = self.rollback.to_json() if self.rollback is not None else None
        if self.type != "wait_for_event":
            del data["event_type"], data["payload_schema"], data["hook_token"]
        if self.type not in _CHILD_STEPS:
            del data["child"]
        return data


_CHILD_STEPS = ("run_workflow", "start_workflow")


def _child_of(step: StepRow) -> dict[str, str] | None:
    """The child a ``run_workflow``/``start_workflow`` step started, from its config."""
    config = step.config or {}
    if step.type not in _CHILD_STEPS or "id" not in config:
        return None
    return {"workflow": config["workflow"], "id": config["id"]}


@attrs.frozen
class InstanceDetail:
    """Everything known about an instance (schema ``InstanceDetail``): the answer of
    ``GET /api/workflows/{name}/instances/{id}`` and the testing kit's ``describe``."""

    id: str
    workflow: str
    status: str
    error: dict[str, str] | None
    output: Any
    params: Any
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    steps: list[Step]
    #: what the status allows now, from the state rules (store/transitions.py)
    actions: list[str]
    #: how many times ``run()`` ran again under the workflow's ``run_retries``
    run_retries: int
    #: the instance that started it (``step.run_workflow``/``start_workflow``), if one did
    parent: dict[str, str] | None
    #: the instances it started, oldest first
    children: list[dict[str, str]]
    #: 0-100, higher starts first among queued instances of its workflow
    priority: int = 0
    #: the key ``key_concurrency`` counts it under, if any
    concurrency_key: str | None = None
    #: the ``version`` of the workflow class that created the instance
    version: str | None = None
    #: why it is runnable yet not running (no code for its version on this host, or a
    #: flow limit: ``Engine.why_blocked``), else None
    blocked: str | None = None

    @classmethod
    def from_record(cls, record: InstanceRecord, *, reveal: bool = False) -> InstanceDetail:
        """What ``Engine.describe`` returned: the one place the instance detail is built
        (``reveal``: show sensitive step outputs, for the testing kit only)."""
        row = record.instance
        return cls(
            id=row.id,
            workflow=row.workflow,
            status=row.status,
            error=row.error,
            output=loads(row.output),
            params=loads(row.params),
            created_at=iso(row.created_at),
            started_at=iso(row.started_at),
            ended_at=iso(row.ended_at),
            steps=[Step.from_row(s, reveal=reveal) for s in record.steps],
            actions=allowed_actions(row.status),
            run_retries=row.run_retries,
            parent=attrs.asdict(record.parent) if record.parent is not None else None,
            children=[attrs.asdict(c) for c in record.children],
            priority=row.priority,
            concurrency_key=row.concurrency_key,
            version=row.version,
            blocked=record.blocked,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order."""
        data = attrs.asdict(self, recurse=False)
        data["steps"] = [s.to_json() for s in self.steps]
        return data


@attrs.frozen
class InstanceSummary:
    """One instance in a list (schema ``InstanceSummary``)."""

    id: str
    status: str
    error: dict[str, str] | None
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    version: str | None

    @classmethod
    def from_row(cls, row: InstanceRow) -> InstanceSummary:
        """An instance row."""
        return cls(
            id=row.id,
            status=row.status,
            error=row.error,
            created_at=iso(row.created_at),
            started_at=iso(row.started_at),
            ended_at=iso(row.ended_at),
            version=row.version,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen
class InstanceList:
    """One page of instances, newest first (schema ``InstanceList``)."""

    instances: list[InstanceSummary]
    next_cursor: str | None

    @classmethod
    def from_rows(cls, rows: list[InstanceRow], next_cursor: str | None) -> InstanceList:
        """What ``Engine.list_instances`` returned."""
        return cls([InstanceSummary.from_row(r) for r in rows], next_cursor)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in wire order."""
        return {
            "instances": [i.to_json() for i in self.instances],
            "next_cursor": self.next_cursor,
        }
