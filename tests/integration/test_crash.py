"""Crash safety: a host killed with SIGKILL loses nothing and re-runs no committed step."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually_sync

from .conftest import HostFactory, _pg, copy_project, storage_args

CHILD = Path(__file__).with_name("crash_child.py")


def _log_counts(log: Path) -> collections.Counter[tuple[str, str]]:
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            instance, step = line.split()
            counts[(instance, step)] += 1
    return counts


def _committed_steps(db: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT i.id, s.name FROM steps s JOIN instances i ON i.key = s.instance"
            " WHERE s.status = 'complete' AND s.type = 'do'"
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]) for r in rows}


def test_sigkill_mid_run_then_restart_finishes_everything(tmp_path: Path) -> None:
    """After kill -9, a new host on the same file finishes all created instances and never
    re-runs a step whose result was committed before the kill."""
    db, log = tmp_path / "state.db", tmp_path / "calls.log"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(log), "300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    created: list[str] = []
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    # kill while instances are still being created and others are mid-run
    while len(created) < 200 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.startswith("created "):
            created.append(line.split()[1])
    assert sum(_log_counts(log).values()) > 0, "the child ran no step before the kill"
    committed = _committed_steps(db)
    child.send_signal(signal.SIGKILL)
    child.wait()
    rest = child.stdout.read()
    child.stdout.close()
    created += [ln.split()[1] for ln in rest.splitlines() if ln.startswith("created ")]
    assert 0 < len(committed) < 300 * 6, "the kill should land mid-run"
    before = _log_counts(log)

    again = subprocess.run(
        [sys.executable, str(CHILD), str(db), str(log)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "all done" in again.stdout, again.stderr
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("SELECT id, status FROM instances").fetchall())
    outputs = {r[0] for r in conn.execute("SELECT output FROM instances")}
    conn.close()
    assert set(created) <= set(statuses), "an instance whose create returned was lost"
    assert set(statuses.values()) == {"complete"}
    assert outputs == {"15"}
    after = _log_counts(log)
    rerun = [key for key in committed if after[key] != before[key]]
    assert rerun == [], f"committed steps ran again after the restart: {rerun[:5]}"
    for instance in statuses:
        for i in range(6):
            assert after[(instance, f"step-{i}")] >= 1
    os.remove(log)


@pytest.mark.slow
def test_postgres_host_killed_and_restarted_resumes_at_once(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """``durableflow serve`` on PostgreSQL, killed with -9 mid-step and started again on the
    same machine and database with no host id given, takes back its leases at once: the
    instance resumes long before its 60 s lease would have run out."""
    schema = f"crash_{os.getpid()}_{time.monotonic_ns()}"
    project = copy_project(tmp_path / "project")
    args = storage_args("postgres", schema)
    args[-1] += "&lease_seconds=60"
    try:
        host = hosts.start(project, *args)
        gate, started = tmp_path / "gate", tmp_path / "started"
        body = {"id": "g1", "params": {"gate": str(gate), "started": str(started)}}
        request = urllib.request.Request(
            host.url + "/api/workflows/gate/instances",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        eventually_sync(started.exists, timeout=30, message="the step to start")
        host.stop(signal.SIGKILL)
        started.unlink()
        gate.write_text("open")
        host = hosts.start(project, *args)

        def complete() -> Any:
            detail = host.get_json("/api/workflows/gate/instances/g1")
            return detail if detail["status"] == "complete" else None

        # 30 s: well inside the 60 s the lease would otherwise hold the instance
        detail = eventually_sync(complete, timeout=30, message="g1 to complete")
        assert detail["output"] == {"gate": "open"}
        assert started.exists(), "the step did not run again after the restart"
        assert "took back 1 leases" in host.output()
    finally:
        hosts.close()
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
