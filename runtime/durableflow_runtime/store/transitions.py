"""The state rules of an instance, written once: both stores call them.

A control action (``pause``, ``resume``, ``terminate``, ``restart``) on an instance in a
given status either is refused with :class:`InvalidTransitionError` or leads to a
:class:`Transition`: the status afterwards and the :data:`Effect` a store applies to the
row (which columns change is the store's business; which change happens is decided here).

=================  ===============  =================  ===============  ==========  ==================
status             pause            resume             terminate        restart     terminate_rollback
=================  ===============  =================  ===============  ==========  ==================
queued, waiting    paused (park)    refused            terminated       queued      rollingBack
running            waitingForPause  refused            terminated       queued      rollingBack
                   (request_pause)
waitingForPause    waitingForPause  running            terminated       queued      rollingBack
                   (request_pause)  (withdraw_pause)
paused             paused (none)    queued (requeue)   terminated       queued      rollingBack
unknown            paused (park)    refused            terminated       queued      rollingBack
rollingBack        refused          refused            terminated       queued      refused
complete, errored  refused          refused            refused          queued      refused
terminated
=================  ===============  =================  ===============  ==========  ==================

``terminate_rollback`` is ``terminate(rollback=True)``: the instance becomes
``rollingBack`` (effect ``roll_back``: its running activation loses its lease, and it is
runnable at once), its rollback handlers run, then it is ``terminated``. A plain
``terminate`` of a ``rollingBack`` instance stops its rollbacks where they are.

The engine's own moves follow the same statuses: a claim takes ``queued``/``waiting`` to
``running`` (a ``rollingBack`` instance stays ``rollingBack``); a suspension takes
``running`` to ``waiting`` (or ``paused`` when a pause was requested, ``waitingForPause``
while steps still run); the end of ``run()`` takes it to ``complete``, or to ``errored``
(through ``rollingBack`` when steps registered rollback handlers).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from durableflow import InvalidTransitionError, ValidationError
from durableflow._types import StatusName, StepRef

if TYPE_CHECKING:
    from .base import StepRow

__all__ = [
    "CONTROL_ACTIONS",
    "FINAL_STATUSES",
    "INSTANCE_TABLES",
    "TERMINATED_ERROR",
    "ControlAction",
    "Effect",
    "Transition",
    "allowed_actions",
    "control_statements",
    "control_transition",
    "dropped_steps",
    "numbered",
    "restart_from_statements",
]

#: Every table that stores something for an instance, with the column holding the
#: instance's key: deleting an instance (``Store.delete_instance``, retention) deletes its
#: rows from each of these, then the instance's own row. A new table is added here.
INSTANCE_TABLES: tuple[tuple[str, str], ...] = (
    ("steps", "instance"),
    ("events", "instance"),
    ("stream_chunks", "instance"),
    ("instance_logs", "instance"),
    ("hooks", "instance"),
)


ControlAction: TypeAlias = Literal["pause", "resume", "terminate", "restart", "terminate_rollback"]

Effect: TypeAlias = Literal[
    "none",  # nothing changes (pausing a paused instance)
    "park",  # paused: nothing runs it until resumed
    "request_pause",  # steps are running: pause once they end
    "withdraw_pause",  # a requested pause is called off
    "requeue",  # runnable now
    "terminate",  # ended for good; a running activation loses its lease
    "restart",  # history cleared, runnable now; a running activation loses its lease
    "roll_back",  # rollingBack, runnable now, then terminated; a running activation loses its lease
]

#: The error a rollback handler receives when ``terminate(rollback=True)`` started it
#: (what Cloudflare's local engine passes), shown as the instance's error meanwhile.
TERMINATED_ERROR = {"name": "Terminated", "message": "Instance terminated during rollback"}

FINAL_STATUSES: frozenset[StatusName] = frozenset({"complete", "errored", "terminated"})
CONTROL_ACTIONS: tuple[ControlAction, ...] = ("pause", "resume", "terminate", "restart")


@attrs.frozen
class Transition:
    """What an accepted control action does: the status afterwards and the row change."""

    status: StatusName
    effect: Effect


def control_transition(status: str, action: ControlAction, id: str) -> Transition:
    """The transition of ``action`` from ``status``.

    Args:
        status: The instance's status now.
        action: The control action asked for.
        id: The instance's id, for the error message.

    Raises:
        InvalidTransitionError: The status does not allow the action.
    """
    final = status in FINAL_STATUSES
    if action == "pause":
        if final or status == "rollingBack":
            raise InvalidTransitionError(f"cannot pause instance {id!r}: it is {status}")
        if status in ("running", "waitingForPause"):
            return Transition("waitingForPause", "request_pause")
        if status == "paused":
            return Transition("paused", "none")
        return Transition("paused", "park")
    if action == "resume":
        if status == "waitingForPause":
            return Transition("running", "withdraw_pause")
        if status == "paused":
            return Transition("queued", "requeue")
        raise InvalidTransitionError(f"cannot resume instance {id!r}: it is {status}, not paused")
    if action == "terminate":
        if final:
            raise InvalidTransitionError(f"cannot terminate instance {id!r}: it is {status}")
        return Transition("terminated", "terminate")
    if action == "restart":
        return Transition("queued", "restart")
    if action == "terminate_rollback":
        if final or status == "rollingBack":
            raise InvalidTransitionError(
                f"cannot terminate instance {id!r} with rollback: it is {status}"
            )
        return Transition("rollingBack", "roll_back")
    raise InvalidTransitionError(f"unknown action {action!r}")  # pragma: no cover


def allowed_actions(status: str) -> list[str]:
    """What may be done to an instance in ``status``, read off :func:`control_transition`.

    The control actions the table accepts and that change something (with
    ``terminate_rollback``: ``terminate(rollback=True)``) (pausing a paused
    instance is accepted but does nothing, so it is left out), then ``send_event`` while
    the instance has not ended (the stores refuse events to an ended one). The dashboard
    enables its buttons from this list, so the rules are written here only.
    """
    allowed: list[str] = []
    for action in (*CONTROL_ACTIONS, "terminate_rollback"):
        try:
            transition = control_transition(status, action, "")
        except InvalidTransitionError:
            continue
        if transition.effect != "none":
            allowed.append(action)
    if status not in FINAL_STATUSES:
        allowed.append("send_event")
    return allowed


Statement: TypeAlias = tuple[str, tuple[Any, ...]]


def control_statements(
    effect: Effect, key: int, now: float, lease_reset: str = ""
) -> list[Statement]:
    """The SQL (``?`` placeholders) that applies ``effect`` to instance ``key``.

    Args:
        effect: What :func:`control_transition` decided.
        key: The instance's row key.
        now: The time of the action.
        lease_reset: Extra assignments of a store whose rows carry a lease
            (``", owner = NULL, lease_expires = NULL"``), for effects that end the lease.
    """
    if effect == "none":
        return []
    if effect == "park":
        return [("UPDATE instances SET status = 'paused', run_at = NULL WHERE key = ?", (key,))]
    if effect == "request_pause":
        return [
            (
                "UPDATE instances SET status = 'waitingForPause', pause_requested = ?"
                " WHERE key = ?",
                (True, key),
            )
        ]
    if effect == "withdraw_pause":
        return [
            (
                "UPDATE instances SET status = 'running', pause_requested = ? WHERE key = ?",
                (False, key),
            )
        ]
    if effect == "requeue":
        return [("UPDATE instances SET status = 'queued', run_at = ? WHERE key = ?", (now, key))]
    if effect == "terminate":
        return [
            (
                "UPDATE instances SET status = 'terminated', run_at = NULL, wait_types = NULL,"
                " pause_requested = ?, ended_at = ?, rollback_to = NULL,"
                f" epoch = epoch + 1{lease_reset} WHERE key = ?",
                (False, now, key),
            )
        ]
    if effect == "roll_back":
        return [
            (
                "UPDATE instances SET status = 'rollingBack', run_at = ?, wait_types = NULL,"
                " pause_requested = ?, error = ?, rollback_to = 'terminated',"
                f" epoch = epoch + 1{lease_reset} WHERE key = ?",
                (now, False, json.dumps(TERMINATED_ERROR), key),
            )
        ]
    # restart: the history goes, events already consumed go with it, pending ones stay;
    # hooks and webhooks belong to the history (their payloads too: no wait will take them)
    return [
        ("DELETE FROM steps WHERE instance = ?", (key,)),
        (
            "DELETE FROM events WHERE instance = ? AND (consumed_by IS NOT NULL"
            " OR type LIKE 'hook:%' OR type LIKE 'webhook:%')",
            (key,),
        ),
        ("DELETE FROM hooks WHERE instance = ?", (key,)),
        (
            "UPDATE instances SET status = 'queued', run_at = ?, wait_types = NULL,"
            " pause_requested = ?, output = NULL, error = NULL, started_at = NULL,"
            " ended_at = NULL, rollback_to = NULL, run_retries = 0, epoch = epoch + 1,"
            f" generation = generation + 1{lease_reset}"
            " WHERE key = ?",
            (now, False, key),
        ),
    ]


def dropped_steps(steps: list[StepRow], ref: StepRef, id: str) -> list[StepRow]:
    """The steps a restart from ``ref`` drops: that step and every step started after it
    (Cloudflare's rule), and a wait started before it that resolved after it (its
    resolution is part of what is replayed after the restart point).

    ``ref`` names the ``count``-th step called ``name`` of kind ``type`` in the order the
    steps started, as Cloudflare counts it.

    Raises:
        ValidationError: No such step in the history (naming it).
    """
    ordered = sorted(steps, key=lambda s: s.seq)
    same = [s for s in ordered if s.name == ref.name and s.type == ref.type]
    if len(same) < ref.count:
        raise ValidationError(
            f"cannot restart instance {id!r} from {ref}: no such step in its history"
            + (f" (it has {len(same)} by that name and type)" if same else "")
        )
    cut = same[ref.count - 1].seq
    dropped = []
    for s in ordered:
        resolved = (s.config or {}).get("resolved_seq") if s.type != "do" else None
        if s.seq >= cut or (isinstance(resolved, int) and resolved > cut):
            dropped.append(s)
    return dropped


def restart_from_statements(
    key: int, dropped: list[StepRow], now: float, lease_reset: str = ""
) -> list[Statement]:
    """The SQL (``?`` placeholders) of a restart from a step: the ``dropped`` steps go,
    with the events they consumed; pending events and the rest of the history stay."""
    statements: list[Statement] = []
    for s in dropped:
        statements.append(
            (
                "DELETE FROM steps WHERE instance = ? AND name = ? AND count = ?",
                (key, s.name, s.count),
            )
        )
        if s.type == "wait_for_event":
            consumer = f"{s.name}#{s.count}"
            statements.append(
                ("DELETE FROM events WHERE instance = ? AND consumed_by = ?", (key, consumer))
            )
            channel = (s.config or {}).get("channel")
            if (s.config or {}).get("webhook") and isinstance(channel, str):
                # the webhook was made before the restart point: it takes a request again
                statements.append(
                    (
                        "UPDATE hooks SET consumed_at = NULL WHERE instance = ? AND channel = ?",
                        (key, channel),
                    )
                )
        # a hook or webhook the step registered goes, with a payload no wait took yet
        statements += [
            (
                "DELETE FROM events WHERE instance = ? AND consumed_by IS NULL AND type IN"
                " (SELECT channel FROM hooks WHERE instance = ? AND step = ? AND count = ?)",
                (key, key, s.name, s.count),
            ),
            (
                "DELETE FROM hooks WHERE instance = ? AND step = ? AND count = ?",
                (key, s.name, s.count),
            ),
        ]
    statements.append(
        (
            "UPDATE instances SET status = 'queued', run_at = ?, wait_types = NULL,"
            " pause_requested = ?, output = NULL, error = NULL, ended_at = NULL,"
            " rollback_to = NULL, run_retries = 0,"
            f" epoch = epoch + 1, generation = generation + 1{lease_reset} WHERE key = ?",
            (now, False, key),
        )
    )
    return statements


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (our SQL has no ``?`` in literals)."""
    counter = iter(range(1, 1 << 16))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
