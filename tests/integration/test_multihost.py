"""Several hosts on one PostgreSQL database: takeover, fencing, push, control, reconnection.

Hosts are real processes (``pg_host.py``) that can be killed, stopped and continued. The
test process runs one more engine, with no capacity of its own, as the host through which
instances are created, sent events and steered. Every step callback logs its run in an
``effects`` table, which is how the tests see a step that ran twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from durableflow import (
    StepContext,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.base import Lease, LeaseLost, NewInstance, StepRow
from durableflow_runtime.store.postgres import MIGRATIONS, PostgresStore, StoreUnavailableError
from tests.helpers import eventually

from .pg_host import EFFECTS_TABLE, WORKFLOWS
from .test_store_conformance import PG_DSN, drop_schema, require_pg

HOST_SCRIPT = Path(__file__).with_name("pg_host.py")


class Host:
    """One ``pg_host.py`` process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @classmethod
    async def start(
        cls, cluster: Cluster, name: str, *, lease: float = 3.0, poll: float = 1.0
    ) -> Host:
        log = cluster.tmp / f"{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HOST_SCRIPT),
                "--dsn",
                PG_DSN,
                "--schema",
                cluster.schema,
                "--host-id",
                name,
                "--lease-seconds",
                str(lease),
                "--poll-interval",
                str(poll),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        host = cls(name, proc, log)
        cluster.hosts.append(host)
        line = await host.readline(30)
        assert line == "ready", f"host {name} did not start: {line!r}\n{host.log_text()}"
        return host

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        return raw.decode().strip()

    async def stats(self) -> dict[str, int]:
        """The host's store counters, asked over its stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        result: dict[str, int] = json.loads(await self.readline(10))
        return result

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> dict[str, int]:
        """SIGTERM; the host must exit 0 and report its counters."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}"
        last = out.decode().strip().splitlines()[-1]
        assert last.startswith("stopped "), last
        result: dict[str, int] = json.loads(last.removeprefix("stopped "))
        return result


class Cluster:
    """A fresh schema, its hosts, and an in-process engine to drive them."""

    def __init__(self, schema: str, tmp: Path) -> None:
        self.schema = schema
        self.tmp = tmp
        self.hosts: list[Host] = []
        self.db: Any = None
        self.engine: Engine | None = None

    async def control_engine(self, *, poll: float = 1.0) -> Engine:
        """An engine on the same database that runs nothing itself (max_concurrency 0)."""
        store = PostgresStore(PG_DSN, schema=self.schema, lease_seconds=3.0, poll_interval=poll)
        self.engine = Engine(store, WORKFLOWS, max_concurrency=0)
        await self.engine.start()
        return self.engine

    async def scalar(self, sql: str, *args: Any) -> Any:
        return await self.db.fetchval(sql, *args)

    async def status_counts(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT status, count(*) FROM instances GROUP BY status")
        return {r[0]: r[1] for r in rows}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    await require_pg()
    schema = f"mh_{uuid.uuid4().hex[:12]}"
    db = await asyncpg.connect(PG_DSN)
    await db.execute(f'CREATE SCHEMA "{schema}"')
    await db.execute(f'SET search_path = "{schema}"')
    await db.execute(EFFECTS_TABLE)
    c = Cluster(schema, tmp_path)
    c.db = db
    try:
        yield c
    finally:
        if c.engine is not None:
            await c.engine.stop(grace=1.0)
        for host in c.hosts:
            if host.proc.returncode is None:
                host.proc.send_signal(signal.SIGCONT)
                host.proc.kill()
            await host.proc.communicate()
        await db.close()
        await drop_schema(schema)


async def finished(engine: Engine, workflow: str, id: str, timeout: float) -> Any:
    """The instance's output once it is complete.

    Polls: an engine hears of changes made by other hosts only when they concern it
    (pause, terminate, ...), not of another host completing an instance.
    """
    outcome: list[Any] = []

    async def ended() -> bool:
        st = await engine.status(workflow, id)
        if st.status in ("complete", "errored", "terminated"):
            outcome.append(st)
            return True
        return False

    await eventually(ended, timeout=timeout, message=f"{workflow}/{id} finishing", interval=0.02)
    assert outcome[0].status == "complete", outcome[0]
    return outcome[0].output


def _runs_by_step(rows: list[Any]) -> dict[str, list[Any]]:
    runs: dict[str, list[Any]] = {}
    for r in rows:
        runs.setdefault(r["step_id"], []).append(r)
    return runs


@pytest.mark.timeout(420)
async def test_thousand_instances_complete_when_a_host_is_killed(cluster: Cluster) -> None:
    """With one of two hosts killed mid-run and a third started later, all 1,000 instances
    complete and no step that was committed ever runs again."""
    engine = await cluster.control_engine()
    h1 = await Host.start(cluster, "h1")
    h2 = await Host.start(cluster, "h2")
    for batch in range(10):
        await engine.create(
            "chain",
            [(f"c{batch * 100 + n}", {"steps": 3, "sleep_ms": 300}) for n in range(100)],
        )

    async def h1_busy() -> bool:
        done = (await cluster.status_counts()).get("complete", 0)
        h1_runs = await cluster.scalar("SELECT count(*) FROM effects WHERE host = 'h1'")
        return bool(done >= 100 and h1_runs >= 100)

    await eventually(h1_busy, timeout=120, message="both hosts making progress")
    await h1.kill()
    killed_at = await cluster.scalar("SELECT clock_timestamp()")
    committed = {
        (r[0], r[1], r[2])
        for r in await cluster.db.fetch(
            "SELECT i.id, s.name, s.count FROM steps s JOIN instances i ON i.key = s.instance"
            " WHERE s.status = 'complete' AND s.type = 'do'"
        )
    }
    left_by_h1 = await cluster.scalar(
        "SELECT count(*) FROM instances WHERE owner = 'h1' AND status = 'running'"
    )
    h3 = await Host.start(cluster, "h3")

    async def all_complete() -> bool:
        return (await cluster.status_counts()).get("complete", 0) == 1000

    await eventually(
        all_complete, timeout=300, message="all 1,000 instances completing", interval=0.5
    )
    outputs = await cluster.db.fetch("SELECT DISTINCT output FROM instances")
    assert [r[0] for r in outputs] == ["6"]  # 1 + 2 + 3 from the three steps

    effects = await cluster.db.fetch("SELECT * FROM effects WHERE kind = 'run'")
    runs = _runs_by_step(effects)
    assert len(runs) == 3000, "every step ran"
    for step_id, step_runs in runs.items():
        survivors = [r for r in step_runs if r["host"] != "h1"]
        assert len(survivors) <= 1, f"step {step_id} ran twice on live hosts: {step_runs}"
        if len(step_runs) > 1:
            assert any(r["host"] == "h1" for r in step_runs), step_runs
        key = (step_runs[0]["instance"], step_runs[0]["name"], step_runs[0]["count"])
        if key in committed:
            rerun = [r for r in step_runs if r["at"] > killed_at]
            assert not rerun, f"committed step {key} ran again after the kill: {rerun}"
    repeated = [s for s, r in runs.items() if len(r) > 1]
    assert len(repeated) <= 256, "only steps in flight on the killed host may run again"
    taken_over = await cluster.scalar(
        "SELECT count(DISTINCT e.instance) FROM effects e WHERE e.host IN ('h2', 'h3')"
        " AND e.at > $1 AND EXISTS (SELECT 1 FROM effects f WHERE f.instance = e.instance"
        " AND f.host = 'h1')",
        killed_at,
    )
    assert left_by_h1 == 0 or taken_over > 0, "the killed host's instances were taken over"
    # both stop cleanly; h2 did the work. h3 may find none left: the sleeps (300 ms) are
    # held in memory by the host that ran the step before them (the look-ahead), so
    # after the kill only h1's expired leases are free, and h2, with room for all of
    # them, often takes every one first
    h2_stats, _ = await h2.stop(), await h3.stop()
    assert h2_stats["batches"] > 0


@pytest.mark.timeout(180)
async def test_stalled_host_commits_nothing_after_takeover(cluster: Cluster) -> None:
    """A host stopped past its lease and then continued is fenced: every write it tries
    for instances another host took over is refused, and the stored history is unchanged."""
    engine = await cluster.control_engine()
    h1 = await Host.start(cluster, "h1", lease=2.0, poll=0.5)
    await engine.create("slow", [(f"s{n}", {"steps": 6, "seconds": 0.4}) for n in range(10)])

    async def h1_runs_all() -> bool:
        started = await cluster.scalar(
            "SELECT count(DISTINCT instance) FROM effects WHERE host = 'h1' AND kind = 'start'"
        )
        return bool(started == 10)

    await eventually(h1_runs_all, timeout=30, message="h1 running all ten instances")
    h1.signal(signal.SIGSTOP)
    h2 = await Host.start(cluster, "h2", lease=2.0, poll=0.5)

    async def h2_finished() -> bool:
        return (await cluster.status_counts()).get("complete", 0) == 10

    await eventually(h2_finished, timeout=60, message="h2 finishing what h1 left")
    steps_sql = "SELECT * FROM steps ORDER BY instance, name, count"
    before = [dict(r) for r in await cluster.db.fetch(steps_sql)]
    instances_before = [dict(r) for r in await cluster.db.fetch("SELECT * FROM instances")]
    assert {r["host"] for r in before if r["count"] == 6} == {"h2"}

    h1.signal(signal.SIGCONT)

    async def h1_was_refused() -> bool:
        stats = await h1.stats()
        return stats["fenced"] + stats["leases_lost"] > 0

    await eventually(h1_was_refused, timeout=20, message="h1 noticing it lost its leases")
    await h1.stop()  # everything h1 had queued has been tried by now
    after = [dict(r) for r in await cluster.db.fetch(steps_sql)]
    assert after == before, "the stalled host changed a step after the takeover"
    assert [dict(r) for r in await cluster.db.fetch("SELECT * FROM instances")] == (
        instances_before
    )
    await h2.stop()


@pytest.mark.timeout(120)
async def test_event_reaches_an_instance_on_another_host_promptly(cluster: Cluster) -> None:
    """Events sent through one host reach instances run by another in well under the poll
    interval, whether the instance waits suspended or is leased in a step at the time."""
    engine = await cluster.control_engine(poll=30.0)
    await Host.start(cluster, "h2", lease=10.0, poll=30.0)

    # suspended in wait_for_event: the event's NOTIFY wakes it
    start = time.monotonic()
    await engine.create("waiter", [("w1", {"hold": 0})])

    async def waiting() -> bool:
        return (await engine.status("waiter", "w1")).status == "waiting"

    await eventually(waiting, timeout=10, message="w1 waiting for its event")
    assert time.monotonic() - start < 3.0, "creation reached the other host by notification"
    sent = time.monotonic()
    await engine.send_event("waiter", "w1", "go", "hello")
    assert await finished(engine, "waiter", "w1", 10) == "hello"
    assert time.monotonic() - sent < 3.0

    # leased by h2 inside a step: the event is kept and taken as soon as the wait is reached
    await engine.create("waiter", [("w2", {"hold": 1.0})])

    async def busy() -> bool:
        owner = await cluster.scalar(
            "SELECT owner FROM instances WHERE id = 'w2' AND status = 'running'"
        )
        started = await cluster.scalar(
            "SELECT count(*) FROM effects WHERE instance = 'w2' AND kind = 'start'"
        )
        return bool(owner == "h2" and started == 1)

    await eventually(busy, timeout=10, message="w2 running its busy step on h2")
    sent = time.monotonic()
    await engine.send_event("waiter", "w2", "go", "hello2")
    assert await finished(engine, "waiter", "w2", 10) == "hello2"
    assert time.monotonic() - sent < 1.0 + 3.0


@pytest.mark.timeout(120)
async def test_pause_resume_terminate_restart_across_hosts(cluster: Cluster) -> None:
    """Pause, resume, terminate and restart issued through one host's engine take effect on
    the instance another host is running, without waiting for a poll."""
    engine = await cluster.control_engine(poll=30.0)
    await Host.start(cluster, "h2", lease=10.0, poll=30.0)

    async def started(id: str, n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            got = await cluster.scalar(
                "SELECT count(*) FROM effects WHERE instance = $1 AND kind = 'start'", id
            )
            return bool(got >= n)

        return check

    # pause: the step in flight finishes, no further step starts, then resume completes it
    await engine.create("slow", [("p", {"steps": 3, "seconds": 1.0})])
    await eventually(await started("p", 1), timeout=10, message="p's first step starting")
    assert await engine.control("slow", "p", "pause") == "waitingForPause"

    async def paused() -> bool:
        return (await engine.status("slow", "p")).status == "paused"

    await eventually(paused, timeout=5, message="p pausing on the other host")
    starts = await cluster.scalar(
        "SELECT count(*) FROM effects WHERE instance = 'p' AND kind = 'start'"
    )
    assert await engine.control("slow", "p", "resume") == "queued"
    assert await finished(engine, "slow", "p", 15) == 3
    total = await cluster.scalar(
        "SELECT count(*) FROM effects WHERE instance = 'p' AND kind = 'start'"
    )
    assert (starts, total) == (1, 3)

    # terminate: the activation on h2 is cancelled mid-step
    await engine.create("slow", [("t", {"steps": 3, "seconds": 1.5})])
    await eventually(await started("t", 1), timeout=10, message="t's first step starting")
    assert await engine.control("slow", "t", "terminate") == "terminated"
    # a witness that runs longer than t's step would have: when it is done, t's step
    # would have ended too, had it not been cancelled
    await engine.create("slow", [("witness", {"steps": 1, "seconds": 2.0})])
    assert await finished(engine, "slow", "witness", 15) == 1
    t_effects = await cluster.db.fetch("SELECT kind FROM effects WHERE instance = 't'")
    assert [r[0] for r in t_effects] == ["start"]
    assert (await engine.status("slow", "t")).status == "terminated"

    # restart: h2 drops the running activation and runs the instance again from scratch
    await engine.create("slow", [("r", {"steps": 2, "seconds": 1.0})])
    await eventually(await started("r", 1), timeout=10, message="r's first step starting")
    assert await engine.control("slow", "r", "restart") == "queued"
    assert await finished(engine, "slow", "r", 15) == 2
    r_effects = await cluster.db.fetch(
        "SELECT step_id, name, count, kind FROM effects WHERE instance = 'r' ORDER BY at"
    )
    first_ids = {r["step_id"] for r in r_effects if (r["name"], r["count"]) == ("slow", 1)}
    assert len(first_ids) == 2, "the restarted run's step has a new step_id"
    cut = r_effects[0]["step_id"]
    assert [r["kind"] for r in r_effects if r["step_id"] == cut] == ["start"]


class Steps(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        total = 0
        for _ in range(4):

            async def one(ctx: StepContext) -> int:
                await asyncio.sleep(0.05)
                return ctx.count

            total += await step.do("one", one)
            await step.sleep("gap", "50 milliseconds")
        got = await step.wait_for_event("final", "go", timeout="1 hour")
        return [total, got.payload]


@pytest.mark.timeout(180)
async def test_host_rides_out_its_connections_being_killed(cluster: Cluster) -> None:
    """When the server drops every connection of a host, mid-transaction or idle, the host
    reconnects, re-listens, and finishes every instance with nothing acknowledged lost."""
    spec = [WorkflowSpec("steps", Steps)]
    store = PostgresStore(
        PG_DSN, schema=cluster.schema, lease_seconds=2.0, poll_interval=30.0, host_id="worker"
    )
    worker = Engine(store, spec)
    sender = Engine(
        PostgresStore(PG_DSN, schema=cluster.schema, poll_interval=30.0, host_id="sender"),
        spec,
        max_concurrency=0,
    )
    await worker.start()
    await sender.start()
    try:
        ids = [f"k{n}" for n in range(60)]
        await sender.create("steps", [(id, None) for id in ids])
        for threshold in (20, 80, 160):

            async def progressed(threshold: int = threshold) -> bool:
                done = await cluster.scalar(
                    "SELECT count(*) FROM steps WHERE status = 'complete' AND name = 'one'"
                )
                return bool(done >= threshold)

            await eventually(progressed, timeout=60, message=f"{threshold} steps done")
            killed = await cluster.scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'durableflow:worker'"
            )
            assert killed >= 1

        async def all_waiting() -> bool:
            return (await cluster.status_counts()).get("waiting", 0) == len(ids) and bool(
                await cluster.scalar(
                    "SELECT count(*) = 240 FROM steps WHERE status = 'complete' AND name = 'one'"
                )
            )

        await eventually(all_waiting, timeout=90, message="every instance reaching its wait")

        async def listening() -> bool:
            return bool(
                await cluster.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'durableflow:worker' AND query LIKE 'LISTEN%'"
                )
            )

        await eventually(listening, timeout=10, message="the worker listening again")
        sent = time.monotonic()
        for id in ids:
            await sender.send_event("steps", id, "go", id)

        async def all_complete() -> bool:
            return (await cluster.status_counts()).get("complete", 0) == len(ids)

        await eventually(all_complete, timeout=30, message="every instance completing")
        assert time.monotonic() - sent < 10, "events were pushed, not found by a 30 s poll"
        for id in ids:
            assert (await sender.status("steps", id)).output == [10, id]
            steps = (await sender.describe("steps", id)).steps
            assert [s.name for s in steps] == ["one", "gap"] * 4 + ["final"]
        assert store.stats["retries"] + store.stats["leases_lost"] > 0
    finally:
        await sender.stop()
        await worker.stop()


# --- the store's own coordination, two store objects in one process -------------------------

T0 = 1_800_000_000.0


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    await require_pg()
    name = f"ps_{uuid.uuid4().hex[:12]}"
    yield name
    await drop_schema(name)


async def test_hosts_starting_together_migrate_once(schema: str) -> None:
    """Stores opened at the same moment on a new schema apply the migrations exactly once."""
    stores = [PostgresStore(PG_DSN, schema=schema, host_id=f"h{n}") for n in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        await conn.close()
        assert [r[0] for r in versions] == list(range(1, len(MIGRATIONS) + 1))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@contextlib.asynccontextmanager
async def _two_stores(schema: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore, Any]]:
    """Stores of hosts "a" and "b" (1 s leases) on ``schema``, and a connection to it."""
    a = PostgresStore(PG_DSN, schema=schema, lease_seconds=1.0, host_id="a")
    b = PostgresStore(PG_DSN, schema=schema, lease_seconds=1.0, host_id="b")
    await a.open()
    await b.open()
    db = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        yield a, b, db
    finally:
        await db.close()
        await a.close()
        await b.close()


async def _frozen_then_taken_over(a: PostgresStore, b: PostgresStore, now: float) -> list[Lease]:
    """Stop ``a`` renewing its leases (as if its process froze); what ``b`` claims once
    they expire."""
    for task in a._tasks:
        if task.get_name() == "durableflow-pg-leases":
            task.cancel()
    taken: list[Lease] = []

    async def b_took_over() -> bool:
        taken.extend(await b.claim(now, 10))
        return bool(taken)

    await eventually(b_took_over, timeout=10, message="b claiming the expired lease")
    return taken


async def test_renewed_lease_holds_and_an_abandoned_one_is_taken_over(schema: str) -> None:
    """A live holder keeps renewing its lease past lease_seconds; once it stops, another
    host claims the instance and the first holder's writes are fenced."""
    async with _two_stores(schema) as (a, b, db):
        await a.create_instances([NewInstance("wf", "x", None, T0)])
        [lease] = await a.claim(T0, 10)
        first_expiry = await db.fetchval("SELECT lease_expires FROM instances")

        async def renewed_past_first_expiry() -> bool:
            row = await db.fetchrow("SELECT lease_expires, now() AS now FROM instances")
            assert row is not None
            return bool(row["now"] > first_expiry and row["lease_expires"] > row["now"])

        await eventually(renewed_past_first_expiry, timeout=10, message="a renewing its lease")
        assert await b.claim(T0 + 1, 10) == []
        await a.put_step(lease, StepRow("s", 1, 0, "do", "complete", output=b"1"))

        # a stops renewing (as if its process froze): b takes over once the lease expires
        taken = await _frozen_then_taken_over(a, b, T0 + 2)
        assert taken[0].epoch == lease.epoch + 1
        assert await db.fetchval("SELECT owner FROM instances") == "b"
        with pytest.raises(LeaseLost):
            await a.put_step(lease, StepRow("s", 2, 1, "do", "complete", output=b"2"))
        with pytest.raises(LeaseLost):
            await a.finish(lease, "complete", None, None, T0 + 3)
        steps = await b.load_steps(taken[0].key)
        assert [(s.name, s.count) for s in steps] == [("s", 1)]
        assert await b.step_hosts(taken[0].key) == {("s", 1): "a"}
        await b.put_step(taken[0], StepRow("s", 2, 1, "do", "complete", output=b"2"))
        assert await b.step_hosts(taken[0].key) == {("s", 1): "a", ("s", 2): "b"}


async def test_a_create_claims_its_instance_only_when_nothing_is_due(schema: str) -> None:
    """A create on a store with nothing due claims its instance for the creating host in
    the same statement (running, a lease the host renews and another host cannot take);
    with an instance due it only queues, so the claim takes the older one first; and a
    lease taken by a create is taken over like any other once it expires."""
    async with _two_stores(schema) as (a, b, db):
        [work] = await a.create_and_claim([NewInstance("wf", "x", b"{}", T0)], T0)
        assert (work.lease.id, work.lease.epoch, work.row.status, work.steps) == (
            "x",
            1,
            "running",
            [],
        )
        row = await db.fetchrow("SELECT owner, run_at, started_at FROM instances")
        assert row is not None and (row["owner"], row["run_at"], row["started_at"]) == (
            "a",
            None,
            T0,
        )
        await asyncio.sleep(1.5)  # past the first lease: a renews it
        assert await b.claim(T0 + 2, 10) == []
        await a.put_step(work.lease, StepRow("s", 1, 0, "do", "complete", output=b"1"))

        await a.create_instances([NewInstance("wf", "y", b"{}", T0 + 3)])  # due at T0 + 3
        assert await a.create_and_claim([NewInstance("wf", "z", b"{}", T0 + 4)], T0 + 4) == []
        assert [lease.id for lease in await b.claim(T0 + 5, 1)] == ["y"]  # the older first
        assert [lease.id for lease in await b.claim(T0 + 5, 1)] == ["z"]

        taken = await _frozen_then_taken_over(a, b, T0 + 6)
        assert (taken[0].id, taken[0].epoch) == ("x", 2)
        with pytest.raises(LeaseLost):
            await a.finish(work.lease, "complete", None, None, T0 + 7)


async def test_a_busy_instance_keeps_its_lease(schema: str) -> None:
    """An instance writing steps back to back keeps its lease well past lease_seconds:
    renewal never loses to the host's own writes holding the row."""
    a = PostgresStore(PG_DSN, schema=schema, lease_seconds=1.0, host_id="a")
    b = PostgresStore(PG_DSN, schema=schema, lease_seconds=1.0, host_id="b")
    await a.open()
    await b.open()
    try:
        await a.create_instances([NewInstance("wf", "busy", None, T0)])
        [lease] = await a.claim(T0, 1)
        until = time.monotonic() + 4.0
        n = 0
        while time.monotonic() < until:
            fired = [
                a.put_step(lease, StepRow("s", n + k, n + k, "do", "running")) for k in range(5)
            ]
            await asyncio.gather(*fired)
            n += 5
            assert await b.claim(T0 + 1, 10) == []
        row = await b.get_instance("wf", "busy")
        assert row is not None and row.epoch == lease.epoch and row.status == "running"
        assert a.stats["leases_lost"] == 0
    finally:
        await a.close()
        await b.close()


async def test_other_hosts_are_notified_and_a_host_hears_only_others(schema: str) -> None:
    """Creation, a waking event and control reach the other hosts' subscribers by
    notification; a host is not told about its own changes."""
    a = PostgresStore(PG_DSN, schema=schema, poll_interval=60.0, host_id="a")
    b = PostgresStore(PG_DSN, schema=schema, poll_interval=60.0, host_id="b")
    await a.open()
    await b.open()
    heard: dict[str, list[tuple[str, str, str]]] = {"a": [], "b": []}
    a.subscribe(lambda *m: heard["a"].append(m))
    b.subscribe(lambda *m: heard["b"].append(m))
    try:

        def b_heard(message: tuple[str, str, str]) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return message in heard["b"]

            return check

        await a.create_instances([NewInstance("wf", "x", None, T0)])
        await eventually(b_heard(("wf", "x", "create")), timeout=5, message="create notice")
        [lease] = await a.claim(T0, 1)
        await a.suspend(lease, T0 + 100, ["go"], T0)
        await a.send_event("wf", "x", "go", None, T0 + 1)
        await eventually(b_heard(("wf", "x", "wake")), timeout=5, message="wake notice")
        for action in ("pause", "resume", "restart", "terminate"):
            await a.control("wf", "x", action, T0 + 2)
            await eventually(b_heard(("wf", "x", action)), timeout=5, message=f"{action} notice")
        assert heard["a"] == []
    finally:
        await a.close()
        await b.close()


async def test_closing_hands_over_leases_at_once(schema: str) -> None:
    """A host that closes with instances still leased (activations cut off by a shutdown)
    releases them, so another host claims them without waiting for the lease to expire."""
    a = PostgresStore(PG_DSN, schema=schema, lease_seconds=60.0, host_id="a")
    b = PostgresStore(PG_DSN, schema=schema, lease_seconds=60.0, host_id="b")
    await a.open()
    await b.open()
    try:
        await a.create_instances([NewInstance("wf", f"x{n}", None, T0) for n in range(3)])
        held = await a.claim(T0, 10)
        assert len(held) == 3
        await a.close()
        taken = await b.claim(T0 + 1, 10)
        assert sorted(lease.id for lease in taken) == ["x0", "x1", "x2"]
    finally:
        await b.close()


def test_url_options_and_errors() -> None:
    """Store options ride on the URL; bad ones are errors naming the option."""
    store = PostgresStore(
        "postgresql://u:pw@db:5433/app?schema=flows&lease_seconds=20&poll_interval=5"
        "&pool_size=4&sslmode=disable"
    )
    assert (store.schema, store.lease_seconds, store.poll_interval, store.pool_size) == (
        "flows",
        20.0,
        5.0,
        4,
    )
    assert "pw" not in repr(store)
    assert "sslmode=disable" in store._dsn and "schema" not in store._dsn
    with pytest.raises(ValidationError, match="lease_seconds"):
        PostgresStore("postgresql://db/app?lease_seconds=0")
    with pytest.raises(ValidationError, match="pool_size"):
        PostgresStore("postgresql://db/app", pool_size=1)
    with pytest.raises(ValidationError, match="schema"):
        PostgresStore("postgresql://db/app", schema="x; DROP TABLE y")
    with pytest.raises(ValidationError, match="PostgreSQL url"):
        PostgresStore("sqlite:///x.db")


async def test_unreachable_server_is_a_clear_error() -> None:
    """Opening a store on a server that does not answer names the address, not the password."""
    store = PostgresStore("postgresql://u:secret@127.0.0.1:9/app")
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9/app") as info:
        await store.open()
    assert "secret" not in str(info.value)


async def _all_started(cluster: Cluster, count: int) -> None:
    async def started() -> bool:
        found = await cluster.scalar(
            "SELECT count(DISTINCT instance) FROM effects WHERE kind = 'start'"
        )
        return bool(found == count)

    await eventually(started, timeout=30, message=f"{count} instances running")


async def _all_complete(cluster: Cluster, count: int) -> None:
    async def complete() -> bool:
        return (await cluster.status_counts()).get("complete", 0) == count

    # 40 s: well inside the 60 s the tests' leases would otherwise hold the instances
    await eventually(complete, timeout=40, message=f"{count} instances complete")


@pytest.mark.timeout(180)
async def test_restarted_host_takes_back_its_leases_at_once(cluster: Cluster) -> None:
    """A host killed with -9 and started again under the same host id resumes its
    instances at once, long before its leases (60 s here) would have expired."""
    engine = await cluster.control_engine()
    h1 = await Host.start(cluster, "stable", lease=60.0, poll=0.5)
    await engine.create("slow", [(f"r{n}", {"steps": 4, "seconds": 0.3}) for n in range(5)])

    await _all_started(cluster, 5)
    await h1.kill()
    leased = await cluster.scalar(
        "SELECT count(*) FROM instances WHERE owner = 'stable' AND lease_expires > now()"
    )
    assert leased > 0, "the killed host held no lease: the test shows nothing"
    h1 = await Host.start(cluster, "stable", lease=60.0, poll=0.5)

    await _all_complete(cluster, 5)
    stats = await h1.stop()
    assert stats["leases_taken_back"] > 0, stats


@pytest.mark.timeout(180)
async def test_two_processes_with_one_host_id_are_fenced(cluster: Cluster) -> None:
    """A second process started under a host id that a live (stalled) process still uses
    takes its leases over at once; the older process, continued, writes nothing more for
    them, notices it was superseded and stops claiming."""
    engine = await cluster.control_engine()
    old = await Host.start(cluster, "dup", lease=60.0, poll=0.5)
    await engine.create("slow", [(f"d{n}", {"steps": 6, "seconds": 0.4}) for n in range(5)])

    await _all_started(cluster, 5)
    old.signal(signal.SIGSTOP)
    new = await Host.start(cluster, "dup", lease=60.0, poll=0.5)

    await _all_complete(cluster, 5)
    steps_sql = "SELECT * FROM steps ORDER BY instance, name, count"
    before = [dict(r) for r in await cluster.db.fetch(steps_sql)]
    instances_before = [dict(r) for r in await cluster.db.fetch("SELECT * FROM instances")]

    old.signal(signal.SIGCONT)

    async def old_superseded() -> bool:
        return (await old.stats())["superseded"] == 1

    await eventually(old_superseded, timeout=60, message="the old process noticing")
    await engine.create("slow", [("later", {"steps": 1, "seconds": 0})])
    await finished(engine, "slow", "later", timeout=30)
    old_stats = await old.stop()
    assert old_stats["fenced"] + old_stats["leases_lost"] > 0, old_stats
    after = [dict(r) for r in await cluster.db.fetch(steps_sql)]
    assert [r for r in after if r["instance"] in {i["key"] for i in instances_before}] == before
    assert [
        dict(r) for r in await cluster.db.fetch("SELECT * FROM instances WHERE id <> 'later'")
    ] == instances_before
    await new.stop()
