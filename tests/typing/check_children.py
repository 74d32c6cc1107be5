"""Typing cases for child workflows: step.run_workflow, step.start_workflow,
ChildWorkflowError and terminate(cascade=...)."""

from __future__ import annotations

from typing import Any, assert_type

import attrs

from durableflow import ChildWorkflowError, ErrorInfo, Workflow, WorkflowInstance, WorkflowStep

from ._models import Env, OrderParams, RefundParams


async def run_child(step: WorkflowStep, env: Env) -> None:
    # params are checked against the child binding's params type
    output = await step.run_workflow("refund", env.REFUNDS, params=RefundParams("ch_1"))
    # a binding typed Workflow[ParamsT] has the default output type, Any
    assert_type(output, Any)
    await step.run_workflow("timed", env.REFUNDS, params=RefundParams("x"), timeout="1 hour")
    await step.run_workflow("named", env.REFUNDS, params=RefundParams("x"), id="refund-1")
    assert_type(await step.start_workflow("go", env.ORDERS, params=OrderParams("o", 1)), str)


async def wrong_calls(step: WorkflowStep, env: Env) -> None:
    await step.run_workflow("refund", env.REFUNDS, params=OrderParams("o", 1))  # type: ignore[misc]
    await step.start_workflow("go", env.ORDERS, params=RefundParams("x"))  # type: ignore[misc]
    await step.run_workflow("refund", env.REFUNDS, RefundParams("x"))  # type: ignore[call-arg]
    await step.run_workflow("refund", env.REFUNDS, timeout=object())  # type: ignore[arg-type]


@attrs.frozen
class Receipt:
    amount: int


async def typed_child(step: WorkflowStep, refunds: Workflow[RefundParams, Receipt]) -> None:
    # the child's output type flows from Workflow[ParamsT, OutputT]
    receipt = await step.run_workflow("refund", refunds, params=RefundParams("ch_1"))
    assert_type(receipt, Receipt)
    await step.run_workflow("bad", refunds, params=OrderParams("o", 1))  # type: ignore[misc]


def child_error(exc: ChildWorkflowError) -> None:
    assert_type(exc.error, ErrorInfo)
    assert_type(exc.instance_id, str)
    assert_type(exc.status, str)
    assert_type(exc.error_name, str)


async def cascade(instance: WorkflowInstance) -> None:
    await instance.terminate(cascade=True)
    await instance.terminate()
    await instance.terminate(True)  # type: ignore[call-arg]
