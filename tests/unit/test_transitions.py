"""The state rules both stores share."""

from __future__ import annotations

import pytest

from durableflow import InvalidTransitionError
from durableflow._types import STATUSES
from durableflow_runtime.store.transitions import (
    FINAL_STATUSES,
    Transition,
    control_transition,
    numbered,
)


def test_every_status_and_action_has_a_rule():
    """Each (status, action) either transitions or is refused naming the status."""
    for status in STATUSES:
        for action in ("pause", "resume", "terminate", "restart"):
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


def test_numbered_placeholders():
    """'?' placeholders become $1, $2, ... in order."""
    assert numbered("UPDATE t SET a = ?, b = ? WHERE k = ?") == (
        "UPDATE t SET a = $1, b = $2 WHERE k = $3"
    )
