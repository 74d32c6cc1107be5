"""The state rules both stores share."""

from __future__ import annotations

from typing import Any

import pytest

from durableflow import InvalidTransitionError, StepRef, ValidationError
from durableflow._types import STATUSES
from durableflow_runtime.store.transitions import (
    FINAL_STATUSES,
    Transition,
    control_transition,
    dropped_steps,
    numbered,
)


def test_every_status_and_action_has_a_rule():
    """Each (status, action) either transitions or is refused naming the status."""
    for status in STATUSES:
        for action in ("pause", "resume", "terminate", "restart", "terminate_rollback"):
            try:
                result = control_transition(status, action, "i-1")
            except InvalidTransitionError as exc:
                assert status in exc.message and "'i-1'" in exc.message
            else:
                assert isinstance(result, Transition)


@pytest.mark.parametrize(
    ("status", "action", "after", "effect"),
    [
        ("running", "pause", "waitingForPause", "request_pause"),
        ("waiting", "pause", "paused", "park"),
        ("paused", "pause", "paused", "none"),
        ("waitingForPause", "resume", "running", "withdraw_pause"),
        ("paused", "resume", "queued", "requeue"),
        ("waiting", "terminate", "terminated", "terminate"),
        ("complete", "restart", "queued", "restart"),
        ("waiting", "terminate_rollback", "rollingBack", "roll_back"),
        ("running", "terminate_rollback", "rollingBack", "roll_back"),
        ("rollingBack", "terminate", "terminated", "terminate"),
        ("rollingBack", "restart", "queued", "restart"),
    ],
)
def test_transitions(status, action, after, effect):
    """The documented table: status afterwards and the row change."""
    assert control_transition(status, action, "x") == Transition(after, effect)


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_an_ended_instance_can_only_restart(status):
    """complete, errored and terminated refuse pause, resume and terminate."""
    for action in ("pause", "resume", "terminate"):
        with pytest.raises(InvalidTransitionError):
            control_transition(status, action, "x")


@pytest.mark.parametrize("action", ["pause", "resume", "terminate_rollback"])
def test_a_rolling_back_instance_refuses_pause_resume_and_a_second_rollback(action):
    """While rollingBack, pause (409 over HTTP), resume and terminate(rollback=True) are refused."""
    with pytest.raises(InvalidTransitionError, match="rollingBack"):
        control_transition("rollingBack", action, "x")


def test_numbered_placeholders():
    """'?' placeholders become $1, $2, ... in order."""
    assert numbered("UPDATE t SET a = ?, b = ? WHERE k = ?") == (
        "UPDATE t SET a = $1, b = $2 WHERE k = $3"
    )


def _row(name: str, seq: int, type: str = "do", count: int = 1, resolved: int | None = None) -> Any:
    from durableflow_runtime.store.base import StepRow

    config = {"resolved_seq": resolved} if resolved is not None else None
    return StepRow(name=name, count=count, seq=seq, type=type, status="complete", config=config)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "dropped"),
    [
        (StepRef("a"), ["a", "w", "b", "a#2", "s"]),
        # the wait started before b but resolved after it: its resolution is replayed later
        (StepRef("b"), ["w", "b", "a#2", "s"]),
        (StepRef("a", count=2), ["a#2", "s"]),
        (StepRef("s", type="sleep"), ["s"]),
        (StepRef("w", type="wait_for_event"), ["w", "b", "a#2", "s"]),
    ],
)
def test_a_restart_from_a_step_drops_it_and_what_started_after(
    ref: StepRef, dropped: list[str]
) -> None:
    """dropped_steps counts occurrences per name and kind in start order, as Cloudflare."""
    steps = [
        _row("a", 0),
        _row("w", 1, "wait_for_event", resolved=3),
        _row("b", 2),
        _row("a", 4, count=2),
        _row("s", 5, "sleep", resolved=6),
    ]
    names = [
        s.name + (f"#{s.count}" if s.count > 1 else "") for s in dropped_steps(steps, ref, "i")
    ]
    assert names == dropped


def test_a_wait_resolved_after_the_restart_point_is_dropped() -> None:
    """A wait started before the step but resolved after it goes with the later steps."""
    steps = [_row("w", 0, "wait_for_event", resolved=2), _row("b", 1)]
    assert [s.name for s in dropped_steps(steps, StepRef("b"), "i")] == ["w", "b"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (StepRef("zzz"), "do step 'zzz' (#1): no such step"),
        (StepRef("a", count=3), "(it has 2 by that name and type)"),
        (StepRef("a", type="sleep"), "sleep step 'a' (#1)"),
    ],
)
def test_a_step_not_in_the_history_is_named(ref: StepRef, message: str) -> None:
    """A restart from a step that is not in the history names the step and the instance."""
    steps = [_row("a", 0), _row("a", 1, count=2)]
    with pytest.raises(ValidationError) as caught:
        dropped_steps(steps, ref, "inst")
    assert message in caught.value.message
    assert "instance 'inst'" in caught.value.message
