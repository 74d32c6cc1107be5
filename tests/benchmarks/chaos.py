"""Chaos: kill -9 a real ``durableflow serve`` host under load, over and over.

Run:  .venv/bin/python tests/benchmarks/chaos.py [--cycles 50] [--store sqlite|postgres|both]
      .venv/bin/python tests/benchmarks/chaos.py --quick      # 3 cycles, a smoke run

Each cycle starts a host on the same store, creates instances over HTTP from a few
concurrent clients (explicit, unique ids) while the host runs the ones created before,
and after a random 0.3-1.5 s kills the host with SIGKILL, requests in flight. Then:

* **After each kill** the store is read directly (the host is dead): which steps have a
  committed result.
* **After each restart** every instance whose create was acknowledged (HTTP 201) must be
  there: one missing is *lost*. A create whose answer never came (the kill cut it off) may
  or may not exist; those that exist are followed like the acknowledged ones.
* **At the end** a last host runs until every instance is ``complete`` (or a timeout),
  and each output is checked against what the workflow must return.

Every step callback first appends ``cycle step_id`` to a log file (``ctx.step_id`` is
the idempotency key a real side effect would use), so a callback that ran more than once
is counted, and classified: run again after a kill that came *between the callback and
the commit of its result* (the at-least-once window, expected), run again although its
result had been committed before the kill (a bug), or run twice within one host's life
(a bug on one host; on PostgreSQL, a lease lost to a stall).

Prints figures per store; exits 1 when an acknowledged instance is lost, an instance does
not complete with the right output, or a committed step ran again. PostgreSQL is
``DURABLEFLOW_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``), in
a fresh schema dropped at the end; without a server it is skipped, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import attrs

PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DURABLEFLOW = str(Path(sys.executable).with_name("durableflow"))
STEPS = 5  # do-steps per instance, with a durable sleep after the third
WORKFLOW = "chaos"

APP = textwrap.dedent(
    '''
    """The chaos workflow: five steps around a durable sleep; each callback logs itself."""

    from __future__ import annotations

    import asyncio
    import os
    from collections.abc import Awaitable, Callable
    from typing import Any

    from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

    LOG = os.environ["CHAOS_LOG"]
    CYCLE = os.environ["CHAOS_CYCLE"]


    def record(ctx: StepContext, instance_id: str) -> None:
        """One O_APPEND write: whole lines, and kept by the kernel through a kill -9."""
        line = f"{CYCLE} {instance_id} {ctx.name} {ctx.count} {ctx.step_id}\\n"
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


    def work(instance_id: str, value: int) -> Callable[[StepContext], Awaitable[int]]:
        async def callback(ctx: StepContext) -> int:
            record(ctx, instance_id)  # the side effect, with its idempotency key
            await asyncio.sleep(0.01)  # the callback's own work
            return value

        return callback


    class ChaosWorkflow(WorkflowEntrypoint[Any, Any]):
        async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
            n = int(event.payload["n"])
            total = 0
            for i in range(STEPS):
                total += await step.do(f"s{i}", work(event.instance_id, n * (i + 1)))
                if i == 2:
                    await step.sleep("nap", "100 ms")
            return {"n": n, "total": total}


    STEPS = __STEPS__
    '''
).replace("__STEPS__", str(STEPS))

CONFIG = textwrap.dedent(
    f"""
    main = "app.py"

    [server]
    dashboard = false

    [[workflows]]
    name = "{WORKFLOW}"
    class_name = "ChaosWorkflow"
    """
)


def expected_output(n: int) -> dict[str, int]:
    return {"n": n, "total": n * STEPS * (STEPS + 1) // 2}


@attrs.define
class Figures:
    """What one store's run measured."""

    store: str
    cycles: int = 0
    acknowledged: int = 0  # creates answered 201
    unanswered: int = 0  # creates cut off by a kill (no answer)
    unanswered_created: int = 0  # ... of which the instance exists
    lost: list[str] = attrs.field(factory=list)  # acknowledged, then missing
    completed: int = 0
    wrong_output: list[str] = attrs.field(factory=list)
    unfinished: list[str] = attrs.field(factory=list)
    executions: int = 0  # step callbacks run, in all
    steps: int = 0  # distinct steps run
    rerun_after_kill: int = 0  # the kill came between the callback and the commit
    rerun_after_commit: int = 0  # a bug: a committed step ran again
    rerun_same_life: int = 0  # ran twice within one host's life
    extra_runs: int = 0  # executions beyond the first, in all
    seconds: float = 0.0

    def failed(self) -> bool:
        return bool(self.lost or self.wrong_output or self.unfinished or self.rerun_after_commit)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Chaos:
    """One store's run: a project directory, its host processes, the clients."""

    def __init__(self, store: str, args: argparse.Namespace, workdir: Path) -> None:
        self.kind = store
        self.args = args
        self.rng = random.Random(f"{args.seed}-{store}")
        self.project = workdir / store
        self.project.mkdir()
        (self.project / "app.py").write_text(APP)
        (self.project / "durableflow.toml").write_text(CONFIG)
        self.log = self.project / "steps.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.schema = f"chaos_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.tag = uuid.uuid4().hex[:6]
        if store == "sqlite":
            self.storage = f"sqlite:///{self.project / '.durableflow' / 'state.db'}"
        else:
            # short leases: a killed host's instances are taken over 2 s after the kill
            sep = "&" if "?" in PG_DSN else "?"
            self.storage = f"{PG_DSN}{sep}schema={self.schema}&lease_seconds=2&poll_interval=0.5"
        self.proc: subprocess.Popen[bytes] | None = None
        self.figures = Figures(store)
        self.acked: dict[str, int] = {}  # id -> n
        self.unanswered: dict[str, int] = {}
        self.next_n = 0
        # "id/name#count" -> the cycle whose kill found the step's result committed first
        self.committed_after_kill: dict[str, int] = {}

    # --- the host -----------------------------------------------------------------------
    async def start_host(self, cycle: int, session: aiohttp.ClientSession) -> None:
        log = self.project / f"host-{cycle:03d}.log"
        self.proc = self.spawn_host(cycle, log)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the host exited with {self.proc.returncode}; see {log}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(self.url + "/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the host did not answer within 60 s; see {log}")
            await asyncio.sleep(0.05)

    def spawn_host(self, cycle: int, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            return subprocess.Popen(
                [DURABLEFLOW, "serve", "--port", str(self.port), "--storage", self.storage],
                cwd=self.project,
                env={**os.environ, "CHAOS_LOG": str(self.log), "CHAOS_CYCLE": str(cycle)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def kill_host(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop_host(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_host()

    # --- load ---------------------------------------------------------------------------
    async def creator(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        path = f"{self.url}/api/workflows/{WORKFLOW}/instances"
        while not stop.is_set():
            n = self.next_n
            self.next_n += 1
            id = f"{self.tag}-{n}"
            try:
                async with session.post(path, json={"id": id, "params": {"n": n}}) as response:
                    await response.read()
                    if response.status == 201:
                        self.acked[id] = n
                    else:
                        raise RuntimeError(f"create {id}: HTTP {response.status}")
            except (aiohttp.ClientError, TimeoutError):
                self.unanswered[id] = n  # the kill cut it off: it may or may not exist
                return
            await asyncio.sleep(self.args.clients / self.args.rate)

    # --- checks -------------------------------------------------------------------------
    async def listed(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """Every instance the host has: id -> status."""
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            query = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            async with session.get(
                f"{self.url}/api/workflows/{WORKFLOW}/instances", params=query
            ) as response:
                page = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"list: HTTP {response.status}: {page}")
            found.update({i["id"]: i["status"] for i in page["instances"]})
            cursor = page["next_cursor"]
            if not cursor:
                return found

    async def check_nothing_lost(self, session: aiohttp.ClientSession) -> dict[str, str]:
        found = await self.listed(session)
        for id in self.acked:
            if id not in found and id not in self.figures.lost:
                self.figures.lost.append(id)
        return found

    async def committed_steps(self) -> set[str]:
        """Step ids whose result is committed, read from the store while no host runs."""
        sql = (
            "SELECT i.id, s.name, s.count FROM steps s JOIN instances i ON i.key = s.instance"
            " WHERE s.status = 'complete' AND s.type = 'do'"
        )
        if self.kind == "sqlite":
            # read-only: leave the WAL as the kill left it, for the next host to recover
            db = self.project / ".durableflow" / "state.db"
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = conn.execute(sql).fetchall()
            finally:
                conn.close()
        else:
            pg = await asyncpg.connect(PG_DSN, server_settings={"search_path": self.schema})
            try:
                rows = await pg.fetch(sql)
            finally:
                await pg.close()
        return {f"{r[0]}/{r[1]}#{r[2]}" for r in rows}

    async def wait_all_complete(self, session: aiohttp.ClientSession) -> dict[str, str]:
        deadline = time.monotonic() + self.args.finish_timeout
        while True:
            found = await self.listed(session)
            if all(s == "complete" for s in found.values()) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)

    async def check_outputs(self, session: aiohttp.ClientSession, ids: dict[str, int]) -> None:
        semaphore = asyncio.Semaphore(8)

        async def check(id: str, n: int) -> None:
            async with (
                semaphore,
                session.get(f"{self.url}/api/workflows/{WORKFLOW}/instances/{id}/status") as r,
            ):
                body = await r.json()
            if body.get("status") != "complete":
                self.figures.unfinished.append(id)
            elif body["output"] != expected_output(n):
                self.figures.wrong_output.append(id)
            else:
                self.figures.completed += 1

        await asyncio.gather(*(check(id, n) for id, n in ids.items()))

    # --- the run ------------------------------------------------------------------------
    async def run(self) -> Figures:
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                for cycle in range(self.args.cycles):
                    await self.cycle(cycle, session)
                await self.finish(self.args.cycles, session)
            finally:
                self.kill_host()
                if self.kind == "postgres":
                    await drop_schema(self.schema)
        self.figures.seconds = time.monotonic() - started
        return self.figures

    async def cycle(self, cycle: int, session: aiohttp.ClientSession) -> None:
        await self.start_host(cycle, session)
        if cycle > 0:
            await self.check_nothing_lost(session)  # after each restart
        stop = asyncio.Event()
        creators = [
            asyncio.create_task(self.creator(session, stop)) for _ in range(self.args.clients)
        ]
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        self.kill_host()  # requests in flight, steps running
        stop.set()
        await asyncio.gather(*creators)
        for step in await self.committed_steps():
            self.committed_after_kill.setdefault(step, cycle)
        self.figures.cycles += 1
        print(
            f"  {self.kind} cycle {cycle + 1}/{self.args.cycles}: "
            f"{len(self.acked)} acknowledged, {len(self.figures.lost)} lost",
            flush=True,
        )

    async def finish(self, cycle: int, session: aiohttp.ClientSession) -> None:
        """A last host, left running until everything completes; then the checks."""
        await self.start_host(cycle, session)
        found = await self.check_nothing_lost(session)
        for id in self.unanswered:
            if id in found:
                self.figures.unanswered_created += 1
        await self.wait_all_complete(session)
        follow = {**{i: n for i, n in self.unanswered.items() if i in found}, **self.acked}
        await self.check_outputs(session, {i: n for i, n in follow.items() if i in found})
        self.stop_host()
        self.figures.acknowledged = len(self.acked)
        self.figures.unanswered = len(self.unanswered)
        self.count_reruns()

    def count_reruns(self) -> None:
        runs: dict[str, list[int]] = collections.defaultdict(list)
        for line in self.log.read_text().splitlines():
            cycle, id, name, count, _step_id = line.split()
            runs[f"{id}/{name}#{count}"].append(int(cycle))
        figures = self.figures
        figures.steps = len(runs)
        figures.executions = sum(len(cycles) for cycles in runs.values())
        for step, cycles in runs.items():
            if len(cycles) == 1:
                continue
            figures.extra_runs += len(cycles) - 1
            committed = self.committed_after_kill.get(step)
            if len(set(cycles)) < len(cycles):
                figures.rerun_same_life += 1
            elif committed is not None and committed < max(cycles):
                # committed by the kill that ended cycle `committed`, yet run in a later one
                figures.rerun_after_commit += 1
            else:
                figures.rerun_after_kill += 1


async def drop_schema(schema: str) -> None:
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def postgres_missing() -> str | None:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()
    except Exception as exc:
        return f"no PostgreSQL at {PG_DSN} ({type(exc).__name__}: {exc})"
    return None


def report(figures: Figures) -> None:
    f = figures
    reruns = f.rerun_after_kill + f.rerun_after_commit + f.rerun_same_life
    print(f"\n{f.store}: {f.cycles} kill -9 cycles in {f.seconds:.0f} s")
    print(f"  instances acknowledged (201)        {f.acknowledged}")
    print(
        f"  creates cut off by a kill            {f.unanswered} "
        f"({f.unanswered_created} had been created, {f.unanswered - f.unanswered_created} not)"
    )
    print(f"  lost (acknowledged, then missing)    {len(f.lost)} {' '.join(f.lost[:10])}".rstrip())
    print(f"  completed with the right output      {f.completed}")
    print(f"  wrong output                         {len(f.wrong_output)}")
    print(f"  not complete at the end              {len(f.unfinished)}")
    print(f"  step callbacks run                   {f.executions} for {f.steps} steps")
    print(f"  steps whose callback ran again       {reruns} ({f.extra_runs} extra runs)")
    print(f"    kill -9 between callback and commit  {f.rerun_after_kill}")
    print(f"    committed, yet run again (bug)       {f.rerun_after_commit}")
    print(f"    twice in one host's life             {f.rerun_same_life}")


async def main_async(args: argparse.Namespace) -> int:
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if "postgres" in stores:
        missing = await postgres_missing()
        if missing is not None:
            if os.environ.get("CI") == "true" or args.store == "postgres":
                print(f"error: {missing}", file=sys.stderr)
                return 1
            print(f"skipping postgres: {missing}")
            stores.remove("postgres")
    print(
        f"chaos: {args.cycles} cycles per store ({', '.join(stores)}), {args.clients} clients "
        f"creating up to {args.rate:g} instances/s, seed {args.seed}"
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="durableflow-chaos-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for store in stores:
            figures = await Chaos(store, args, workdir).run()
            report(figures)
            failed = failed or figures.failed()
    print(f"\ncommand: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    if failed:
        print("FAILED: an invariant did not hold (see above)", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50, help="kill -9 cycles per store")
    parser.add_argument("--quick", action="store_true", help="3 cycles (a smoke run)")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=4, help="concurrent creating clients")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="creates per second, all clients together"
    )
    parser.add_argument("--seed", default="1", help="seed of the kill timing")
    parser.add_argument(
        "--finish-timeout", type=float, default=300.0, help="seconds for the last host to finish"
    )
    parser.add_argument("--keep", default=None, help="keep the projects and logs in this folder")
    args = parser.parse_args()
    if args.quick:
        args.cycles = 3
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
