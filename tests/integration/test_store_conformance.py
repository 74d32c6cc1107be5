"""One description of store behaviour, run against every store: SQLite and PostgreSQL.

PostgreSQL comes from ``DURABLEFLOW_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each test gets a fresh schema. When no
server answers, the PostgreSQL cases are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import pytest

from durableflow import (
    InstanceExistsError,
    InvalidTransitionError,
    NotFoundError,
    StepRef,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow_runtime.engine import Engine, WorkflowSpec
from durableflow_runtime.store.base import (
    EventRow,
    FlowLimits,
    HookRow,
    InstanceRef,
    Lease,
    LeaseLost,
    NewInstance,
    StepRow,
    StepStatus,
    Store,
    child_event_type,
)
from durableflow_runtime.store.postgres import MIGRATIONS as PG_MIGRATIONS
from durableflow_runtime.store.postgres import PostgresStore
from durableflow_runtime.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from durableflow_runtime.store.sqlite import SqliteStore
from tests.helpers import eventually

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_800_000_000.0  # a fixed "now" for store-level tests

_pg_state: dict[str, str | None] = {}


async def pg_unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used for tests, or ``None`` when it answers."""
    if "reason" not in _pg_state:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=5)
            await conn.close()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"no PostgreSQL at {PG_DSN} ({type(exc).__name__}: {exc})"
    return _pg_state["reason"]


async def require_pg() -> None:
    """Skip the test when PostgreSQL is down, or fail it under CI."""
    reason = await pg_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires PostgreSQL (set DURABLEFLOW_TEST_PG_DSN)")
    pytest.skip(f"{reason}; set DURABLEFLOW_TEST_PG_DSN or start PostgreSQL to run these")


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[StoreFactory]:
    """A factory of store objects on one fresh database (a new object per call, same data)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        await require_pg()

        def factory() -> Store:
            return PostgresStore(PG_DSN, schema=schema, lease_seconds=5.0, poll_interval=0.5)
    else:

        def factory() -> Store:
            return SqliteStore(tmp_path / "state.db")

    yield factory
    if request.param == "postgres":
        await drop_schema(schema)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    """An open store on a fresh database."""
    s = make_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def create(store: Store, *ids: str, at: float = T0, workflow: str = "wf") -> None:
    await store.create_instances(
        [NewInstance(workflow, i, f'{{"n": {n}}}'.encode(), at + n) for n, i in enumerate(ids)]
    )


async def running(store: Store, id: str = "a", at: float = T0) -> Lease:
    """Create one instance and claim it."""
    await create(store, id, at=at)
    [lease] = await store.claim(at + 1, 10)
    assert lease.id == id
    return lease


def step(name: str, seq: int, status: StepStatus = "running", **fields: Any) -> StepRow:
    return StepRow(
        name=name, count=1, seq=seq, type=fields.pop("type", "do"), status=status, **fields
    )


# --- instances --------------------------------------------------------------------------


async def test_the_creators_trace_context_is_stored_and_claimed(store: Store) -> None:
    """A creator's traceparent is kept with the instance and comes back with its claim, so
    its first activation's span has that parent on any host and after a restart."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await store.create_instances([NewInstance("wf", "t", None, T0, trace=parent)])
    row = await store.get_instance("wf", "t")
    assert row is not None and row.trace == parent
    [work] = await store.claim_work(T0 + 1, 10)
    assert work.row.trace == parent
    await create(store, "plain")
    plain = await store.get_instance("wf", "plain")
    assert plain is not None and plain.trace is None


async def test_create_then_get_returns_the_stored_row(store: Store) -> None:
    """A created instance is queued, runnable at its creation time, with its params."""
    await create(store, "a")
    row = await store.get_instance("wf", "a")
    assert row is not None
    assert (row.workflow, row.id, row.status) == ("wf", "a", "queued")
    assert row.params == b'{"n": 0}'
    assert row.run_at == T0 and row.created_at == T0
    assert (row.epoch, row.generation, row.pause_requested) == (0, 0, False)
    assert row.output is None and row.error is None and row.started_at is None
    assert await store.get_instance("wf", "missing") is None
    assert await store.get_instance("other", "a") is None


async def test_list_is_newest_first_with_cursor_and_status_filter(store: Store) -> None:
    """Listing pages newest first by cursor and filters by status."""
    await create(store, "a", "b", "c", "d")
    await store.control("wf", "b", "pause", T0)
    rows = await store.list_instances("wf", status=None, limit=10, cursor=None)
    assert [r.id for r in rows] == ["d", "c", "b", "a"]
    first = await store.list_instances("wf", status=None, limit=2, cursor=None)
    assert [r.id for r in first] == ["d", "c"]
    rest = await store.list_instances("wf", status=None, limit=2, cursor=first[-1].key)
    assert [r.id for r in rest] == ["b", "a"]
    queued = await store.list_instances("wf", status="queued", limit=10, cursor=None)
    assert [r.id for r in queued] == ["d", "c", "a"]
    paged = await store.list_instances("wf", status="queued", limit=10, cursor=rows[1].key)
    assert [r.id for r in paged] == ["a"]
    assert await store.list_instances("other", status=None, limit=10, cursor=None) == []


async def test_list_filters_by_id_prefix_literally(store: Store) -> None:
    """An id prefix matches from the start, case-sensitively, with % and _ taken literally."""
    await create(store, "a_1", "ab1", "A_2", "xa_1", "a_", "a-1")

    async def ids(prefix: str, **filters: Any) -> list[str]:
        rows = await store.list_instances(
            "wf", status=None, limit=10, cursor=None, id_prefix=prefix, **filters
        )
        return [r.id for r in rows]

    assert await ids("a_") == ["a_", "a_1"]
    assert await ids("a") == ["a-1", "a_", "ab1", "a_1"]
    assert await ids("A") == ["A_2"]
    assert await ids("%") == [] and await ids("_") == [] and await ids("\\") == []
    assert await ids("a_1") == ["a_1"]
    assert await ids("a", created_after=T0 + 1) == ["a-1", "a_", "ab1"]


async def test_list_filters_by_created_range(store: Store) -> None:
    """created_after is inclusive, created_before exclusive, and both combine with paging."""
    await create(store, "a", "b", "c", "d", "e")  # created at T0, T0 + 1, ... T0 + 4

    async def ids(**filters: Any) -> list[str]:
        rows = await store.list_instances("wf", limit=10, **{"status": None, **filters})
        return [r.id for r in rows]

    assert await ids(cursor=None, created_after=T0 + 1) == ["e", "d", "c", "b"]
    assert await ids(cursor=None, created_before=T0 + 3) == ["c", "b", "a"]
    assert await ids(cursor=None, created_after=T0 + 1, created_before=T0 + 3) == ["c", "b"]
    assert await ids(cursor=None, created_after=T0 + 10) == []
    [first] = await store.list_instances(
        "wf", status=None, limit=1, cursor=None, created_before=T0 + 3
    )
    rest = await ids(cursor=first.key, created_before=T0 + 3)
    assert (first.id, rest) == ("c", ["b", "a"])
    await store.control("wf", "b", "pause", T0)
    assert await ids(cursor=None, status="paused", created_after=T0) == ["b"]


async def test_duplicate_id_is_refused_naming_it(store: Store) -> None:
    """Creating an id that exists raises InstanceExistsError naming the id."""
    await create(store, "a")
    with pytest.raises(InstanceExistsError, match="'a'"):
        await create(store, "a")
    await create(store, "a", workflow="other")  # ids are per workflow


async def test_batch_is_all_or_nothing(store: Store) -> None:
    """A batch with one taken id creates none of its instances."""
    await create(store, "taken")
    with pytest.raises(InstanceExistsError, match="taken"):
        await create(store, "new1", "taken", "new2")
    assert await store.get_instance("wf", "new1") is None
    assert await store.get_instance("wf", "new2") is None
    await create(store, "new1", "new2")
    assert await store.get_instance("wf", "new2") is not None


async def test_data_survives_reopening_the_store(make_store: StoreFactory) -> None:
    """What one store object committed, a new one on the same database reads back."""
    first = make_store()
    await first.open()
    lease = await running(first)
    await first.put_step(lease, step("s", 0, "complete", output=b"42"))
    await first.close()
    second = make_store()
    await second.open()
    try:
        steps = await second.load_steps(lease.key)
        assert [(s.name, s.output) for s in steps] == [("s", b"42")]
    finally:
        await second.close()


# --- scheduling ---------------------------------------------------------------------------


async def test_claim_takes_due_instances_makes_them_running_and_bumps_epoch(store: Store) -> None:
    """Claim takes due instances oldest run_at first, up to the limit, and bumps epochs."""
    await create(store, "a", "b", "c")  # run_at T0, T0+1, T0+2
    assert await store.claim(T0 - 1, 10) == []
    leases = await store.claim(T0 + 1, 10)
    assert sorted(lease.id for lease in leases) == ["a", "b"]
    for lease in leases:
        row = await store.get_instance("wf", lease.id)
        assert row is not None
        assert row.status == "running" and row.epoch == lease.epoch == 1
        assert row.run_at is None and row.started_at == T0 + 1
    assert await store.claim(T0 + 1, 10) == []  # running instances are not runnable
    [c] = await store.claim(T0 + 100, 1)
    assert c.id == "c"


async def test_claim_respects_the_limit(store: Store) -> None:
    """Claim never returns more leases than asked for."""
    await create(store, *[f"i{n}" for n in range(5)])
    first = await store.claim(T0 + 10, 2)
    second = await store.claim(T0 + 10, 2)
    third = await store.claim(T0 + 10, 2)
    assert (len(first), len(second), len(third)) == (2, 2, 1)
    assert len({lease.id for lease in first + second + third}) == 5


async def test_claim_work_brings_each_row_and_history(store: Store) -> None:
    """claim_work claims like claim and returns each instance's current row and steps."""
    lease = await running(store)
    await store.put_step(lease, step("s", 0, "complete", output=b"1"))
    await store.put_step(lease, step("t", 1, "complete", output=b"2"))
    await store.suspend(lease, T0 + 5, [], T0 + 2)
    await create(store, "b", at=T0 + 1)
    work = {w.lease.id: w for w in await store.claim_work(T0 + 5, 10)}
    assert sorted(work) == ["a", "b"]
    a, b = work["a"], work["b"]
    assert a.lease.epoch == lease.epoch + 1 and a.row.epoch == a.lease.epoch
    assert (a.row.status, a.row.params, a.row.run_at) == ("running", b'{"n": 0}', None)
    assert [(s.name, s.output) for s in a.steps] == [("s", b"1"), ("t", b"2")]
    assert (b.row.status, b.steps, b.lease.epoch) == ("running", [], 1)
    assert await store.claim_work(T0 + 5, 10) == []
    await store.put_step(a.lease, step("u", 2))  # the claimed lease is current


async def test_instance_counts_group_by_workflow_and_status_with_due(store: Store) -> None:
    """instance_counts counts instances per workflow and status in one query, and how many
    of them are due (run_at passed) at the given time."""
    assert await store.instance_counts(T0) == []
    await create(store, "a", "b", "c")  # queued at T0, T0+1, T0+2
    await create(store, "x", workflow="other", at=T0 + 100)
    [lease] = await store.claim(T0, 1)  # a: running
    await store.finish(lease, "complete", b"1", None, T0 + 1)
    counts = {(c.workflow, c.status): (c.count, c.due) for c in await store.instance_counts(T0 + 1)}
    assert counts == {
        ("wf", "complete"): (1, 0),
        ("wf", "queued"): (2, 1),  # b is due at T0+1, c not yet
        ("other", "queued"): (1, 0),
    }
    assert await store.status_counts("wf") == {"complete": 1, "queued": 2}
    assert await store.status_counts("other") == {"queued": 1}
    assert await store.status_counts("none") == {}


async def test_a_rate_limit_counts_the_starts_its_claims_make(store: Store) -> None:
    """A rate-limited workflow's claims count each first start for one period: a deleted
    instance's start still counts, a second run of an instance is no new start, and a
    start that left the period frees its place."""
    store.set_flow_limits({"wf": FlowLimits(rate=(2, 10.0), label="2/10s")})
    await create(store, "a", "b", "c")  # due at T0, T0+1, T0+2
    a, _ = await store.claim(T0 + 5, 10)  # two of three: the rate allows 2 per 10 s
    assert (await store.flow_usage("wf", None, T0 + 5, 10.0)).started == 2
    await store.suspend(a, T0 + 6, [], T0 + 5)
    assert await store.delete_instance("wf", "b")
    [again] = await store.claim(T0 + 6, 10)  # a's wake-up, not a new start; c waits
    assert again.id == "a"
    assert (await store.flow_usage("wf", None, T0 + 14, 10.0)).started == 2  # b's counts
    assert await store.claim(T0 + 14, 10) == []  # c is held back by the rate
    [c] = await store.claim(T0 + 15.5, 10)  # both starts left the period: c starts
    assert c.id == "c"
    assert (await store.flow_usage("wf", None, T0 + 15.5, 10.0)).started == 1


async def test_next_run_at_is_the_earliest_run_at(store: Store) -> None:
    """next_run_at is None with nothing scheduled, else the earliest run_at."""
    assert await store.next_run_at() is None
    await create(store, "a", "b", at=T0 + 50)
    assert await store.next_run_at() == T0 + 50
    [lease] = await store.claim(T0 + 50, 1)
    assert await store.next_run_at() == T0 + 51
    await store.claim(T0 + 51, 1)
    assert await store.next_run_at() is None
    await store.suspend(lease, T0 + 500, [], T0 + 60)
    assert await store.next_run_at() == T0 + 500


async def test_claim_next_claims_and_tells_when_to_claim_again(store: Store) -> None:
    """claim_next claims as claim_work does and reads next_run_at of what it left: None
    when nothing is left or the claim took its limit (there may be more at once)."""
    assert await store.claim_next(T0, 10) == ([], None)
    await create(store, "a", "b", at=T0 + 50)  # due at T0+50 and T0+51
    await create(store, "c", at=T0 + 500)
    assert await store.claim_next(T0, 10) == ([], T0 + 50)
    work, later = await store.claim_next(T0 + 50, 10)
    assert ([w.lease.id for w in work], later) == (["a"], T0 + 51)
    assert (work[0].row.status, work[0].steps) == ("running", [])
    work, later = await store.claim_next(T0 + 51, 1)
    assert ([w.lease.id for w in work], later) == (["b"], None)  # took its limit
    assert await store.claim_next(T0 + 51, 1) == ([], T0 + 500)
    await store.suspend(work[0].lease, T0 + 70, [], T0 + 60)
    assert await store.claim_next(T0 + 60, 5) == ([], T0 + 70)
    work, later = await store.claim_next(T0 + 600, 5)
    assert (sorted(w.lease.id for w in work), later) == (["b", "c"], None)
    assert await store.claim_next(T0 + 600, 5) == ([], None)


# --- fenced writes --------------------------------------------------------------------------


async def test_steps_are_stored_replaced_and_loaded_in_order(store: Store) -> None:
    """put_step inserts or replaces a step; load_steps returns them in first-run order."""
    lease = await running(store)
    await store.put_step(lease, step("b", 1, attempts=1))
    await store.put_step(lease, step("a", 0, attempts=1))
    await store.put_step(
        lease,
        step(
            "b",
            1,
            "complete",
            attempts=2,
            attempt_log=[{"started_at": 1.0, "ended_at": 2.0, "error": None}],
            output=b'{"x": 1}',
            started_at=1.0,
            ended_at=2.0,
            config={"retries": {"limit": 1}},
        ),
    )
    steps = await store.load_steps(lease.key)
    assert [(s.name, s.status) for s in steps] == [("a", "running"), ("b", "complete")]
    b = steps[1]
    assert b.attempts == 2 and b.output == b'{"x": 1}'
    assert b.attempt_log == [{"started_at": 1.0, "ended_at": 2.0, "error": None}]
    assert b.config == {"retries": {"limit": 1}}
    assert (b.started_at, b.ended_at, b.wake_at, b.error) == (1.0, 2.0, None, None)


async def test_writes_of_one_instance_apply_in_call_order(store: Store) -> None:
    """Writes fired without waiting land in the order they were called."""
    lease = await running(store)
    record = step("s", 0)
    fired = []
    for attempt in range(1, 6):
        record.attempts = attempt
        record.status = "complete" if attempt == 5 else "retrying"
        fired.append(store.put_step(lease, record))  # the store snapshots the row now
    record.status = "failed"  # changed after the call: the stored row must not see it
    await asyncio.gather(*fired)
    [stored] = await store.load_steps(lease.key)
    assert (stored.attempts, stored.status) == (5, "complete")
    status = await store.suspend(lease, T0 + 9, [], T0 + 2)
    assert status == "waiting"


async def test_finish_ends_the_instance_with_output_or_error(store: Store) -> None:
    """finish stores complete with output, or errored with the error, and the end time."""
    await create(store, "ok", "bad")
    leases = {lease.id: lease for lease in await store.claim(T0 + 5, 10)}
    await store.finish(leases["ok"], "complete", b'"done"', None, T0 + 6)
    await store.finish(leases["bad"], "errored", None, {"name": "E", "message": "m"}, T0 + 7)
    ok = await store.get_instance("wf", "ok")
    bad = await store.get_instance("wf", "bad")
    assert ok is not None and bad is not None
    assert (ok.status, ok.output, ok.ended_at, ok.run_at) == ("complete", b'"done"', T0 + 6, None)
    assert (bad.status, bad.error, bad.ended_at) == (
        "errored",
        {"name": "E", "message": "m"},
        T0 + 7,
    )


async def test_stale_lease_writes_raise_lease_lost(store: Store) -> None:
    """After a restart moved the epoch, every write of the old lease raises LeaseLost."""
    old = await running(store)
    await store.control("wf", "a", "restart", T0 + 2)
    [new] = await store.claim(T0 + 3, 1)
    assert new.epoch > old.epoch
    with pytest.raises(LeaseLost):
        await store.put_step(old, step("s", 0))
    with pytest.raises(LeaseLost):
        await store.take_event(old, step("w", 0, type="wait_for_event"), "t", T0 + 4)
    with pytest.raises(LeaseLost):
        await store.suspend(old, T0 + 10, [], T0 + 4)
    with pytest.raises(LeaseLost):
        await store.suspend(old, T0 + 10, ["t"], T0 + 4)
    with pytest.raises(LeaseLost):
        await store.finish(old, "complete", None, None, T0 + 4)
    assert await store.load_steps(new.key) == []
    row = await store.get_instance("wf", "a")
    assert row is not None and row.status == "running" and row.epoch == new.epoch
    await store.put_step(new, step("s", 0))  # the current lease still writes
    assert len(await store.load_steps(new.key)) == 1


async def test_a_stale_lease_among_many_step_writes_fails_alone(store: Store) -> None:
    """Step writes of several instances fired together (one group commit) all land but
    the one whose lease went stale, which raises LeaseLost and stores nothing."""
    await create(store, *(f"i{n}" for n in range(6)))
    leases = {lease.id: lease for lease in await store.claim(T0 + 10, 10)}
    await store.control("wf", "i3", "restart", T0 + 11)
    fired = [
        store.put_step(leases[f"i{n}"], step("s", 0, "complete", output=b"1")) for n in range(6)
    ]
    outcomes = await asyncio.gather(*fired, return_exceptions=True)
    assert [isinstance(o, LeaseLost) for o in outcomes] == [n == 3 for n in range(6)]
    assert [o for o in outcomes if not isinstance(o, LeaseLost)] == [None] * 5
    for n in range(6):
        stored = await store.load_steps(leases[f"i{n}"].key)
        assert [(s.name, s.status) for s in stored] == ([] if n == 3 else [("s", "complete")])


async def test_terminate_fences_the_running_lease(store: Store) -> None:
    """A terminated instance's lease writes nothing more; its finish raises LeaseLost."""
    lease = await running(store)
    await store.control("wf", "a", "terminate", T0 + 2)
    fired = store.put_step(lease, step("s", 0))
    with pytest.raises(LeaseLost):
        await store.finish(lease, "complete", b"1", None, T0 + 3)
    with pytest.raises(LeaseLost):
        await fired
    row = await store.get_instance("wf", "a")
    assert row is not None and row.status == "terminated" and row.output is None
    assert await store.load_steps(lease.key) == []


# --- events -------------------------------------------------------------------------------


async def test_take_event_is_fifo_exactly_once_and_keeps_early_events(store: Store) -> None:
    """Events sent before the wait are kept; each is taken once, oldest first, by type."""
    await create(store, "a")
    await store.send_event("wf", "a", "vote", b'"first"', T0 + 1)
    await store.send_event("wf", "a", "other", b'"x"', T0 + 2)
    await store.send_event("wf", "a", "vote", b'"second"', T0 + 3)
    [lease] = await store.claim(T0 + 4, 1)
    w1 = step("w", 0, "waiting", type="wait_for_event", attempts=1, started_at=T0 + 4)
    ev1 = await store.take_event(lease, w1, "vote", T0 + 5)
    w2 = StepRow("w", 2, 1, "wait_for_event", "waiting", attempts=1)
    ev2 = await store.take_event(lease, w2, "vote", T0 + 6)
    w3 = StepRow("w", 3, 2, "wait_for_event", "waiting", attempts=1, wake_at=T0 + 99)
    ev3 = await store.take_event(lease, w3, "vote", T0 + 7)
    assert isinstance(ev1, EventRow) and isinstance(ev2, EventRow)
    assert (ev1.type, ev1.payload, ev1.created_at) == ("vote", b'"first"', T0 + 1)
    assert ev2.payload == b'"second"'
    assert ev3 is None
    steps = {(s.name, s.count): s for s in await store.load_steps(lease.key)}
    first = steps[("w", 1)]
    assert first.status == "complete" and first.ended_at == T0 + 5
    assert first.output is not None and b'"first"' in first.output
    assert steps[("w", 3)].status == "waiting" and steps[("w", 3)].wake_at == T0 + 99
    [lease2] = await _reclaim(store, lease)
    again = StepRow("w", 4, 3, "wait_for_event", "waiting", attempts=1)
    assert await store.take_event(lease2, again, "vote", T0 + 30) is None
    other = await store.take_event(
        lease2, StepRow("o", 1, 4, "wait_for_event", "waiting"), "other", T0 + 31
    )
    assert other is not None and other.payload == b'"x"'


async def test_pending_events_report_the_oldest_unconsumed_event_per_type(store: Store) -> None:
    """pending_events gives, per asked type, the time of its oldest event not yet taken."""
    await create(store, "a")
    await store.send_event("wf", "a", "vote", None, T0 + 1)
    await store.send_event("wf", "a", "vote", None, T0 + 2)
    await store.send_event("wf", "a", "other", None, T0 + 3)
    [lease] = await store.claim(T0 + 4, 1)
    assert await store.pending_events(lease, ["vote", "other", "none"]) == {
        "vote": T0 + 1,
        "other": T0 + 3,
    }
    await store.take_event(lease, step("w", 0, "waiting", type="wait_for_event"), "vote", T0 + 5)
    assert await store.pending_events(lease, ["vote"]) == {"vote": T0 + 2}


async def _reclaim(store: Store, lease: Lease) -> list[Lease]:
    """Suspend a lease and claim its instance again."""
    await store.suspend(lease, T0 + 20, [], T0 + 10)
    return await store.claim(T0 + 20, 1)


async def test_concurrent_takes_deliver_each_event_once(store: Store) -> None:
    """Two waits taking the same type at once get different events, never the same one."""
    await create(store, "a")
    for n in range(4):
        await store.send_event("wf", "a", "t", str(n).encode(), T0 + n)
    [lease] = await store.claim(T0 + 10, 1)
    taken = await asyncio.gather(
        *[
            store.take_event(lease, StepRow("w", n, n, "wait_for_event", "waiting"), "t", T0 + 11)
            for n in range(1, 6)
        ]
    )
    payloads = [e.payload for e in taken if e is not None]
    assert payloads == [b"0", b"1", b"2", b"3"]
    assert taken[-1] is None


async def test_send_event_wakes_a_waiting_instance_only_for_its_types(store: Store) -> None:
    """An event of a waited-for type makes the instance runnable now; others do not."""
    lease = await running(store)
    assert await store.suspend(lease, T0 + 1000, ["go", "stop"], T0 + 2) == "waiting"
    row = await store.get_instance("wf", "a")
    assert row is not None and (row.status, row.run_at) == ("waiting", T0 + 1000)
    await store.send_event("wf", "a", "unrelated", None, T0 + 3)
    row = await store.get_instance("wf", "a")
    assert row is not None and row.run_at == T0 + 1000
    await store.send_event("wf", "a", "stop", None, T0 + 4)
    row = await store.get_instance("wf", "a")
    assert row is not None and row.run_at == T0 + 4
    [again] = await store.claim(T0 + 4, 1)
    assert again.id == "a"


async def test_send_event_to_unknown_or_finished_instance_is_refused(store: Store) -> None:
    """Events for a missing instance raise NotFoundError; for an ended one, InvalidTransitionError."""
    with pytest.raises(NotFoundError):
        await store.send_event("wf", "nope", "t", None, T0)
    lease = await running(store)
    await store.finish(lease, "complete", None, None, T0 + 2)
    with pytest.raises(InvalidTransitionError, match="complete"):
        await store.send_event("wf", "a", "t", None, T0 + 3)
    await create(store, "b")
    await store.control("wf", "b", "terminate", T0)
    with pytest.raises(InvalidTransitionError, match="terminated"):
        await store.send_event("wf", "b", "t", None, T0 + 3)


# --- suspension -------------------------------------------------------------------------------


async def test_suspend_makes_waiting_with_run_at(store: Store) -> None:
    """A suspension is waiting until its run_at, and not runnable before."""
    lease = await running(store)
    assert await store.suspend(lease, T0 + 60, [], T0 + 2) == "waiting"
    row = await store.get_instance("wf", "a")
    assert row is not None and (row.status, row.run_at) == ("waiting", T0 + 60)
    assert await store.claim(T0 + 59, 10) == []
    [again] = await store.claim(T0 + 60, 10)
    assert again.epoch == lease.epoch + 1


async def test_suspend_with_a_pending_event_is_runnable_now(store: Store) -> None:
    """Suspending to wait for a type that already has an event makes it runnable at once."""
    lease = await running(store)
    await store.send_event("wf", "a", "go", b"1", T0 + 2)
    assert await store.suspend(lease, T0 + 1000, ["go"], T0 + 3) == "waiting"
    row = await store.get_instance("wf", "a")
    assert row is not None and row.run_at == T0 + 3


async def test_suspend_with_pause_requested_becomes_paused(store: Store) -> None:
    """An instance asked to pause while running is paused when it suspends, and stays so."""
    lease = await running(store)
    row = await store.control("wf", "a", "pause", T0 + 2)
    assert row.status == "waitingForPause" and row.pause_requested
    assert await store.suspend(lease, T0 + 3, ["t"], T0 + 3) == "paused"
    row2 = await store.get_instance("wf", "a")
    assert row2 is not None
    assert (row2.status, row2.run_at, row2.pause_requested) == ("paused", None, False)
    await store.send_event("wf", "a", "t", None, T0 + 4)
    assert await store.claim(T0 + 100, 10) == []
    resumed = await store.control("wf", "a", "resume", T0 + 5)
    assert (resumed.status, resumed.run_at) == ("queued", T0 + 5)


async def test_timer_suspension_under_a_pause_request_pauses(store: Store) -> None:
    """A timer-only suspension under a pause request pauses too."""
    lease = await running(store)
    await store.control("wf", "a", "pause", T0 + 2)
    assert await store.suspend(lease, T0 + 3, [], T0 + 3) == "paused"


# --- control ---------------------------------------------------------------------------------


async def test_pause_and_resume_transitions(store: Store) -> None:
    """Pause and resume move between the documented states and refuse the others."""
    await create(store, "q", "w", "r")
    paused = await store.control("wf", "q", "pause", T0 + 1)
    assert (paused.status, paused.run_at) == ("paused", None)
    assert (await store.control("wf", "q", "pause", T0 + 2)).status == "paused"  # no-op
    resumed = await store.control("wf", "q", "resume", T0 + 3)
    assert (resumed.status, resumed.run_at) == ("queued", T0 + 3)
    with pytest.raises(InvalidTransitionError, match="not paused"):
        await store.control("wf", "q", "resume", T0 + 4)
    leases = {lease.id: lease for lease in await store.claim(T0 + 10, 10)}
    await store.suspend(leases["w"], T0 + 50, [], T0 + 11)
    assert (await store.control("wf", "w", "pause", T0 + 12)).status == "paused"
    assert (await store.control("wf", "r", "pause", T0 + 12)).status == "waitingForPause"
    assert (await store.control("wf", "r", "pause", T0 + 12)).status == "waitingForPause"
    back = await store.control("wf", "r", "resume", T0 + 13)
    assert (back.status, back.pause_requested) == ("running", False)
    with pytest.raises(InvalidTransitionError):
        await store.control("wf", "r", "resume", T0 + 14)
    await store.finish(leases["r"], "complete", None, None, T0 + 15)
    with pytest.raises(InvalidTransitionError, match="complete"):
        await store.control("wf", "r", "pause", T0 + 16)
    with pytest.raises(InvalidTransitionError):
        await store.control("wf", "r", "resume", T0 + 16)


async def test_terminate_transitions(store: Store) -> None:
    """Terminate ends any live instance, bumps its epoch, and refuses an ended one."""
    await create(store, "q", "r")
    [r] = await store.claim(T0 + 1, 1)
    for id in ("q", "r"):
        row = await store.control("wf", id, "terminate", T0 + 5)
        assert (row.status, row.ended_at, row.run_at) == ("terminated", T0 + 5, None)
    stored = await store.get_instance("wf", r.id)
    assert stored is not None and stored.epoch == r.epoch + 1
    with pytest.raises(InvalidTransitionError, match="terminated"):
        await store.control("wf", "q", "terminate", T0 + 6)
    with pytest.raises(InvalidTransitionError):
        await store.control("wf", "q", "pause", T0 + 6)
    assert await store.claim(T0 + 100, 10) == []


async def test_restart_clears_history_and_consumed_events_and_bumps_generation(
    store: Store,
) -> None:
    """Restart deletes steps and consumed events, keeps unconsumed ones, and queues anew."""
    await create(store, "a")
    await store.send_event("wf", "a", "t", b'"used"', T0)
    await store.send_event("wf", "a", "t", b'"kept"', T0 + 1)
    [lease] = await store.claim(T0 + 2, 1)
    await store.put_step(lease, step("s", 0, "complete", output=b"1"))
    await store.take_event(lease, step("w", 1, type="wait_for_event"), "t", T0 + 3)
    await store.finish(lease, "complete", b'"out"', None, T0 + 4)
    row = await store.control("wf", "a", "restart", T0 + 10)
    assert (row.status, row.run_at, row.output, row.ended_at) == ("queued", T0 + 10, None, None)
    assert row.started_at is None
    assert (row.epoch, row.generation) == (lease.epoch + 1, 1)
    assert await store.load_steps(lease.key) == []
    [again] = await store.claim(T0 + 10, 1)
    event = await store.take_event(again, step("w", 0, type="wait_for_event"), "t", T0 + 11)
    assert event is not None and event.payload == b'"kept"'
    assert await store.take_event(again, step("w2", 1, type="wait_for_event"), "t", T0 + 12) is None


async def test_control_of_unknown_instance_is_not_found(store: Store) -> None:
    """Every control action on a missing instance raises NotFoundError."""
    for action in ("pause", "resume", "terminate", "restart"):
        with pytest.raises(NotFoundError, match="nope"):
            await store.control("wf", "nope", action, T0)


# --- retention ------------------------------------------------------------------------------


async def rows_of(store: Store, key: int) -> tuple[int, int, int]:
    """How many instance, step and event rows the store holds for instance ``key``."""
    counts = []
    for table, column in (("instances", "key"), ("steps", "instance"), ("events", "instance")):
        sql = f"SELECT count(*) FROM {table} WHERE {column} = "
        if isinstance(store, SqliteStore):
            assert store._conn is not None
            counts.append(store._conn.execute(sql + "?", (key,)).fetchone()[0])
        else:
            assert isinstance(store, PostgresStore)
            counts.append(await store._pool.fetchval(sql + "$1", key))
    return counts[0], counts[1], counts[2]


async def finished(store: Store, *, at: float = T0, workflow: str = "wf") -> dict[str, Lease]:
    """Instances ``done`` (complete at +6), ``bad`` (errored at +7) and ``stopped``
    (terminated at +5), each with a step and an event, and ``live``, waiting."""
    ids = ("done", "bad", "stopped", "live")
    await create(store, *ids, at=at, workflow=workflow)
    for id in ids:
        await store.send_event(workflow, id, "t", b'"e"', at)
    leases = {lease.id: lease for lease in await store.claim(at + 4, 10)}
    for lease in leases.values():
        await store.put_step(lease, step("s", 0, "complete", output=b"1"))
    await store.finish(leases["done"], "complete", b'"out"', None, at + 6)
    await store.finish(leases["bad"], "errored", None, {"name": "E", "message": "m"}, at + 7)
    await store.control(workflow, "stopped", "terminate", at + 5)
    assert await store.suspend(leases["live"], at + 1000, [], at + 8) == "waiting"
    return leases


async def test_delete_finished_takes_old_finished_instances_with_steps_and_events(
    store: Store,
) -> None:
    """Finished instances that ended before the cutoff go, with their steps and events;
    younger and unfinished ones stay untouched."""
    leases = await finished(store)
    assert await rows_of(store, leases["done"].key) == (1, 1, 1)
    assert await store.delete_finished(T0 + 6.5) == 2  # stopped (+5) and done (+6)
    for id in ("done", "stopped"):
        assert await store.get_instance("wf", id) is None
        assert await rows_of(store, leases[id].key) == (0, 0, 0)
    for id in ("bad", "live"):
        assert await rows_of(store, leases[id].key) == (1, 1, 1)
    assert await store.delete_finished(T0 + 100) == 1  # bad; live is not finished
    live = await store.get_instance("wf", "live")
    assert live is not None and live.status == "waiting"
    assert await store.delete_finished(T0 + 10_000) == 0
    await create(store, "done")  # the id is free again, under a new key
    again = await store.get_instance("wf", "done")
    assert again is not None and again.key != leases["done"].key
    assert await store.load_steps(again.key) == []


async def test_delete_finished_filters_by_status_and_workflow_and_limits_a_batch(
    store: Store,
) -> None:
    """Only the given statuses and workflow are deleted, at most ``limit`` per call,
    oldest end first."""
    await finished(store)
    await finished(store, workflow="other")
    assert await store.delete_finished(T0 + 100, statuses=["complete"], workflow="wf") == 1
    assert await store.get_instance("wf", "done") is None
    assert await store.get_instance("other", "done") is not None
    assert await store.delete_finished(T0 + 100, workflow="other", limit=1) == 1
    assert await store.get_instance("other", "stopped") is None  # the oldest end first
    assert await store.get_instance("other", "done") is not None
    left = await store.delete_finished(T0 + 100, statuses=["errored", "terminated"])
    assert left == 3  # wf: bad, stopped; other: bad
    assert await store.get_instance("other", "done") is not None


async def test_prune_finished_deletes_in_batches_until_none_is_left(store: Store) -> None:
    """prune_finished repeats small batches until every matching instance is gone."""
    ids = [f"i{n}" for n in range(25)]
    await create(store, *ids)
    for id in ids:
        await store.control("wf", id, "terminate", T0 + 1)
    assert await store.prune_finished(T0 + 2, batch=4) == 25
    assert await store.list_instances("wf", status=None, limit=100, cursor=None) == []


async def test_prune_finished_refuses_statuses_that_are_not_finished(store: Store) -> None:
    """Asking to prune running or waiting instances is a ValidationError naming the status."""
    await create(store, "a")
    with pytest.raises(ValidationError, match="'running'"):
        await store.prune_finished(T0 + 100, statuses=["complete", "running"])
    assert await store.get_instance("wf", "a") is not None


async def test_concurrent_prunes_delete_each_instance_once(make_store: StoreFactory) -> None:
    """Two prunes at once (two hosts on PostgreSQL) delete every instance exactly once."""
    first = make_store()
    await first.open()
    second = first if isinstance(first, SqliteStore) else make_store()
    if second is not first:
        await second.open()
    try:
        ids = [f"c{n}" for n in range(60)]
        await create(first, *ids)
        for id in ids:
            await first.control("wf", id, "terminate", T0 + 1)
        counts = await asyncio.gather(
            first.prune_finished(T0 + 2, batch=5), second.prune_finished(T0 + 2, batch=5)
        )
        assert sum(counts) == 60
        assert await first.list_instances("wf", status=None, limit=100, cursor=None) == []
    finally:
        await first.close()
        if second is not first:
            await second.close()


# --- the engine on each store -----------------------------------------------------------------


class Pipeline(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def double() -> int:
            return int(event.payload["n"]) * 2

        doubled = await step.do("double", double)
        parts = await asyncio.gather(step.do("left", _const("L")), step.do("right", _const("R")))
        await step.sleep("nap", "200 milliseconds")
        approval = await step.wait_for_event("approval", "approve", timeout="1 minute")
        return {"doubled": doubled, "parts": parts, "approved_by": approval.payload}


def _const(value: str) -> Callable[[], Awaitable[str]]:
    async def make() -> str:
        return value

    return make


async def test_engine_runs_steps_sleep_and_event_to_completion(make_store: StoreFactory) -> None:
    """An engine on each store runs steps, a sleep and an event wait to the end."""
    engine = Engine(make_store(), [WorkflowSpec("pipeline", Pipeline)], poll_interval=0.5)
    await engine.start()
    try:
        [id] = await engine.create("pipeline", [("p1", {"n": 21})])

        async def waiting_for_event() -> bool:
            detail = await engine.describe("pipeline", id)
            return any(s.name == "approval" for s in detail.steps) and (
                detail.instance.status == "waiting"
            )

        await eventually(waiting_for_event, message="the wait for approval")
        await engine.send_event("pipeline", id, "approve", "ada")
        output = await engine.result("pipeline", id, timeout=20)
        assert output == {"doubled": 42, "parts": ["L", "R"], "approved_by": "ada"}
        detail = await engine.describe("pipeline", id)
        assert [s.name for s in detail.steps] == [
            "double",
            "left",
            "right",
            "nap",
            "approval",
        ]
        assert all(s.status == "complete" for s in detail.steps)
    finally:
        await engine.stop()


class Counter(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        total = 0
        for n in range(5):
            total += await step.do("add", _const_int(n))
        await step.sleep("rest", "100 milliseconds")
        return total


def _const_int(value: int) -> Callable[[], Awaitable[int]]:
    async def make() -> int:
        return value

    return make


async def test_engine_resumes_from_stored_steps_and_obeys_control(make_store: StoreFactory) -> None:
    """Many instances complete; pause holds one, resume finishes it, terminate ends another."""
    engine = Engine(make_store(), [WorkflowSpec("counter", Counter)], poll_interval=0.5)
    await engine.start()
    try:
        ids = await engine.create("counter", [(f"c{n}", None) for n in range(20)])
        await engine.control("counter", "c0", "pause")
        await engine.control("counter", "c1", "terminate")
        for id in ids[2:]:
            assert await engine.result("counter", id, timeout=20) == 10
        assert (await engine.status("counter", "c0")).status == "paused"
        assert (await engine.status("counter", "c1")).status == "terminated"
        await engine.control("counter", "c0", "resume")
        assert await engine.result("counter", "c0", timeout=20) == 10
        await engine.control("counter", "c0", "restart")
        assert await engine.result("counter", "c0", timeout=20) == 10
        steps = (await engine.describe("counter", "c0")).steps
        assert [s.count for s in steps if s.name == "add"] == [1, 2, 3, 4, 5]
    finally:
        await engine.stop()


async def test_engine_claims_once_per_instance_run_one_at_a_time(
    make_store: StoreFactory,
) -> None:
    """An instance that completes leaves nothing runnable: the scheduler claims when the
    next one is created, not again when one ends (that was two claims per instance). On
    PostgreSQL the create itself claims the instance (nothing else is due): no claim."""
    store = make_store()
    claims: list[float] = []
    claim_next = store.claim_next

    async def counted(now: float, limit: int, due: float | None = None) -> Any:
        claims.append(now)
        return await claim_next(now, limit, due)

    store.claim_next = counted  # type: ignore[method-assign]
    engine = Engine(store, [WorkflowSpec("adds", Adds)], poll_interval=30)
    await engine.start()
    try:
        await eventually(lambda: bool(claims), message="the first claim")
        await asyncio.sleep(0.1)
        claims.clear()
        for n in range(5):
            await engine.create("adds", [(f"a{n}", None)])
            assert await engine.result("adds", f"a{n}", timeout=20) == 3
        await asyncio.sleep(0.1)  # a claim after the last end would show here
        # SQLite: one per create; PostgreSQL: none (its poll, every 2 s, may add one)
        expected = range(5, 6) if isinstance(store, SqliteStore) else range(0, 2)
        assert len(claims) in expected, claims
    finally:
        await engine.stop()


RUNNING_NOW = {"now": 0, "most": 0}


class Overlaps(WorkflowEntrypoint[Any, Any]):
    """Counts how many of its instances run their step at once."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def hold() -> int:
            RUNNING_NOW["now"] += 1
            RUNNING_NOW["most"] = max(RUNNING_NOW["most"], RUNNING_NOW["now"])
            await asyncio.sleep(0.2)
            RUNNING_NOW["now"] -= 1
            return 1

        return await step.do("hold", hold)


async def test_creates_at_once_never_run_more_than_max_concurrency(
    make_store: StoreFactory,
) -> None:
    """Twelve creates at once on an idle store (each of which may claim its instance on
    PostgreSQL) and a host of max_concurrency 3: never more than 3 run at once."""
    RUNNING_NOW.update(now=0, most=0)
    engine = Engine(make_store(), [WorkflowSpec("overlaps", Overlaps)], max_concurrency=3)
    await engine.start()
    try:
        ids = [f"o{n}" for n in range(12)]
        await asyncio.gather(*(engine.create("overlaps", [(id, None)]) for id in ids))
        for id in ids:
            assert await engine.result("overlaps", id, timeout=30) == 1
        assert RUNNING_NOW["most"] == 3
    finally:
        await engine.stop()


class Adds(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        return sum([await step.do("add", _const_int(n)) for n in range(3)])


def test_backends_keep_their_import_paths() -> None:
    """Each backend is a package whose ``__init__`` re-exports the names callers import."""
    from durableflow_runtime.store import postgres, sqlite

    assert sorted(sqlite.__all__) == sorted(
        ["MIGRATIONS", "CommitMode", "Durability", "SqliteStore", "StoreFault", "StoreLockedError"]
    )
    assert sorted(postgres.__all__) == sorted(
        ["MIGRATIONS", "PostgresStore", "StoreUnavailableError"]
    )
    assert all(getattr(sqlite, name) is not None for name in sqlite.__all__)
    assert all(getattr(postgres, name) is not None for name in postgres.__all__)


def test_shared_queries_are_constant_sql_on_postgresql() -> None:
    """A shared statement is one SQL text on PostgreSQL whatever its arguments, so each
    connection prepares it once; on SQLite the same statement keeps its ``?`` marks."""
    from durableflow_runtime.store._queries import POSTGRES, SQLITE, Queries

    pg, lite = Queries(POSTGRES), Queries(SQLITE)
    assert pg.pending_events(1, ["a"])[0] is pg.pending_events(2, ["a", "b", "c"])[0]
    assert pg.suspend_waiting(1, None, ["a"], T0)[0] is pg.suspend_waiting(2, T0, ["b", "c"], T0)[0]
    assert "?" not in pg.fence and pg.fence.endswith("FOR NO KEY UPDATE")
    assert lite.pending_events(1, ["a", "b"]) == (
        "SELECT type, min(created_at) FROM events WHERE instance = ? AND type IN (?,?)"
        " AND consumed_by IS NULL GROUP BY type",
        (1, "a", "b"),
    )


# --- restart from a step, delete ----------------------------------------------------------


async def test_restart_from_drops_the_step_what_followed_and_the_events_they_took(
    store: Store,
) -> None:
    """restart_from keeps the steps before the named one, drops it and every later step with
    the events those took, keeps pending events, and fences the old lease."""
    lease = await running(store)
    await store.put_step(lease, step("reserve", 0, "complete", output=b'"r"'))
    await store.send_event("wf", "a", "ok", b"1", T0 + 2)
    await store.send_event("wf", "a", "ok", b"2", T0 + 3)
    await store.send_event("wf", "a", "ok", b"3", T0 + 4)
    assert await store.take_event(lease, step("first", 1, type="wait_for_event"), "ok", T0 + 5)
    await store.put_step(lease, step("charge", 2, "failed", error={"name": "E", "message": "m"}))
    assert await store.take_event(lease, step("second", 3, type="wait_for_event"), "ok", T0 + 6)

    with pytest.raises(ValidationError, match=r"'charge'.*no such step"):
        await store.restart_from("wf", "a", StepRef("charge", type="sleep"), T0 + 7)
    with pytest.raises(NotFoundError):
        await store.restart_from("wf", "nobody", StepRef("charge"), T0 + 7)
    row = await store.restart_from("wf", "a", StepRef("charge"), T0 + 7)
    assert (row.status, row.error, row.output, row.ended_at) == ("queued", None, None, None)
    assert row.epoch > lease.epoch
    steps = await store.load_steps(row.key)
    assert [s.name for s in steps] == ["reserve", "first"]
    events = await store.load_events(row.key)
    assert [(e.payload, e.consumed_by) for e in events] == [(b"1", "first#1"), (b"3", None)]
    with pytest.raises(LeaseLost):
        await store.put_step(lease, step("late", 4))


async def test_delete_instance_removes_every_row_and_frees_the_id(store: Store) -> None:
    """delete_instance removes a running instance, its steps and its events, in one go;
    the old lease can write nothing more, and the id starts afresh."""
    lease = await running(store)
    await store.put_step(lease, step("s", 0, "complete", output=b"1"))
    await store.send_event("wf", "a", "t", b"1", T0 + 2)
    assert await store.delete_instance("wf", "a") is True
    assert await store.get_instance("wf", "a") is None
    assert await store.load_steps(lease.key) == []
    assert await store.load_events(lease.key) == []
    assert await store.delete_instance("wf", "a") is False
    with pytest.raises(LeaseLost):
        await store.put_step(lease, step("late", 1))
    await create(store, "a")
    row = await store.get_instance("wf", "a")
    assert row is not None and row.key != lease.key and row.status == "queued"
    assert await store.load_steps(row.key) == []


# --- child workflows ----------------------------------------------------------------------


async def test_a_child_is_created_once_and_its_end_wakes_its_parent(store: Store) -> None:
    """start_child creates the child with the step in one transaction, adopts its own child
    again (leaving an ended child's end once more) and refuses another's id; the child's
    finish leaves the end for the parent and wakes it when it waits for it."""
    parent = await running(store, "p")
    wait = step("c", 0, "waiting", type="run_workflow", config={"workflow": "wf", "id": "c"})
    child = NewInstance("wf", "c", None, T0 + 1, parent=parent.key)
    assert await store.start_child(parent, wait, child) == "created"
    await create(store, "other", at=T0 + 2)
    taken = NewInstance("wf", "other", None, T0 + 2, parent=parent.key)
    assert (
        await store.start_child(parent, step("o", 1, "waiting", type="run_workflow"), taken)
        == "taken"
    )
    assert [s.name for s in await store.load_steps(parent.key)] == ["c"]
    type = child_event_type("wf", "c")
    assert await store.suspend(parent, None, [type], T0 + 3) == "waiting"
    [claimed] = await store.claim(T0 + 4, 1)
    assert claimed.id == "c"
    await store.finish(claimed, "complete", b'{"v": 1}', None, T0 + 5, parent=parent.key)
    row = await store.get_instance("wf", "p")
    assert row is not None and row.run_at == T0 + 5, "the parent was woken"
    [again] = [lease for lease in await store.claim(T0 + 6, 10) if lease.id == "p"]
    ends = await store.oldest_events(again, [type])
    assert orjson.loads(ends[type].payload or b"") == {
        "status": "complete",
        "output": {"v": 1},
        "error": None,
    }
    event = await store.take_event(again, wait, type, T0 + 7)
    assert event is not None
    [stored] = await store.load_steps(again.key)
    assert (stored.status, stored.output, stored.config) == (
        "complete",
        b'{"v":1}',
        {"workflow": "wf", "id": "c", "status": "complete"},
    )
    # the parent restarted: its history is gone, the ended child is adopted with its end again
    assert await store.start_child(again, wait, child) == "adopted"
    assert type in await store.oldest_events(again, [type])
    child_row = await store.get_instance("wf", "c")
    assert child_row is not None
    assert await store.relatives(child_row) == (InstanceRef("wf", "p", "running"), [])


async def test_terminate_with_cascade_ends_running_descendants_only(store: Store) -> None:
    """terminate(cascade=True) terminates the instance and every descendant that has not
    ended, in one transaction; without cascade children go on."""
    root = await running(store, "root")
    for n, id in enumerate(("kid", "done")):
        started = step(id, n, "complete", type="start_workflow")
        await store.start_child(root, started, NewInstance("wf", id, None, T0, parent=root.key))
    kid = await store.get_instance("wf", "kid")
    assert kid is not None
    await store.create_instances([NewInstance("wf", "grandkid", None, T0, parent=kid.key)])
    leases = {lease.id: lease for lease in await store.claim(T0 + 1, 10)}
    await store.finish(leases["done"], "complete", None, None, T0 + 1, parent=root.key)
    other = await running(store, "plain", at=T0 + 2)
    await store.create_instances([NewInstance("wf", "orphan", None, T0 + 2, parent=other.key)])
    assert [r.id for r in await store.terminate("wf", "plain", T0 + 3)] == ["plain"]
    orphan = await store.get_instance("wf", "orphan")
    assert orphan is not None and orphan.status == "queued"
    rows = await store.terminate("wf", "root", T0 + 3, cascade=True)
    assert [r.id for r in rows] == ["root", "grandkid", "kid"]
    assert {r.status for r in rows} == {"terminated"}
    done = await store.get_instance("wf", "done")
    assert done is not None and done.status == "complete"
    with pytest.raises(InvalidTransitionError):
        await store.terminate("wf", "root", T0 + 4, cascade=True)


def _hook(lease: Lease, token: str, name: str = "w", count: int = 1) -> HookRow:
    return HookRow(
        token=token,
        kind="hook",
        workflow=lease.workflow,
        instance_id=lease.id,
        key=lease.key,
        instance_status="running",
        step=name,
        count=count,
        channel=f"hook:{name}",
        verify=None,
        created_at=T0,
        consumed_at=None,
        step_status=None,
        step_config=None,
    )


async def test_a_hook_token_is_unique_among_live_waits_and_takes_one_payload(
    store: Store,
) -> None:
    """A token a waiting hook holds cannot be registered again until its payload came; a
    payload is delivered once, to the registering instance, under the hook's channel."""
    a = await running(store, "a")
    wait = step("w", 0, "waiting", type="wait_for_event")
    assert await store.register_hook(a, _hook(a, "tok"), wait) is True
    await create(store, "b", at=T0 + 1)
    [b] = await store.claim(T0 + 2, 10)
    assert await store.register_hook(b, _hook(b, "tok"), step("w", 0, "waiting")) is False
    assert await store.load_steps(b.key) == []  # nothing written for the refused wait
    found = await store.find_hook("tok")
    assert found is not None and (found.instance_id, found.step_status) == ("a", "waiting")
    assert (await store.deliver_hook("tok", "webhook", b"1", T0 + 3))[0] == "unknown"
    outcome, hook = await store.deliver_hook("tok", "hook", b'{"x": 1}', T0 + 3)
    assert outcome == "delivered" and hook is not None and hook.instance_id == "a"
    assert (await store.deliver_hook("tok", "hook", b"2", T0 + 4))[0] == "gone"
    assert await store.pending_events(a, ["hook:w"]) == {"hook:w": T0 + 3}
    # consumed: the token is free for another wait
    assert await store.register_hook(b, _hook(b, "tok"), step("w", 0, "waiting")) is True
    assert (await store.deliver_hook("nope", "hook", None, T0 + 5))[0] == "unknown"
    await store.finish(b, "complete", None, None, T0 + 6)
    assert await store.delete_finished(T0 + 7) == 1
    assert await store.find_hook("tok") is None


async def test_an_upgraded_store_keeps_the_last_hours_starts(make_store: StoreFactory) -> None:
    """A store made before starts had a table of their own (schema 10) counts, once
    upgraded, the starts of the last hour (the longest rate period) and no older ones."""
    store = make_store()
    now = time.time()
    rows = [("wf", "recent", now - 60), ("wf", "old", now - 7200), ("wf", "queued", None)]
    insert = "INSERT INTO instances (workflow, id, status, created_at, started_at) VALUES"
    if isinstance(store, SqliteStore):
        lite = sqlite3.connect(store.path)
        lite.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(SQLITE_MIGRATIONS[:10], 1):
            lite.executescript(script)
            lite.execute("INSERT INTO schema_version VALUES (?)", (version,))
        lite.executemany(f"{insert} (?, ?, 'running', 0, ?)", rows)
        lite.commit()
        lite.close()
    else:
        assert isinstance(store, PostgresStore) and store.schema is not None
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'CREATE SCHEMA "{store.schema}"')
            await conn.execute(f'SET search_path TO "{store.schema}"')
            await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            for version, script in enumerate(PG_MIGRATIONS[:10], 1):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
            await conn.executemany(f"{insert} ($1, $2, 'running', 0, $3)", rows)
        finally:
            await conn.close()
    await store.open()
    try:
        assert (await store.flow_usage("wf", None, now, 3600.0)).started == 1
    finally:
        await store.close()
