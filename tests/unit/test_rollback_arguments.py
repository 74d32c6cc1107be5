"""``step.do``'s rollback arguments are checked by the SDK before the host sees the step."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from durableflow import ValidationError, WorkflowStep
from durableflow._step import StepRollback


class _Recorder(WorkflowStep):
    """A step object that records what the SDK hands the host."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, StepRollback | None]] = []

    def _do(
        self, name: str, config: Any, callback: Any, *, rollback: StepRollback | None = None
    ) -> Awaitable[Any]:
        self.calls.append((name, config, rollback))

        async def done() -> None:
            return None

        return done()

    async def _sleep(self, name: str, duration: Any, until: float | None) -> None:
        raise NotImplementedError

    async def _wait_for_event(
        self, name: str, type: str, timeout: Any, token: Any, payload_type: Any
    ) -> Any:
        raise NotImplementedError

    async def _create_webhook(self, name: str, verify: Any) -> Any:
        raise NotImplementedError

    async def _wait_webhook(self, webhook: Any, timeout: Any) -> Any:
        raise NotImplementedError

    async def _run_workflow(
        self, name: str, binding: Any, params: Any, id: str | None, timeout: Any, wait: bool
    ) -> Any:
        raise NotImplementedError


async def _work() -> int:
    return 1


async def _undo(ctx: Any) -> None:
    return None


async def test_both_forms_hand_the_rollback_to_the_host() -> None:
    """The call form and the decorator form pass the handler and its config on."""
    step = _Recorder()
    await step.do("a", _work, rollback=_undo)
    await step.do(
        "b", {"timeout": "1 minute"}, _work, rollback=_undo, rollback_config={"timeout": 5}
    )

    @step.do("c", rollback=_undo, rollback_config={"retries": {"limit": 1}})
    async def c() -> int:
        return 1

    await c()
    await step.do("d", _work)
    assert [(n, r) for n, _, r in step.calls] == [
        ("a", StepRollback(_undo, None)),
        ("b", StepRollback(_undo, {"timeout": 5})),
        ("c", StepRollback(_undo, {"retries": {"limit": 1}})),
        ("d", None),
    ]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rollback_config": {"timeout": 5}}, "rollback_config was given without rollback="),
        ({"rollback": "undo"}, "rollback must be an async callable"),
        (
            {"rollback": _undo, "rollback_config": 5},
            "rollback_config must be a StepConfig or a dict",
        ),
    ],
)
def test_bad_rollback_arguments_are_named(kwargs: dict[str, Any], fragment: str) -> None:
    """A rollback_config alone, a handler that is not callable or a config that is not one
    is a ValidationError saying which."""
    with pytest.raises(ValidationError, match=fragment):
        _pending = WorkflowStep.do(_Recorder(), "x", _work, **kwargs)  # raises at the call
