"""durableflow beside DBOS Transact, on SQLite and PostgreSQL, in one run on one machine.

Run:  .venv/bin/python tests/benchmarks/bench_dbos.py [--quick] [--only NAME[,NAME]]
          [--rounds N] [--chart PATH] [--json PATH] [--max-load L]

Needs the ``bench`` extra (``make setup-bench``: DBOS, psutil, matplotlib) and a
PostgreSQL server (``DURABLEFLOW_TEST_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``), where every PostgreSQL measurement gets a
database of its own (``CREATE DATABASE bench_dbos_...``), dropped afterwards. Every SQLite
measurement gets a new directory.

Every measurement runs in a process of its own, so the two systems never share a process
or an event loop, and the measurements alternate: durableflow, DBOS, DBOS, durableflow,
DBOS, round after round. Scenarios (``--only`` takes these names):

  sequential   200 instances x 10 no-op steps, each awaited before the next starts
  concurrent   2,000 instances x 10 no-op steps submitted at once
  sleepers     100,000 instances sleeping one hour (DBOS: as many as it starts in 120 s)
  wakeups      100 and 10,000 instances whose sleeps end at the same moment
  events       1,000 instances waiting for an event, then the events sent one by one
  recovery     kill -9 with 2,000 instances in flight, then the time to finish them all
  bare         the store's own limit: bare SQLite INSERT + COMMIT and asyncpg INSERT loops

Prints one table of figures with the ratio durableflow / DBOS for each, the targets, and
draws the chart. Figures, never pass/fail: ``--quick`` runs tiny counts in seconds to keep
the script working and claims nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
RESULT_PREFIX = "RESULT "
SCENARIOS = ("bare", "sequential", "concurrent", "sleepers", "wakeups", "events", "recovery")
WORKER_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Setup:
    """One system on one store in one configuration."""

    key: str
    system: str  # "durableflow" | "dbos"
    store: str  # "sqlite" | "postgres"
    config: str = "default"
    label: str = ""

    @property
    def script(self) -> Path:
        return HERE / ("_vs_durableflow.py" if self.system == "durableflow" else "_vs_dbos.py")


DF_SQLITE = Setup("df-sqlite", "durableflow", "sqlite", label="durableflow, SQLite")
DBOS_SQLITE = Setup("dbos-sqlite", "dbos", "sqlite", label="DBOS, SQLite (defaults)")
DBOS_TUNED = Setup("dbos-tuned", "dbos", "sqlite", "tuned", label="DBOS, SQLite (tuned)")
DF_PG = Setup("df-pg", "durableflow", "postgres", label="durableflow, PostgreSQL")
DBOS_PG = Setup("dbos-pg", "dbos", "postgres", label="DBOS, PostgreSQL (defaults)")
DBOS_PG_TUNED = Setup(
    "dbos-pg-tuned", "dbos", "postgres", "tuned", label="DBOS, PostgreSQL (tuned)"
)
# The order of every round: the systems alternate.
SETUPS = (DF_SQLITE, DBOS_SQLITE, DBOS_TUNED, DF_PG, DBOS_PG, DBOS_PG_TUNED)
PEERS = {"sqlite": (DBOS_SQLITE, DBOS_TUNED), "postgres": (DBOS_PG, DBOS_PG_TUNED)}
# DBOS with its defaults has an unbounded executor: this many simultaneous wake-ups start
# thousands of threads queueing for its 20 connections (a trial run failed with
# SQLAlchemy's QueuePool TimeoutError and drove the load average past 100), so they are
# skipped unless --storm is given.
STORM = 1000
DF = {"sqlite": DF_SQLITE, "postgres": DF_PG}


@dataclass
class Counts:
    rounds: int
    sequential: int = 200
    steps: int = 10
    concurrent: int = 2000
    sleepers: int = 100_000
    sleep_cap: float = 120.0
    wakeups: tuple[int, ...] = (100, 10_000)
    events: int = 1000
    recovery: int = 2000
    bare: int = 5000
    bare_full: int = 300
    concurrent_rounds: int = 1
    warmup: int = 20
    lease_seconds: float = 0.0  # durableflow on PostgreSQL: 0 keeps the store's default
    dbos_styles: tuple[str, ...] = ("sync", "async")


QUICK = Counts(
    rounds=1,
    sequential=5,
    concurrent=20,
    sleepers=200,
    sleep_cap=10.0,
    wakeups=(10,),
    events=20,
    recovery=20,
    bare=200,
    bare_full=20,
    warmup=2,
    lease_seconds=1.0,
    dbos_styles=("sync",),
)


@dataclass
class Results:
    """Figures by (scenario, setup key): one dict per round."""

    runs: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    sink: Path | None = None

    def add(self, scenario: str, key: str, figures: dict[str, Any]) -> None:
        self.runs.setdefault(scenario, {}).setdefault(key, []).append(figures)
        if self.sink is not None:  # as it goes, so an interrupted run keeps its figures
            self.sink.write_text(json.dumps({"runs": self.runs}, indent=1))

    def get(self, scenario: str, key: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.get(scenario, {}).get(key, []) if "error" not in r]

    def median(self, scenario: str, key: str, name: str) -> float:
        values = [r[name] for r in self.get(scenario, key) if name in r]
        return statistics.median(values) if values else math.nan

    def first(self, scenario: str, key: str) -> dict[str, Any]:
        got = self.get(scenario, key)
        return got[0] if got else {}


# --- running the workers --------------------------------------------------------------
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@contextmanager
def fresh_store(store: str) -> Iterator[str]:
    """A new SQLite file path, or the DSN of a new PostgreSQL database; removed afterwards."""
    if store == "sqlite":
        tmp = tempfile.mkdtemp(prefix="bench_dbos_")
        try:
            yield str(Path(tmp) / "state.db")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    name = f"bench_dbos_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(PG_DSN)._replace(path=f"/{name}"))
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def worker_command(
    script: Path, scenario: str, setup: Setup | None, url: str, **opts: Any
) -> list[str]:
    cmd = [sys.executable, str(script), scenario, "--url", url]
    if setup is not None:
        cmd += ["--store", setup.store, "--config", setup.config]
    for name, value in opts.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            figures: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return figures
    raise RuntimeError("the worker printed no result")


def run_worker(cmd: list[str]) -> dict[str, Any]:
    """Run one measurement in its own process; its progress goes to our stderr."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, stdout=subprocess.PIPE, text=True, timeout=WORKER_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT:.0f}s"}
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode}"}
    figures = parse_result(done.stdout)
    figures["wall_seconds"] = time.perf_counter() - started
    return figures


def measure(setup: Setup, scenario: str, counts: Counts, **opts: Any) -> dict[str, Any]:
    log(f"- {scenario} {opts} on {setup.label}")
    opts["warmup"] = counts.warmup
    with fresh_store(setup.store) as url:
        figures = run_worker(worker_command(setup.script, scenario, setup, url, **opts))
    if "error" in figures:
        log(f"  FAILED: {figures['error']}")
    return figures


def measure_recovery(setup: Setup, counts: Counts) -> dict[str, Any]:
    """kill -9 a process with instances in flight; time a new one until all are done."""
    n = counts.recovery
    log(f"- recovery n={n} on {setup.label}")
    with fresh_store(setup.store) as url:
        opts: dict[str, Any] = {"n": n, "steps": counts.steps}
        if counts.lease_seconds:
            opts["lease_seconds"] = counts.lease_seconds
        crash = subprocess.Popen(
            worker_command(setup.script, "recovery-crash", setup, url, **opts),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert crash.stdout is not None
        deadline = time.monotonic() + WORKER_TIMEOUT
        ready = False
        while time.monotonic() < deadline:
            line = crash.stdout.readline()
            if not line:
                break
            if line.strip() == "READY":
                ready = True
                break
        os.kill(crash.pid, signal.SIGKILL)
        crash.wait()
        if not ready:
            return {"error": "the first process never had its instances in flight"}
        start = time.perf_counter()
        figures = run_worker(worker_command(setup.script, "recovery-restart", setup, url, **opts))
        if "error" not in figures:
            figures["seconds"] = time.perf_counter() - start
    if "error" in figures:
        log(f"  FAILED: {figures['error']}")
    return figures


def measure_bare(kind: str, n: int) -> dict[str, Any]:
    log(f"- bare {kind} n={n}")
    with fresh_store("postgres" if kind == "asyncpg" else "sqlite") as url:
        return run_worker(worker_command(HERE / "_vs_bare.py", kind, None, url, n=n))


# --- the scenarios --------------------------------------------------------------------
def run_scenarios(
    only: set[str], counts: Counts, results: Results, quick: bool, storm: bool
) -> None:
    c = counts
    if "bare" in only:
        for _ in range(c.rounds):
            results.add("bare", "sqlite-wal", measure_bare("sqlite-wal", c.bare))
            results.add("bare", "sqlite-full", measure_bare("sqlite-full", c.bare_full))
            results.add("bare", "asyncpg", measure_bare("asyncpg", c.bare))
    if "sequential" in only:
        for _ in range(c.rounds):
            for setup in SETUPS:
                styles = c.dbos_styles if setup.system == "dbos" else ("async",)
                for style in styles:
                    figures = measure(
                        setup, "sequential", c, n=c.sequential, steps=c.steps, style=style
                    )
                    results.add(f"sequential-{style}", setup.key, figures)
    if "concurrent" in only:
        for _ in range(c.concurrent_rounds):
            for setup in SETUPS:
                style = "sync" if setup.system == "dbos" else "async"
                figures = measure(
                    setup, "concurrent", c, n=c.concurrent, steps=c.steps, style=style
                )
                results.add("concurrent", setup.key, figures)
    if "sleepers" in only:
        for setup in SETUPS:
            figures = measure(setup, "sleepers", c, n=c.sleepers, cap=c.sleep_cap)
            results.add("sleepers", setup.key, figures)
    if "wakeups" in only:
        for n in c.wakeups:
            for setup in SETUPS:
                storming = setup.system == "dbos" and setup.config == "default" and n > STORM
                if storming and not storm:
                    results.add(f"wakeups-{n}", setup.key, {"skipped": True})
                    continue
                margin = wake_margin(results, setup, n, quick)
                figures = measure(setup, "wakeups", c, n=n, margin=f"{margin:.1f}")
                figures["margin"] = margin
                results.add(f"wakeups-{n}", setup.key, figures)
    if "events" in only:
        for setup in SETUPS:
            results.add("events", setup.key, measure(setup, "events", c, n=c.events))
    if "recovery" in only:
        for setup in SETUPS:
            results.add("recovery", setup.key, measure_recovery(setup, c))


def wake_margin(results: Results, setup: Setup, n: int, quick: bool) -> float:
    """Lead time before the common wake-up: long enough to create every instance first,
    judged from the creation rate the sleepers scenario measured (or a guess)."""
    rate = (
        results.first("sleepers", setup.key).get("instances", 0)
        / results.first("sleepers", setup.key).get("seconds", math.inf)
        if results.get("sleepers", setup.key)
        else 0.0
    )
    if not rate or not math.isfinite(rate):
        rate = 2000.0 if setup.system == "durableflow" else 40.0
    return min(300.0, max(3.0, 3.0 + 1.5 * n / rate)) if not quick else 1.5


# --- the table ------------------------------------------------------------------------
def fmt(value: float, digits: int = 0) -> str:
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 100 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "-"
    r = a / b
    return f"{r:.3g}" if r < 10 else f"{r:,.0f}" if r >= 100 else f"{r:.1f}"


@dataclass
class Row:
    scenario: str
    metric: str
    store: str
    df: float
    peers: list[tuple[str, float, str]]  # (config label, value, note)
    digits: int = 1
    limit: str = ""
    note: str = ""


def sequential_best(results: Results, key: str) -> tuple[float, str]:
    """Seconds for the sequential run and the workflow style it came from (DBOS: best)."""
    best = (math.nan, "")
    for style in ("sync", "async"):
        secs = results.median(f"sequential-{style}", key, "seconds")
        if math.isfinite(secs) and not (math.isfinite(best[0]) and best[0] <= secs):
            best = (secs, style)
    return best


def build_rows(results: Results, counts: Counts) -> list[Row]:
    rows: list[Row] = []
    c = counts
    bare_wal = results.median("bare", "sqlite-wal", "seconds_per_commit")
    bare_pg = results.median("bare", "asyncpg", "seconds_per_commit")
    bare_of = {"sqlite": bare_wal, "postgres": bare_pg}
    for store in ("sqlite", "postgres"):
        df_secs, _ = sequential_best(results, DF[store].key)
        peer_secs = [(p, *sequential_best(results, p.key)) for p in PEERS[store]]
        n, steps = c.sequential, c.sequential * c.steps
        rows.append(
            Row(
                "sequential",
                "workflows/s",
                store,
                n / df_secs,
                [(p.config, n / s, st) for p, s, st in peer_secs],
            )
        )
        per_step_df = df_secs / steps * 1000
        bare = bare_of[store] * 1000
        rows.append(
            Row(
                "sequential",
                "ms per step (lower is better)",
                store,
                per_step_df,
                [(p.config, s / steps * 1000, st) for p, s, st in peer_secs],
                digits=3,
                limit=f"{per_step_df / bare:.1f}x bare commit" if math.isfinite(bare) else "",
            )
        )
    for store in ("sqlite", "postgres"):
        n = c.concurrent
        df_secs = results.median("concurrent", DF[store].key, "seconds")
        peer = [(p.config, results.median("concurrent", p.key, "seconds")) for p in PEERS[store]]
        rows.append(
            Row(
                "concurrent",
                "workflows/s",
                store,
                n / df_secs,
                [(cf, n / s, "sync") for cf, s in peer],
            )
        )
        rows.append(
            Row(
                "concurrent",
                "steps/s",
                store,
                n * c.steps / df_secs,
                [(cf, n * c.steps / s, "sync") for cf, s in peer],
                limit=(
                    f"{n * c.steps / df_secs * bare_of[store]:.2f}x bare commit rate"
                    if math.isfinite(bare_of[store])
                    else ""
                ),
            )
        )
    for store in ("sqlite", "postgres"):
        df = results.first("sleepers", DF[store].key)
        peers = [(p.config, results.first("sleepers", p.key)) for p in PEERS[store]]

        def per(fig: dict[str, Any], name: str) -> float:
            got = fig.get("instances", 0)
            return fig[name] / got if got and name in fig else math.nan

        def scale(fig: dict[str, Any]) -> str:
            if not fig or fig.get("complete", False):
                return ""
            return f"stopped by the {c.sleep_cap:.0f} s cap on starting"

        rows.append(
            Row(
                "sleepers",
                "instances asleep",
                store,
                df.get("instances", math.nan),
                [(cf, f.get("instances", math.nan), scale(f)) for cf, f in peers],
                digits=0,
            )
        )
        rows.append(
            Row(
                "sleepers",
                "creation rate, instances/s",
                store,
                per_rate(df),
                [(cf, per_rate(f), "") for cf, f in peers],
            )
        )
        rows.append(
            Row(
                "sleepers",
                "host RSS growth, bytes/instance (lower is better)",
                store,
                per(df, "rss_growth"),
                [(cf, per(f, "rss_growth"), "") for cf, f in peers],
                digits=0,
            )
        )
        rows.append(
            Row(
                "sleepers",
                "store bytes/instance (lower is better)",
                store,
                per(df, "store_growth"),
                [(cf, per(f, "store_growth"), "") for cf, f in peers],
                digits=0,
            )
        )
    for n in c.wakeups:
        for store in ("sqlite", "postgres"):
            df = results.first(f"wakeups-{n}", DF[store].key)
            peers = [(p.config, results.first(f"wakeups-{n}", p.key)) for p in PEERS[store]]
            for pct in ("p50", "p99"):
                rows.append(
                    Row(
                        f"wake-ups x{n:,}",
                        f"lateness {pct}, ms (lower is better)",
                        store,
                        df.get(f"late_{pct}_ms", math.nan),
                        [
                            (cf, f.get(f"late_{pct}_ms", math.nan), wake_note(f, n))
                            for cf, f in peers
                        ],
                        note=wake_note(df, n),
                    )
                )
    for store in ("sqlite", "postgres"):
        df = results.first("events", DF[store].key)
        peers = [(p.config, results.first("events", p.key)) for p in PEERS[store]]
        for pct in ("p50", "p99"):
            rows.append(
                Row(
                    f"events x{c.events:,}",
                    f"send-to-complete {pct}, ms (lower is better)",
                    store,
                    df.get(f"{pct}_ms", math.nan),
                    [(cf, f.get(f"{pct}_ms", math.nan), "") for cf, f in peers],
                )
            )
    for store in ("sqlite", "postgres"):
        df = results.first("recovery", DF[store].key)
        peers = [(p.config, results.first("recovery", p.key)) for p in PEERS[store]]
        rows.append(
            Row(
                f"recovery x{c.recovery:,}",
                "restart to all complete, s (lower is better)",
                store,
                df.get("seconds", math.nan),
                [(cf, f.get("seconds", math.nan), recovery_note(f)) for cf, f in peers],
                digits=2,
                note=recovery_note(df),
            )
        )
    return rows


def per_rate(fig: dict[str, Any]) -> float:
    return fig["instances"] / fig["seconds"] if fig.get("seconds") else math.nan


def wake_note(fig: dict[str, Any], n: int) -> str:
    if not fig:
        return ""
    if fig.get("skipped"):
        return "not run: thread storm with the default unbounded executor (see the docs)"
    parts = []
    if fig.get("instances", n) < n:
        parts.append(f"{fig['instances']:,} created before the wake time")
    if fig.get("invalid"):
        parts.append("not all asleep at the wake time")
    return "; ".join(parts)


def recovery_note(fig: dict[str, Any]) -> str:
    if not fig:
        return ""
    note = f"{fig.get('incomplete_at_restart', 0):,} unfinished at the kill"
    if not fig.get("ok", True):
        note += f"; only {fig.get('complete', 0):,} complete"
    return note


CONFIG_NAMES = {"default": "defaults", "tuned": "tuned"}


def render_table(rows: list[Row]) -> str:
    """The table as GitHub markdown (it also reads well in a terminal)."""
    head = (
        "| scenario | metric | store | durableflow | DBOS | DBOS config | durableflow / DBOS "
        "| vs the store's limit | notes |"
    )
    lines = [head, "|" + " --- |" * 9]
    for row in rows:
        for i, (config, value, note) in enumerate(row.peers):
            cfg = CONFIG_NAMES.get(config, config)
            if note in ("sync", "async"):
                cfg, note = f"{cfg}, {note} workflows", ""
            notes = "; ".join(
                x
                for x in (
                    f"durableflow: {row.note}" if i == 0 and row.note else "",
                    f"DBOS: {note}" if note else "",
                )
                if x
            )
            lines.append(
                f"| {row.scenario if i == 0 else ''} | {row.metric if i == 0 else ''} "
                f"| {row.store if i == 0 else ''} | {fmt(row.df, row.digits) if i == 0 else ''} "
                f"| {fmt(value, row.digits)} | {cfg} | {ratio(row.df, value)} "
                f"| {row.limit if i == 0 else ''} | {notes} |"
            )
    return "\n".join(lines)


def render_references(results: Results) -> str:
    wal = results.median("bare", "sqlite-wal", "seconds_per_commit")
    full = results.median("bare", "sqlite-full", "seconds_per_commit")
    pg = results.median("bare", "asyncpg", "seconds_per_commit")
    return "\n".join(
        [
            "| the store's own limit | per commit | commits/s |",
            "| --- | --- | --- |",
            f"| bare SQLite INSERT + COMMIT (WAL, synchronous=NORMAL) | {fmt(wal * 1e6, 1)} us | {fmt(1 / wal)} |",
            f"| bare SQLite INSERT + COMMIT (rollback journal, synchronous=FULL) | {fmt(full * 1e6, 1)} us | {fmt(1 / full)} |",
            f"| bare asyncpg INSERT (autocommit, awaited one by one) | {fmt(pg * 1e6, 1)} us | {fmt(1 / pg)} |",
        ]
    )


# --- the targets ----------------------------------------------------------------------
def targets(
    rows: list[Row], results: Results, counts: Counts
) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met); met is None where the run did not measure it."""

    def find(scenario: str, metric: str, store: str) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r.scenario.startswith(scenario)
                and r.metric.startswith(metric)
                and r.store == store
            ),
            None,
        )

    def versus(row: Row | None, config: str) -> float:
        if row is None:
            return math.nan
        for cf, value, _ in row.peers:
            if cf == config:
                return row.df / value if value else math.nan
        return math.nan

    out: list[tuple[str, str, bool | None]] = []

    def check(name: str, value: float, goal: float, unit: str, higher: bool) -> None:
        if not math.isfinite(value):
            out.append((name, "not measured", None))
            return
        met = value >= goal if higher else value <= goal
        out.append((name, f"{value:,.3g}{unit}", met))

    for store, goal in (("sqlite", 10.0), ("postgres", 5.0)):
        row = find("sequential", "workflows/s", store)
        for config in [p.config for p in PEERS[store]]:
            label = f"sequential >= {goal:g}x DBOS ({store}, DBOS {CONFIG_NAMES[config]})"
            check(label, versus(row, config), goal, "x", True)
    for store, goal in (("sqlite", 20.0), ("postgres", 5.0)):
        row = find("concurrent", "workflows/s", store)
        for config in [p.config for p in PEERS[store]]:
            label = f"concurrent >= {goal:g}x DBOS ({store}, DBOS {CONFIG_NAMES[config]})"
            check(label, versus(row, config), goal, "x", True)
    for store in ("sqlite", "postgres"):
        fig = results.first("sleepers", DF[store].key)
        got = fig.get("instances", 0)
        value = fig["rss_growth"] / got if got else math.nan
        check(
            f"<= 1 KiB host RSS per sleeper at {counts.sleepers:,} ({store})",
            value,
            1024,
            " bytes",
            False,
        )
    for n in counts.wakeups:
        goal = 50.0 if n == min(counts.wakeups) else 1000.0
        for store in ("sqlite", "postgres"):
            value = results.first(f"wakeups-{n}", DF[store].key).get("late_p99_ms", math.nan)
            check(
                f"wake-up lateness p99 <= {goal:g} ms at {n:,} ({store})", value, goal, " ms", False
            )
    seq = find("sequential", "ms per step", "sqlite")
    bare = results.median("bare", "sqlite-wal", "seconds_per_commit") * 1000
    check(
        "sequential per-step cost <= 3x the bare SQLite commit",
        seq.df / bare if seq is not None else math.nan,
        3.0,
        "x",
        False,
    )
    return out


def render_targets(items: list[tuple[str, str, bool | None]]) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for name, value, met in items:
        lines.append(f"| {name} | {value} | {'-' if met is None else 'yes' if met else 'NO'} |")
    return "\n".join(lines)


# --- the chart ------------------------------------------------------------------------
def chart(results: Results, counts: Counts, path: Path) -> None:
    """Throughput and per-step cost per system and store, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        s.label.replace(", ", "\n", 1).replace(" (", "\n(").replace("PostgreSQL", "Postgres")
        for s in SETUPS
    ]
    colors = ["#2b7bba" if s.system == "durableflow" else "#d9822b" for s in SETUPS]
    seq = [counts.sequential / sequential_best(results, s.key)[0] for s in SETUPS]
    conc = [counts.concurrent / results.median("concurrent", s.key, "seconds") for s in SETUPS]
    per_step = [
        sequential_best(results, s.key)[0] / (counts.sequential * counts.steps) * 1e3
        for s in SETUPS
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6))
    for ax, values, title, unit in (
        (
            axes[0],
            seq,
            f"Sequential: {counts.sequential} x {counts.steps} no-op steps",
            "workflows/s",
        ),
        (
            axes[1],
            conc,
            f"Concurrent: {counts.concurrent:,} x {counts.steps} at once",
            "workflows/s",
        ),
        (axes[2], per_step, "Sequential: cost per step", "ms per step (lower is better)"),
    ):
        clean = [v if math.isfinite(v) else 0.0 for v in values]
        bars = ax.bar(range(len(SETUPS)), clean, color=colors)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xticks(range(len(SETUPS)), labels, fontsize=7)
        for bar, v in zip(bars, values, strict=True):
            if math.isfinite(v) and v > 0:
                ax.annotate(
                    f"{v:,.0f}" if v >= 100 else f"{v:.3g}",
                    (bar.get_x() + bar.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    bare_wal = results.median("bare", "sqlite-wal", "seconds_per_commit") * 1e3
    bare_pg = results.median("bare", "asyncpg", "seconds_per_commit") * 1e3
    for value, text, style in (
        (bare_wal, "bare SQLite WAL commit", "--"),
        (bare_pg, "bare asyncpg INSERT", ":"),
    ):
        if math.isfinite(value):
            axes[2].axhline(value, color="gray", linestyle=style, linewidth=1)
            axes[2].annotate(text, (len(SETUPS) - 0.5, value), ha="right", va="bottom", fontsize=7)
    fig.suptitle("durableflow and DBOS Transact on the same machine, same run", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the machine ----------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break

    async def pg_version() -> str:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            version = await conn.fetchval("SHOW server_version")
            sync = await conn.fetchval("SHOW synchronous_commit")
            return f"{version} (synchronous_commit={sync})"
        finally:
            await conn.close()

    try:
        pg = asyncio.run(pg_version())
    except Exception as exc:  # the table still prints; the PostgreSQL rows will say "-"
        pg = f"unreachable ({exc})"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg,
        "dbos": metadata.version("dbos"),
        "durableflow": metadata.version("durableflow"),
        "kernel": platform.release(),
    }


def load() -> float:
    return os.getloadavg()[0]


def wait_for_load(limit: float, patience: float) -> None:
    deadline = time.monotonic() + patience
    while load() >= limit and time.monotonic() < deadline:
        log(f"load average {load():.2f} >= {limit}: waiting")
        time.sleep(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run, no claims")
    parser.add_argument("--only", default="", help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of sequential/bare figures")
    parser.add_argument(
        "--concurrent-rounds", type=int, default=1, help="rounds of the concurrent figures"
    )
    parser.add_argument("--chart", type=Path, help="PNG to draw (default docs/benchmarks-dbos.png)")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: print and draw the figures of a --json file",
    )
    parser.add_argument("--max-load", type=float, default=0.0, help="wait for a lower load first")
    parser.add_argument(
        "--storm",
        action="store_true",
        help=f"also run DBOS with its defaults at more than {STORM:,} simultaneous wake-ups",
    )
    parser.add_argument("--load-patience", type=float, default=1800.0, help="seconds to wait")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()} or set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; pick from {', '.join(SCENARIOS)}"
        )
    counts = (
        QUICK
        if args.quick
        else Counts(rounds=args.rounds, concurrent_rounds=args.concurrent_rounds)
    )
    if args.quick:
        counts.rounds = 1
    if args.max_load:
        wait_for_load(args.max_load, args.load_patience)

    results = Results()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        info, results.runs, elapsed = saved["machine"], saved["runs"], saved["seconds"]
        load_start, load_end = saved["load_start"], saved["load_end"]
    else:
        info = machine()
        load_start = os.getloadavg()
        started = time.perf_counter()
        if args.json:
            results.sink = args.json.with_suffix(".partial.json")
        run_scenarios(only, counts, results, args.quick, args.storm)
        elapsed = time.perf_counter() - started
        load_end = os.getloadavg()

    rows = build_rows(results, counts)
    out = [
        "durableflow vs DBOS Transact"
        + ("  (--quick: tiny counts, no claims)" if args.quick else ""),
        "machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + f"; load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}; run took {elapsed:.0f} s",
        "",
        render_table(rows),
        "",
        render_references(results),
        "",
        "targets: judged on full runs only"
        if args.quick
        else render_targets(targets(rows, results, counts)),
    ]
    failures = [
        f"{scenario} on {key}: {r['error']}"
        for scenario, by_key in results.runs.items()
        for key, runs in by_key.items()
        for r in runs
        if "error" in r
    ]
    if failures:
        out += ["", "measurements that failed:", *(f"  {f}" for f in failures)]
    print("\n".join(out))
    if failures and args.quick:  # the smoke run exists to notice a scenario that broke
        sys.exit(1)

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "load_start": load_start,
                    "load_end": load_end,
                    "seconds": elapsed,
                    "quick": args.quick,
                    "runs": results.runs,
                },
                indent=1,
            )
        )
    chart_path = args.chart
    if chart_path is None and not args.quick and only == set(SCENARIOS):
        chart_path = ROOT / "docs" / "benchmarks-dbos.png"
    if chart_path is None and args.quick:  # draw it anyway, so the chart code cannot rot
        chart_path = Path(tempfile.mkdtemp(prefix="bench_dbos_chart_")) / "chart.png"
    if chart_path is not None and {"sequential", "concurrent"} <= only:
        chart(results, counts, chart_path)
        print(f"\nchart: {chart_path}")


if __name__ == "__main__":
    main()
