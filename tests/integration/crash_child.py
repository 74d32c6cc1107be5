"""A host process for the crash test: an engine on a SQLite file, killed with SIGKILL.

Usage: python crash_child.py DB LOG [CREATE_COUNT]
Creates CREATE_COUNT instances (printing "created ID" after each create returns), then
runs until killed or until every instance has ended (printing "all done").
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.sqlite import SqliteStore

LOG_FD = -1


class Chain(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        total = 0
        for i in range(6):

            async def work(ctx: StepContext, i: int = i) -> int:
                # one line per execution of a callback; O_APPEND writes survive SIGKILL
                os.write(LOG_FD, f"{event.instance_id} {ctx.name}\n".encode())
                await asyncio.sleep(0.002)
                return i

            total += await step.do(f"step-{i}", work)
            if i == 2:
                await step.sleep("nap", "300 ms")
        return total


async def main() -> None:
    global LOG_FD
    db, log = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    LOG_FD = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    engine = Engine(SqliteStore(db), [WorkflowSpec("chain", Chain)], max_concurrency=40)
    await engine.start()
    for n in range(count):
        [iid] = await engine.create("chain", [(f"i{n}", None)])
        print(f"created {iid}", flush=True)
    while True:
        items, _ = await engine.list_instances("chain", limit=1000)
        if items and all(i.status == "complete" for i in items):
            print("all done", flush=True)
            break
        await asyncio.sleep(0.05)
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
