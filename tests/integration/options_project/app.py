"""Workflows and routes of the step-options tests: sensitive outputs, delay functions,
RetryableError, the resolved ctx.config, workflow_name and typed outputs."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import attrs
from aiohttp import web

from durableflow import (
    RetryableError,
    StepConfigDict,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.web import ENV_KEY

routes = web.RouteTableDef()


def _record(path: str, line: str) -> None:
    # O_APPEND writes of one line survive a kill -9 of the host
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class SecretWorkflow(WorkflowEntrypoint[Any, Any]):
    """Fetches a token in a sensitive step, waits for "go", then uses the real token."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> dict[str, str]:
        seed = event.payload["seed"]

        async def fetch_token(ctx: StepContext) -> dict[str, str]:
            if ctx.attempt == 1:
                raise ConnectionError("vault sealed, try again")
            return {"token": f"tok_{seed}"}

        config: StepConfigDict = {"sensitive": "output", "retries": {"limit": 2, "delay": 0}}
        token = await step.do("fetch token", config, fetch_token)
        await step.wait_for_event("go", "go", timeout="1 hour")

        async def use() -> str:
            return str(token["token"]).upper()

        used = await step.do("use token", use)
        return {"used": used, "workflow": event.workflow_name}


class DelayFunctionWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step retried after the delay a function computes; the function logs its calls."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        calls = event.payload["calls"]
        mode = event.payload.get("mode", "ok")

        def delay_for(attempt: int, error: BaseException) -> str:
            _record(calls, f"{attempt} {type(error).__name__}")
            if mode == "broken":
                raise LookupError("no delay for this error")
            return str(event.payload["delay"])

        async def flaky(ctx: StepContext) -> dict[str, Any]:
            if ctx.attempt == 1 or mode == "broken":
                raise ConnectionError(f"attempt {ctx.attempt} failed")
            config = ctx.config
            return {
                "attempt": ctx.attempt,
                "retries": {
                    "limit": config.retries.limit,
                    "delay": config.retries.delay,
                    "backoff": config.retries.backoff,
                },
                "timeout": config.timeout.total_seconds(),
                "sensitive": config.sensitive,
            }

        async def plain(ctx: StepContext) -> dict[str, Any]:
            config = ctx.config
            assert isinstance(config.retries.delay, timedelta)
            return {
                "limit": config.retries.limit,
                "delay": config.retries.delay.total_seconds(),
                "backoff": config.retries.backoff,
                "timeout": config.timeout.total_seconds(),
            }

        defaults = await step.do("defaults", plain)
        result = await step.do("flaky", {"retries": {"delay": delay_for}}, flaky)
        return {"defaults": defaults, "flaky": result, "workflow": event.workflow_name}


class RetryAfterWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step that asks to be retried after a while with RetryableError."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> int:
        always = event.payload.get("always", False)
        retry_after = str(event.payload.get("retry_after", "1 s"))

        async def fetch(ctx: StepContext) -> int:
            if always or ctx.attempt == 1:
                raise RetryableError(f"HTTP 429 on attempt {ctx.attempt}", retry_after=retry_after)
            return ctx.attempt

        config: StepConfigDict = {"retries": {"limit": 1, "delay": "1 hour"}}
        return await step.do("fetch", config, fetch)


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class Receipt:
    order_id: str
    lines: list[Line]
    total: int


class ReceiptWorkflow(WorkflowEntrypoint[Any, Any]):
    """Returns an attrs class: bindings restore the output to it."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Receipt:
        async def price() -> int:
            return 42

        total = await step.do("price", price)
        await step.wait_for_event("paid", "paid", timeout="1 hour")
        return Receipt(event.payload["order_id"], [Line("A-1", 2)], total)


@routes.get("/receipts/{id}")
async def receipt(request: web.Request) -> web.Response:
    """The in-process binding's result() and status().output: their types and values."""
    env = request.config_dict[ENV_KEY]
    instance = await env.RECEIPTS.get(request.match_info["id"])
    result = await instance.result(timeout=10)
    status = await instance.status()
    return web.json_response(
        {
            "result_type": type(result).__name__,
            "line_type": type(result.lines[0]).__name__,
            "status_output_type": type(status.output).__name__,
            "equal": result == status.output,
            "total": result.total,
        }
    )
