"""A durableflow host on PostgreSQL, for the multi-host tests: runs until SIGTERM.

    python tests/integration/pg_host.py --dsn DSN --schema S --host-id H \
        [--lease-seconds 3] [--poll-interval 1] [--max-concurrency 256]

It runs an ``Engine`` on a ``PostgresStore`` with the workflows below, prints ``ready``
once it is scheduling, answers a ``stats`` line on stdin with one JSON line of store
counters, and on SIGTERM stops gracefully, prints ``stopped`` with the counters and exits 0.

Every step callback records one row in the ``effects`` table of the schema (the test
creates it): which step, of which instance and generation, ran on which host and when.
That is the side-effect log the tests check for steps that ran twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import asyncpg

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.postgres import PostgresStore

EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS effects (
    step_id text NOT NULL,
    instance text NOT NULL,
    name text NOT NULL,
    count integer NOT NULL,
    attempt integer NOT NULL,
    kind text NOT NULL,
    host text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_effects: list[Any] = []  # [asyncpg pool]
_host: list[str] = []


async def record(instance: str, ctx: StepContext, kind: str = "run") -> None:
    """Log one run of a step callback (a side effect, keyed by its step_id)."""
    await _effects[0].execute(
        "INSERT INTO effects (step_id, instance, name, count, attempt, kind, host)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ctx.step_id,
        instance,
        ctx.name,
        ctx.count,
        ctx.attempt,
        kind,
        _host[0],
    )


class Chain(WorkflowEntrypoint[Any, Any]):
    """``steps`` recorded steps with a ``sleep_ms`` sleep between each two."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        n = int(event.payload.get("steps", 3))
        sleep_ms = int(event.payload.get("sleep_ms", 100))
        done = 0
        for i in range(n):

            async def work(ctx: StepContext) -> int:
                await record(event.instance_id, ctx)
                return ctx.count

            done += await step.do("work", work)
            if i < n - 1:
                await step.sleep("pause", f"{sleep_ms} milliseconds")
        return done


class Slow(WorkflowEntrypoint[Any, Any]):
    """``steps`` steps of ``seconds`` each, recording when each starts and ends."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        n = int(event.payload.get("steps", 5))
        seconds = float(event.payload.get("seconds", 0.5))
        for _ in range(n):

            async def work(ctx: StepContext) -> str:
                await record(event.instance_id, ctx, "start")
                await asyncio.sleep(seconds)
                await record(event.instance_id, ctx, "end")
                return _host[0]

            await step.do("slow", work)
        return n


class Waiter(WorkflowEntrypoint[Any, Any]):
    """Holds its lease in a step for ``hold`` seconds, then waits for a ``go`` event."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        hold = float(event.payload.get("hold", 0))

        async def busy(ctx: StepContext) -> None:
            await record(event.instance_id, ctx, "start")
            await asyncio.sleep(hold)

        await step.do("busy", busy)
        got = await step.wait_for_event("go", "go", timeout="1 hour")

        async def received(ctx: StepContext) -> None:
            await record(event.instance_id, ctx, "received")

        await step.do("received", received)
        return got.payload


WORKFLOWS = [
    WorkflowSpec("chain", Chain, "CHAIN"),
    WorkflowSpec("slow", Slow, "SLOW"),
    WorkflowSpec("waiter", Waiter, "WAITER"),
]


async def serve(args: argparse.Namespace) -> dict[str, int]:
    store = PostgresStore(
        args.dsn,
        schema=args.schema,
        lease_seconds=args.lease_seconds,
        poll_interval=args.poll_interval,
        host_id=args.host_id,
    )
    _host[:] = [args.host_id]
    _effects[:] = [
        await asyncpg.create_pool(
            args.dsn, min_size=1, max_size=4, server_settings={"search_path": args.schema}
        )
    ]
    engine = Engine(store, WORKFLOWS, max_concurrency=args.max_concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: _command(store))
    await engine.start()
    print("ready", flush=True)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    await engine.stop(grace=2.0)
    await _effects[0].close()
    return store.stats


def _command(store: PostgresStore) -> None:
    line = sys.stdin.readline()
    if not line:  # the test closed our stdin; keep running until SIGTERM
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        return
    if line.strip() == "stats":
        print(json.dumps(store.stats), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--host-id", required=True)
    parser.add_argument("--lease-seconds", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--max-concurrency", type=int, default=256)
    args = parser.parse_args()
    stats = asyncio.run(serve(args))
    print("stopped " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
