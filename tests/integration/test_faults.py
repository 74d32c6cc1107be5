"""Storage faults through a real ``durableflow serve`` process and real HTTP.

A full disk (a small tmpfs), a read-only store (a read-only bind mount), the SQLite file
deleted under a running host, a private PostgreSQL server stopped and started again, and
kill -9 of the host while batches are being created. Each test checks that nothing
acknowledged is lost and that no step ran twice: every step of the fault project logs
its run to a file (``fault_project/app.py``), and the tests count the lines.

Mounting needs root (or CAP_SYS_ADMIN): where the machine does not allow it those tests
skip and say so. The PostgreSQL tests start a server of their own (``initdb`` and
``pg_ctl`` from ``/usr/lib/postgresql/*/bin``) on a free port in a temporary directory,
never the machine's shared one; without those binaries they skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

import durableflow
from tests.helpers import eventually

from .conftest import PG_DSN, Api, HostFactory, HostProcess, _pg, copy_project, require_postgres

FAULT_PROJECT = Path(__file__).with_name("fault_project")
LOG_ENV = "DURABLEFLOW_FAULT_LOG"

pytestmark = pytest.mark.slow


# --- helpers ---------------------------------------------------------------------------
def step_runs(log: Path) -> collections.Counter[tuple[str, str]]:
    """How many times each ``(instance, step)`` callback ran, from the project's log."""
    runs: collections.Counter[tuple[str, str]] = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            instance, step, _attempt = line.split()
            runs[(instance, step)] += 1
    return runs


def project(tmp_path: Path, extra_config: str = "") -> tuple[Path, Path]:
    """A fresh copy of the fault project, and the file its steps log their runs to."""
    root = copy_project(tmp_path / "project", FAULT_PROJECT)
    if extra_config:
        with (root / "durableflow.toml").open("a") as f:
            f.write(extra_config)
    return root, tmp_path / "steps.log"


def start(hosts: HostFactory, root: Path, log: Path, *args: str) -> HostProcess:
    return hosts.start(root, *args, env={LOG_ENV: str(log)})


def _mount(*args: str) -> str | None:
    """Run ``mount ARGS``; why it failed, or ``None``."""
    if shutil.which("mount") is None:
        return "no mount command on this machine"
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount {' '.join(args)} is not permitted here: {done.stderr.strip()}"
    return None


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[None]:
    """``mount ARGS TARGET`` for the test's duration; skip (with the reason) if refused."""
    target.mkdir(parents=True, exist_ok=True)
    why = _mount(*args, str(target))
    if why is not None:
        pytest.skip(f"{why} (needs root or CAP_SYS_ADMIN)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill_disk(path: Path) -> None:
    """Write ``path`` until its file system has not a byte left."""
    with path.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break


async def create(api: Api, id: str, params: Any = None) -> tuple[int, Any]:
    return await api.call(
        "POST", "/api/workflows/counted/instances", {"id": id, "params": params or {}}
    )


async def listed_ids(api: Api, status: str | None = None) -> set[str]:
    """The ids of every instance of the ``counted`` workflow (with ``status``), all pages."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        query = "?limit=500" + (f"&status={status}" if status else "")
        query += f"&cursor={cursor}" if cursor else ""
        page = await api.ok("GET", f"/api/workflows/counted/instances{query}")
        ids |= {i["id"] for i in page["instances"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


async def wait_all(api: Api, ids: list[str], status: str, timeout: float = 30.0) -> None:
    """Wait until every instance in ``ids`` has ``status``."""

    async def reached() -> bool:
        return set(ids) <= await listed_ids(api, status)

    await eventually(
        reached, timeout=timeout, interval=0.1, message=f"{len(ids)} instances are {status}"
    )


async def waiting_after_first_step(api: Api, ids: list[str]) -> None:
    """Wait until each instance finished its first step and sleeps (nothing in flight)."""
    for id in ids:

        async def asleep(id: str = id) -> bool:
            got, detail = await api.call("GET", f"/api/workflows/counted/instances/{id}")
            return got == 200 and detail["status"] == "waiting"

        await eventually(asleep, timeout=20, message=f"{id} sleeps after its first step")


def assert_each_step_ran_once(log: Path, ids: list[str], steps: int) -> None:
    runs = step_runs(log)
    expected = {(id, f"s{i}") for id in ids for i in range(steps)}
    missing = expected - set(runs)
    assert not missing, f"steps never ran: {sorted(missing)[:5]}"
    twice = {key: n for key, n in runs.items() if n > 1 and key[0] in ids}
    assert not twice, f"steps ran more than once: {twice}"


@contextlib.asynccontextmanager
async def api_on(host: HostProcess) -> Any:
    async with aiohttp.ClientSession(headers=host.headers()) as session:
        yield Api(session, host.url)


# --- SQLite: a full disk ---------------------------------------------------------------
@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_disk_full_answers_507_serves_reads_and_recovers(
    tmp_path: Path, hosts: HostFactory, durability: str
) -> None:
    """On a full disk a write answers 507 storage_full, reads keep working, and once space
    is freed the host carries on by itself: no acknowledged instance lost, no step run twice."""
    # "full" commits on the writer thread, "normal" on the event loop: both paths
    root, log = project(tmp_path, f'\n[storage]\ndurability = "{durability}"\n')
    with mounted(root / ".durableflow", "-t", "tmpfs", "-o", "size=16m", "tmpfs"):
        host = start(hosts, root, log)
        async with api_on(host) as api:
            before = [f"before-{i}" for i in range(10)]
            for id in before:
                # sleeps longer than the look-ahead: they suspend, and are claimed ahead
                got, answer = await create(api, id, {"steps": 3, "sleep_ms": 4000})
                assert got == 201, answer
            await waiting_after_first_step(api, before)
            # one instance has a step in flight when the disk fills
            gate = tmp_path / "gate"
            got, answer = await api.call(
                "POST",
                "/api/workflows/gated/instances",
                {"id": "busy", "params": {"gate": str(gate)}},
            )
            assert got == 201, answer
            await eventually(
                lambda: step_runs(log)[("busy", "s0")], timeout=10, message="busy's step runs"
            )

            filler = root / ".durableflow" / "filler"
            fill_disk(filler)
            got, answer = await create(api, "while-full")
            assert got == 507, answer
            assert answer["error"]["code"] == "storage_full"
            assert "full" in answer["error"]["message"]
            assert "Free space" in answer["error"]["message"]
            async with durableflow.Client(host.url, retries=3) as client:
                started = time.monotonic()
                with pytest.raises(durableflow.StorageFullError):
                    await client.workflow("counted").create(id="client-while-full")
                assert time.monotonic() - started < 2, "a 507 is not retried"

            # reads are answered while the disk is full, across the sleepers' wake-ups
            detail = await api.ok("GET", f"/api/workflows/counted/instances/{before[0]}")
            assert detail["steps"][0]["status"] == "complete"
            listed = await api.ok("GET", "/api/workflows/counted/instances?limit=100")
            assert {i["id"] for i in listed["instances"]} == set(before)
            # the step in flight ends now; its result cannot be stored: the instance stops
            gate.write_text("open")
            await eventually(
                lambda: "busy stopped, to resume when the store writes again" in host.output(),
                timeout=10,
                message="the instance whose write met the full disk stops",
            )
            # the sleepers fall due while nothing can be written: claiming them fails
            await eventually(
                lambda: "claiming work failed" in host.output(),
                timeout=10,
                message="the host tries to run the due sleepers on the full disk",
            )
            detail = await api.ok("GET", f"/api/workflows/counted/instances/{before[0]}")
            assert [(s["name"], s["status"]) for s in detail["steps"]] == [
                ("s0", "complete"),
                ("nap0", "waiting"),
            ], "nothing ran on the full disk"

            filler.unlink()
            got, answer = await create(api, "after", {"steps": 2})
            assert got == 201, answer
            await wait_all(api, [*before, "after"], "complete")
            busy = await api.wait_status("gated", "busy", "complete")
            assert busy["output"] == "passed"
        assert_each_step_ran_once(log, before, 3)
        # the step in flight when the disk filled ran again after (at least once), once
        assert step_runs(log)[("busy", "s0")] == 2
        assert "stopped instance(s) resume" in host.output()
        assert_each_step_ran_once(log, ["after"], 2)
        assert not any(id == "while-full" for id, _ in step_runs(log))
        assert host.stop() == 0
    assert "Traceback" not in host.output()


# --- SQLite: what each durability setting asks of the disk -----------------------------
@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
async def test_durability_setting_is_the_sqlite_sync_mode(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    """durability "normal" commits to the WAL without fsync (synchronous=NORMAL); "full"
    fsyncs every group commit (synchronous=FULL), which is what survives a power loss."""
    from durableflow_runtime.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "state.db", durability=durability)  # type: ignore[arg-type]
    await store.open()
    try:
        assert store._connection().execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store._connection().execute("PRAGMA synchronous").fetchone() == (synchronous,)
    finally:
        await store.close()


# --- SQLite: a read-only store ---------------------------------------------------------
async def test_read_only_store_serves_reads_and_answers_503(
    tmp_path: Path, hosts: HostFactory
) -> None:
    """A host started on a read-only database serves reads and answers writes 503
    store_unavailable saying what to do; made writable again, it loses nothing."""
    root, log = project(tmp_path)
    first = start(hosts, root, log)
    ids = [f"ro-{i}" for i in range(3)]
    async with api_on(first) as api:
        for id in ids:
            assert (await create(api, id, {"steps": 2}))[0] == 201
        await wait_all(api, ids, "complete")
    assert first.stop() == 0

    folder = root / ".durableflow"
    with mounted(folder, "--bind", str(folder)):
        why = _mount("-o", "remount,ro,bind", str(folder))
        if why is not None:
            pytest.skip(why)
        host = start(hosts, root, log)
        async with api_on(host) as api:
            listed = await api.ok("GET", "/api/workflows/counted/instances")
            assert {i["id"] for i in listed["instances"]} == set(ids)
            detail = await api.ok("GET", f"/api/workflows/counted/instances/{ids[0]}")
            assert detail["status"] == "complete"
            got, answer = await create(api, "refused")
            assert got == 503, answer
            assert answer["error"]["code"] == "store_unavailable"
            message = answer["error"]["message"]
            assert "read-only" in message and str(folder / "state.db") in message
            assert "writable" in message
            got, answer = await api.call(
                "POST", f"/api/workflows/counted/instances/{ids[0]}/events/go", {}
            )
            assert got in (409, 503), answer  # complete instances take no events anyway
        assert host.stop() == 0
        assert "read-only" in host.output()
        assert "Traceback" not in host.output()

    again = start(hosts, root, log)
    async with api_on(again) as api:
        assert (await create(api, "writable-again", {"steps": 2}))[0] == 201
        await wait_all(api, [*ids, "writable-again"], "complete")
    assert_each_step_ran_once(log, [*ids, "writable-again"], 2)


# --- SQLite: the database file deleted while serving ------------------------------------
async def test_deleted_sqlite_file_refuses_writes_and_is_rescued(
    tmp_path: Path, hosts: HostFactory
) -> None:
    """A SQLite file deleted under a running host is noticed: writes answer 503 naming the
    file, reads go on, a copy is saved, and a start on the empty folder warns loudly."""
    root, log = project(tmp_path)
    db = root / ".durableflow" / "state.db"
    host = start(hosts, root, log)
    assert "does not exist" not in host.output(), "a first start is not a lost database"
    ids = [f"kept-{i}" for i in range(3)]
    async with api_on(host) as api:
        for id in ids:
            assert (await create(api, id, {"steps": 2}))[0] == 201
        await wait_all(api, ids, "complete")

        db.unlink()
        got, answer = await create(api, "after-delete")
        assert got == 503, answer
        assert answer["error"]["code"] == "store_unavailable"
        assert str(db) in answer["error"]["message"]
        assert "deleted" in answer["error"]["message"]
        detail = await api.ok("GET", f"/api/workflows/counted/instances/{ids[0]}")
        assert detail["status"] == "complete"
        rescued = await eventually(
            lambda: sorted(db.parent.glob("state.db.rescued-*")),
            timeout=10,
            message="a copy of the deleted database is saved",
        )
    assert host.stop() == 0
    assert "was deleted while the host was running" in host.output()

    # a start on the folder without its database says so, loudly, and never replays the
    # lost database's WAL into the new one
    stale_wal = (db.parent / "state.db-wal").exists()
    empty = start(hosts, root, log)
    assert "WARNING" in empty.output() and "does not exist" in empty.output()
    if stale_wal:
        assert list(db.parent.glob("state.db-wal.orphaned-*")), "the stale WAL is set aside"
    async with api_on(empty) as api:
        listed = await api.ok("GET", "/api/workflows/counted/instances")
        assert listed["instances"] == []
    assert empty.stop() == 0

    # putting the saved copy back brings every acknowledged instance back
    db.unlink()
    for leftover in db.parent.glob("state.db-*"):
        leftover.unlink()
    rescued[0].rename(db)
    restored = start(hosts, root, log)
    async with api_on(restored) as api:
        listed = await api.ok("GET", "/api/workflows/counted/instances")
        assert {i["id"] for i in listed["instances"]} == set(ids)
        assert (await create(api, "after-restore", {"steps": 2}))[0] == 201
        await wait_all(api, [*ids, "after-restore"], "complete")
    assert_each_step_ran_once(log, [*ids, "after-restore"], 2)


# --- PostgreSQL: a private server, stopped and started ---------------------------------
def _pg_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """A PostgreSQL server of the test's own: initdb'd in a temporary directory."""

    def __init__(self, bin: Path, root: Path) -> None:
        self.bin = bin
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # initdb and postgres refuse to run as root: run them as the postgres user then
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c shared_buffers=16MB -c max_connections=50"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server, stopped and removed at the end of the test."""
    bin = _pg_bin()
    if bin is None:
        require_postgres("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        pytest.skip("no PostgreSQL server binaries")  # pragma: no cover - require skipped
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require_postgres("running as root with no 'postgres' user to start PostgreSQL as")
        if shutil.which("runuser") is None:
            require_postgres("running as root without runuser to start PostgreSQL as 'postgres'")
    root = Path(tempfile.mkdtemp(prefix="durableflow-pg-"))
    server = PrivatePostgres(bin, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_loses_nothing_and_answers_503_fast(
    tmp_path: Path, hosts: HostFactory, private_pg: PrivatePostgres, mode: str
) -> None:
    """While PostgreSQL is down the host answers 503 within [storage] unavailable_timeout,
    Client rides out the restart with retries, and afterwards every acknowledged instance
    finishes with each step run once."""
    # "immediate" is a crash of the database server: it recovers from its own WAL
    root, log = project(tmp_path, '\n[storage]\nunavailable_timeout = "1 second"\n')
    host = start(hosts, root, log, "--storage", private_pg.dsn, "--access-log")
    ids = [f"pg-{i}" for i in range(10)]
    async with api_on(host) as api:
        for id in ids:
            got, answer = await create(api, id, {"steps": 3, "sleep_ms": 3000})
            assert got == 201, answer
        await waiting_after_first_step(api, ids)

        private_pg.stop(mode)
        started = time.monotonic()
        got, answer = await create(api, "during-outage")
        took = time.monotonic() - started
        assert got == 503, answer
        assert answer["error"]["code"] == "store_unavailable"
        assert "unavailable_timeout" in answer["error"]["message"]
        assert took < 4, f"the 503 took {took:.1f}s (unavailable_timeout is 1 s)"
        got, answer = await api.call("GET", f"/api/workflows/counted/instances/{ids[0]}")
        assert got == 503, answer

        # a Client call safe to repeat outlasts a short outage by retrying
        async with durableflow.Client(host.url, retries=6, retry_delay=0.5) as client:
            creating = asyncio.ensure_future(
                client.workflow("counted").create(id="retried", params={"steps": 2})
            )
            await eventually(
                lambda: host.output().count('/api/workflows/counted/instances HTTP/1.1" 503') >= 3,
                timeout=15,
                message="the client's create is answered 503 and retried",
            )
            assert not creating.done(), "the create should still be retrying"
            await asyncio.to_thread(private_pg.start)
            instance = await creating
            assert instance.id == "retried"

        await wait_all(api, [*ids, "retried"], "complete", timeout=60)
        listed = await api.ok("GET", "/api/workflows/counted/instances?limit=100")
        assert {i["id"] for i in listed["instances"]} == {*ids, "retried"}
    assert_each_step_ran_once(log, ids, 3)
    assert_each_step_ran_once(log, ["retried"], 2)
    assert host.stop() == 0
    assert "Traceback" not in host.output()


async def assert_answered(host: HostProcess, method: str, path: str, status: int, n: int) -> None:
    """The host's access log shows ``METHOD PATH`` answered ``status`` exactly ``n`` times
    (the call has returned, so no more are coming; a line may land just after the answer)."""
    line = f'"{method} {path} HTTP/1.1" {status} '
    await eventually(
        lambda: host.output().count(line) == n,
        timeout=5,
        message=f"{method} {path} answered {status} {n} time(s)",
    )


async def test_client_retries_only_calls_safe_to_repeat(
    tmp_path: Path, hosts: HostFactory, private_pg: PrivatePostgres
) -> None:
    """Client retries a 503 on GETs and on create with an id, never on create without an
    id or send_event, and retries an unreachable host before raising."""
    root, log = project(tmp_path, '\n[storage]\nunavailable_timeout = "200 ms"\n')
    host = start(hosts, root, log, "--storage", private_pg.dsn, "--access-log")
    path = "/api/workflows/counted/instances"
    async with durableflow.Client(host.url, retries=2, retry_delay=0.05) as client:
        counted = client.workflow("counted")
        kept = await counted.create(id="kept", params={"steps": 1})
        assert (await kept.result(timeout=30)) == 1  # nothing in flight during the outage
        private_pg.stop("fast")

        with pytest.raises(durableflow.StoreUnavailableError):
            await counted.create(params={"steps": 1})
        await assert_answered(host, "POST", path, 503, 1)  # without an id: sent once
        with pytest.raises(durableflow.StoreUnavailableError):
            await counted.create(id="with-id", params={"steps": 1})
        await assert_answered(host, "POST", path, 503, 1 + 3)  # with an id: retried twice
        with pytest.raises(durableflow.StoreUnavailableError):
            await kept.send_event(type="go", payload={})
        await assert_answered(host, "POST", f"{path}/kept/events/go", 503, 1)
        with pytest.raises(durableflow.StoreUnavailableError):
            await kept.status()
        await assert_answered(host, "GET", f"{path}/kept/status", 503, 3)

        private_pg.start()
        assert (await kept.status()).status == "complete"
    assert host.stop() == 0, host.output()[-4000:]

    # an unreachable host: the GET is tried 1 + retries times, then HostUnreachableError
    async with durableflow.Client(host.url, retries=2, retry_delay=0.2) as client:
        started = time.monotonic()
        with pytest.raises(durableflow.HostUnreachableError):
            await client.workflow("counted").get("kept")
        assert time.monotonic() - started >= 0.2 * 0.75 + 0.4 * 0.75, "it backed off twice"
    assert_each_step_ran_once(log, ["kept"], 1)


# --- kill -9 during batch creates --------------------------------------------------------
def _committed_sqlite(db: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT i.id, s.name FROM steps s JOIN instances i ON i.key = s.instance"
            " WHERE s.status = 'complete' AND s.type = 'do'"
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]) for r in rows}


async def _committed_pg(url: str) -> set[tuple[str, str]]:
    schema = url.rpartition("schema=")[2]
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(
            f'SELECT i.id, s.name FROM "{schema}".steps s JOIN "{schema}".instances i'
            " ON i.key = s.instance WHERE s.status = 'complete' AND s.type = 'do'"
        )
    finally:
        await conn.close()
    return {(r[0], r[1]) for r in rows}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """``None`` for the project's SQLite file, or a fresh schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"faults_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    try:
        yield f"{PG_DSN}{separator}schema={schema}"
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_kill_9_during_batch_creates_loses_no_acknowledged_batch(
    tmp_path: Path, hosts: HostFactory, store_url: str | None
) -> None:
    """kill -9 while batches are being created: every batch answered 201 is there whole
    after a restart, no batch is there in part, and no step whose result was stored runs
    again."""
    root, log = project(tmp_path)
    args = ("--storage", store_url) if store_url else ()
    host = start(hosts, root, log, *args)
    acknowledged: list[list[str]] = []
    sent: list[list[str]] = []

    async def flood(api: Api) -> None:
        for n in range(10_000):
            ids = [f"b{n}-{i}" for i in range(10)]
            sent.append(ids)
            body = {"instances": [{"id": id, "params": {"steps": 2}} for id in ids]}
            try:
                got, _ = await api.call("POST", "/api/workflows/counted/instances/batch", body)
            except (aiohttp.ClientError, json.JSONDecodeError, AssertionError):
                return  # the host died under the request
            if got == 201:
                acknowledged.append(ids)

    async with api_on(host) as api:
        flooding = asyncio.ensure_future(flood(api))
        await eventually(
            lambda: len(acknowledged) >= 20 and step_runs(log),
            timeout=30,
            message="batches acknowledged and steps running",
        )
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait()
        await flooding
    runs_at_kill = step_runs(log)
    committed = (
        await _committed_pg(store_url)
        if store_url
        else _committed_sqlite(root / ".durableflow" / "state.db")
    )
    assert committed, "the kill should land after some steps were stored"

    again = start(hosts, root, log, *args)
    acked_ids = [id for batch in acknowledged for id in batch]
    async with api_on(again) as api:
        present = await listed_ids(api)
        lost = set(acked_ids) - present
        assert not lost, f"acknowledged instances lost: {sorted(lost)[:5]}"
        for batch in sent:
            inside = present & set(batch)
            assert inside in (set(), set(batch)), f"a batch is stored in part: {sorted(inside)}"
        await wait_all(api, sorted(present), "complete", timeout=90)
    runs = step_runs(log)
    rerun = sorted(key for key in committed if runs[key] != runs_at_kill[key])
    assert not rerun, f"steps whose result was stored ran again: {rerun[:5]}"
    more_than_once = {key: n for key, n in runs.items() if n > runs_at_kill.get(key, 0) + 1}
    assert not more_than_once, f"steps ran again more than once: {more_than_once}"
    missing = {(id, f"s{i}") for id in present for i in range(2)} - set(runs)
    assert not missing, f"steps never ran: {sorted(missing)[:5]}"
    assert again.stop() == 0
