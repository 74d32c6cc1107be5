"""Rows as both stores keep them, written once: the column lists, the mappers from a
fetched row to a record, the values a step is bound as, and the text encoding of JSON.

Both schemas keep JSON as text (params, outputs, payloads, errors, a step's attempt log
and config), so a row fetched from either backend maps to a record the same way. A
fetched row is anything indexable: a ``sqlite3`` tuple or an ``asyncpg.Record``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

import attrs
import orjson

from durableflow import InstanceExistsError, InvalidTransitionError, NotFoundError

from .base import FINAL_STATUSES, EventRow, HookRow, InstanceRow, Lease, StepRow, StepStatus

__all__ = [
    "EVENT_COLUMNS",
    "HOOK_COLUMNS",
    "HOOK_INSERT_COLUMNS",
    "INSTANCE_COLUMNS",
    "STEP_COLUMNS",
    "ChildEnd",
    "StepValues",
    "already_exists",
    "child_end",
    "child_payload",
    "event_from_row",
    "event_output",
    "hook_from_row",
    "hook_values",
    "instance_from_row",
    "json_text",
    "lease_of",
    "like_prefix",
    "not_found",
    "step_values",
    "steps_by_instance",
    "takes_events",
    "text",
    "with_event",
]


def text(data: bytes | None) -> str | None:
    """JSON bytes as the text a column keeps."""
    return data.decode() if data is not None else None


def json_text(value: Any) -> str | None:
    """A value as the JSON text a column keeps; ``None`` stays NULL."""
    return orjson.dumps(value).decode() if value is not None else None


def _utf8(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _json(value: str | None) -> Any:
    return orjson.loads(value) if value is not None else None


INSTANCE_COLUMNS = (
    "key, workflow, id, status, params, output, error, created_at, started_at, ended_at, "
    "run_at, epoch, generation, pause_requested, trace, rollback_to, run_retries, parent,"
    " priority, concurrency_key, version"
)
"""The columns :func:`instance_from_row` reads, in its order (both stores' schemas)."""


def instance_from_row(row: Sequence[Any]) -> InstanceRow:
    """An :class:`InstanceRow` from a row of :data:`INSTANCE_COLUMNS`."""
    return InstanceRow(
        key=row[0],
        workflow=row[1],
        id=row[2],
        status=row[3],
        params=_utf8(row[4]),
        output=_utf8(row[5]),
        error=_json(row[6]),
        created_at=row[7],
        started_at=row[8],
        ended_at=row[9],
        run_at=row[10],
        epoch=row[11],
        generation=row[12],
        pause_requested=bool(row[13]),
        trace=row[14],
        rollback_to=row[15],
        run_retries=row[16],
        parent=row[17],
        priority=row[18],
        concurrency_key=row[19],
        version=row[20],
    )


def lease_of(row: InstanceRow) -> Lease:
    """The lease a claim that returned ``row`` holds."""
    return Lease(row.workflow, row.id, row.key, row.epoch)


STEP_COLUMNS = (
    "instance, name, count, seq, type, status, attempts, attempt_log, output, error,"
    " started_at, ended_at, wake_at, config"
)
"""The step columns both schemas have, in the order :func:`steps_by_instance` reads them;
a store that records the host appends ``host``."""


def _step_from_row(r: Sequence[Any]) -> StepRow:
    return StepRow(
        name=r[1],
        count=r[2],
        seq=r[3],
        type=r[4],
        status=r[5],
        attempts=r[6],
        attempt_log=orjson.loads(r[7]),
        output=_utf8(r[8]),
        error=_json(r[9]),
        started_at=r[10],
        ended_at=r[11],
        wake_at=r[12],
        config=_json(r[13]),
        host=r[14] if len(r) > 14 else None,
    )


def steps_by_instance(rows: Iterable[Sequence[Any]]) -> dict[int, list[StepRow]]:
    """Rows of :data:`STEP_COLUMNS` (``host`` optional) as each instance's steps, in
    the order fetched."""
    found: dict[int, list[StepRow]] = {}
    for r in rows:
        found.setdefault(r[0], []).append(_step_from_row(r))
    return found


#: (name, count, seq, type, status, attempts, attempt_log, output, error, started_at,
#: ended_at, wake_at, config): a step as bound to a statement. Taken when the write is
#: called, because the engine keeps changing its StepRow while the write waits.
StepValues: TypeAlias = tuple[
    str,
    int,
    int,
    str,
    str,
    int,
    str,
    str | None,
    str | None,
    float | None,
    float | None,
    float | None,
    str | None,
]


def step_values(step: StepRow) -> StepValues:
    """The values ``step`` is written as, in :data:`STEP_COLUMNS` order after ``instance``."""
    return (
        step.name,
        step.count,
        step.seq,
        step.type,
        step.status,
        step.attempts,
        orjson.dumps(step.attempt_log).decode(),
        text(step.output),
        json_text(step.error),
        step.started_at,
        step.ended_at,
        step.wake_at,
        json_text(step.config),
    )


EVENT_COLUMNS = "seq, type, payload, created_at"
"""The columns :func:`event_from_row` reads."""


def event_from_row(row: Sequence[Any]) -> EventRow:
    """An :class:`EventRow` from a row of :data:`EVENT_COLUMNS` (and ``consumed_by``)."""
    return EventRow(row[0], row[1], _utf8(row[2]), row[3], row[4] if len(row) > 4 else None)


def event_output(event: EventRow) -> bytes:
    """What a ``wait_for_event`` step stores as its output: the event it took."""
    payload = orjson.Fragment(event.payload) if event.payload is not None else None
    return orjson.dumps({"type": event.type, "payload": payload, "timestamp": event.created_at})


def child_payload(status: str, output: str | None, error: str | None) -> str:
    """The payload of the event a child's end leaves for its parent: its final status,
    output and error (JSON texts as the instance's columns keep them)."""
    return f'{{"status":"{status}","output":{output or "null"},"error":{error or "null"}}}'


@attrs.frozen
class ChildEnd:
    """How a ``run_workflow`` step ends, read off the event of its child's end."""

    child_status: str  # complete, errored or terminated
    output: str | None  # the child's output (JSON text) when it completed
    error: dict[str, str] | None  # else why not

    @property
    def step_status(self) -> StepStatus:
        return "complete" if self.child_status == "complete" else "failed"


def child_end(payload: bytes | None) -> ChildEnd:
    """The outcome of a child for its parent's ``run_workflow`` step, from the payload
    :func:`child_payload` made."""
    end = orjson.loads(payload or b"{}")
    status = end.get("status", "errored")
    if status == "complete":
        return ChildEnd(status, orjson.dumps(end.get("output")).decode(), None)
    if status == "terminated":
        return ChildEnd(status, None, {"name": "Terminated", "message": "it was terminated"})
    return ChildEnd(status, None, end.get("error") or {"name": "Error", "message": "it failed"})


def _with_child_end(values: StepValues, event: EventRow, now: float) -> StepValues:
    """A ``run_workflow`` step ended by its child's end: complete with the child's output,
    or failed with the child's error; the child's status goes into the step's config."""
    end = child_end(event.payload)
    config = {**(_json(values[12]) or {}), "status": end.child_status}
    return (
        *values[:4],
        end.step_status,
        values[5],
        values[6],
        end.output,
        json_text(end.error),
        values[9],
        now,
        None,
        json_text(config),
    )


def with_event(values: StepValues, event: EventRow, now: float) -> StepValues:
    """The wait step ``values`` completed by ``event`` at ``now`` (a ``run_workflow`` step
    by its child's end)."""
    if values[3] == "run_workflow":
        return _with_child_end(values, event, now)
    return (
        *values[:4],
        "complete",
        values[5],
        values[6],
        event_output(event).decode(),
        None,
        values[9],
        now,
        None,
        values[12],
    )


HOOK_INSERT_COLUMNS = "token, instance, kind, step, count, channel, verify, created_at"
"""The columns :func:`hook_values` binds, in its order."""

HOOK_COLUMNS = (
    "h.token, h.kind, i.workflow, i.id, i.key, i.status, h.step, h.count, h.channel,"
    " h.verify, h.created_at, h.consumed_at, s.status, s.config"
)
"""What :func:`hook_from_row` reads: a hook joined with its instance and its step."""


def hook_values(hook: HookRow) -> tuple[Any, ...]:
    """The values of :data:`HOOK_INSERT_COLUMNS` for ``hook``."""
    return (
        hook.token,
        hook.key,
        hook.kind,
        hook.step,
        hook.count,
        hook.channel,
        json_text(hook.verify),
        hook.created_at,
    )


def hook_from_row(row: Sequence[Any]) -> HookRow:
    """A :class:`HookRow` from a row of :data:`HOOK_COLUMNS`."""
    return HookRow(
        token=row[0],
        kind=row[1],
        workflow=row[2],
        instance_id=row[3],
        key=row[4],
        instance_status=row[5],
        step=row[6],
        count=row[7],
        channel=row[8],
        verify=_json(row[9]),
        created_at=row[10],
        consumed_at=row[11],
        step_status=row[12],
        step_config=_json(row[13]),
    )


def not_found(workflow: str, id: str) -> NotFoundError:
    """The error for an instance that does not exist."""
    return NotFoundError(f"no instance {id!r} of workflow {workflow!r}")


def already_exists(workflow: str, id: str) -> InstanceExistsError:
    """The error for creating an instance whose id is taken."""
    return InstanceExistsError(f"instance {id!r} of workflow {workflow!r} already exists")


def takes_events(row: Sequence[Any] | None, workflow: str, id: str) -> int:
    """The key of a ``(key, status)`` row that may be sent an event.

    Raises:
        NotFoundError: No such instance (``row`` is ``None``).
        InvalidTransitionError: The instance has ended.
    """
    if row is None:
        raise not_found(workflow, id)
    if row[1] in FINAL_STATUSES:
        raise InvalidTransitionError(f"instance {id!r} is {row[1]}: it takes no more events")
    key: int = row[0]
    return key


def like_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern (with ``ESCAPE '\\'``) matching what starts with ``prefix``."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
