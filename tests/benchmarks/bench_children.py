"""Child workflows: a fan-out of N children gathered by one parent, and how fast a child's
end wakes its parent beside how fast an event wakes a waiting instance.

Run:  .venv/bin/python tests/benchmarks/bench_children.py [--children 1000] [--postgres DSN]

Prints, measured in this one run on this machine, on SQLite (one engine) and, with
``--postgres``, on PostgreSQL with two engines (two hosts: separate stores, connections and
host ids, in one process) sharing a fresh schema:
  * fan-out: a parent runs ``asyncio.gather`` over N ``step.run_workflow`` calls whose
    children do one no-op step each; the time from create to the parent's end, the time
    until the last child ended, and from the last child's end to the parent's wake-up
    (the parent's step for it resolved) and to the parent's end;
  * wake-up latency, median and 95th percentile over ``--rounds`` single children: the
    child's end to its parent's ``run_workflow`` step resolving, beside an event sent to an
    instance already suspended in ``wait_for_event`` to that wait resolving (both read off
    the stored times, which one clock writes). On PostgreSQL each pair is also counted by
    whether the parent woke on another host than the child's.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.base import Store, open_store


class Child(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def work() -> int:
            return int(event.payload["n"])

        return await step.do("work", work)


class FanOut(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        calls = [
            step.run_workflow(f"child-{i}", self.env.CHILD, params={"n": i})
            for i in range(event.payload["n"])
        ]
        return sum(await asyncio.gather(*calls))


class Waiter(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.wait_for_event("wait", "go", timeout="1 hour")
        return None


SPECS = [
    WorkflowSpec("fanout", FanOut, "FANOUT"),
    WorkflowSpec("child", Child, "CHILD"),
    WorkflowSpec("waiter", Waiter, "WAITER"),
]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _step(engine: Engine, workflow: str, id: str, name: str) -> Any:
    record = await engine.describe(workflow, id)
    return next(s for s in record.steps if s.name == name)


async def _fan_out(engines: list[Engine], n: int) -> None:
    engine = engines[0]
    t0 = time.time()
    [pid] = await engine.create("fanout", [(f"fan-{uuid.uuid4().hex[:8]}", {"n": n})])
    assert await engine.result("fanout", pid, 3600) == sum(range(n))
    record = await engine.describe("fanout", pid)
    children = record.children
    assert len(children) == n and {c.status for c in children} == {"complete"}
    ends: list[tuple[float, str]] = []
    for ref in children:
        child = await engine.store.get_instance("child", ref.id)
        assert child is not None and child.ended_at is not None
        ends.append((child.ended_at, ref.id))
    last_end, last_id = max(ends)
    woke = next(s for s in record.steps if (s.config or {}).get("id") == last_id)
    assert woke.ended_at is not None and record.instance.ended_at is not None
    print(
        f"  fan-out of {n}: parent done in {record.instance.ended_at - t0:.2f}s; last child "
        f"ended at {last_end - t0:.2f}s; parent woke {1000 * (woke.ended_at - last_end):.1f} ms "
        f"after it and ended {1000 * (record.instance.ended_at - last_end):.1f} ms after it"
    )


async def _latencies(engines: list[Engine], rounds: int) -> None:
    engine = engines[0]
    child_lat: list[float] = []
    event_lat: list[float] = []
    crossed: list[float] = []
    for r in range(rounds):
        # a single child, its parent waiting for it
        [pid] = await engine.create("fanout", [(f"one-{r}-{uuid.uuid4().hex[:6]}", {"n": 1})])
        await engine.result("fanout", pid, 60)
        record = await engine.describe("fanout", pid)
        [ref] = record.children
        child = await engine.store.get_instance("child", ref.id)
        step = record.steps[0]
        assert child is not None and child.ended_at is not None and step.ended_at is not None
        child_lat.append(step.ended_at - child.ended_at)
        if len(engines) > 1:
            work = await _step(engine, "child", ref.id, "work")
            if work.host != step.host:
                crossed.append(step.ended_at - child.ended_at)
        # an event to an instance suspended in wait_for_event
        [wid] = await engine.create("waiter", [(f"wait-{r}-{uuid.uuid4().hex[:6]}", None)])

        async def waiting(wid: str = wid) -> bool:
            return (await engine.status("waiter", wid)).status == "waiting"

        await engine.wait("waiter", wid, waiting, 60)
        sent = time.time()
        await engines[-1].send_event("waiter", wid, "go", None)
        await engine.result("waiter", wid, 60)
        wait = await _step(engine, "waiter", wid, "wait")
        assert wait.ended_at is not None
        event_lat.append(wait.ended_at - sent)

    def show(what: str, values: list[float]) -> None:
        print(
            f"  {what}: median {1000 * statistics.median(values):.1f} ms, "
            f"p95 {1000 * _pct(values, 0.95):.1f} ms over {len(values)}"
        )

    show("child end -> parent woken", child_lat)
    if crossed:
        show("  of which the parent woke on the other host", crossed)
    show("event sent -> wait resolved", event_lat)


async def _run(stores: list[Store], n: int, rounds: int) -> None:
    engines = [Engine(store, SPECS) for store in stores]
    for engine in engines:
        await engine.start()
    try:
        await _fan_out(engines, n)
        await _latencies(engines, rounds)
    finally:
        for engine in engines:
            await engine.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--postgres", metavar="DSN", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite (one engine), {args.children} children:")
        await _run([open_store(f"sqlite:///{Path(tmp) / 'state.db'}")], args.children, args.rounds)
    if args.postgres:
        import asyncpg

        schema = f"bench_children_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{sep}schema={schema}"
        print(f"PostgreSQL (two engines), {args.children} children:")
        try:
            await _run([open_store(url), open_store(url)], args.children, args.rounds)
        finally:
            conn = await asyncpg.connect(args.postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
