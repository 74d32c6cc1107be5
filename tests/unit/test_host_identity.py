"""A PostgreSQL host's default identity: the lowest free slot lock on this machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from durableflow import ValidationError
from durableflow_runtime.store.postgres import PostgresStore
from durableflow_runtime.store.postgres._identity import host_slot

DSN = "postgresql://u@db.invalid/app"


def test_hosts_on_one_machine_get_distinct_slots_and_a_freed_one_is_reused(
    tmp_path: Path,
) -> None:
    first = host_slot(DSN, "s", tmp_path)
    second = host_slot(DSN, "s", tmp_path)
    other_schema = host_slot(DSN, "t", tmp_path)
    name = socket.gethostname()
    assert (first.host_id, second.host_id) == (f"{name}:0", f"{name}:1")
    assert other_schema.host_id == f"{name}:0"
    first.release()
    again = host_slot(DSN, "s", tmp_path)
    assert again.host_id == f"{name}:0"
    for slot in (again, second, other_schema):
        slot.release()


def test_a_killed_process_frees_its_slot(tmp_path: Path) -> None:
    """The lock is the kernel's: a process killed with -9 leaves its slot free."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from durableflow_runtime.store.postgres._identity import host_slot
        slot = host_slot({DSN!r}, "s", Path({str(tmp_path)!r}))
        print(slot.host_id, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip().endswith(":0")
    beside = host_slot(DSN, "s", tmp_path)
    assert beside.host_id.endswith(":1")  # slot 0 is the child's
    beside.release()
    child.kill()
    child.wait()
    child.stdout.close()
    after = host_slot(DSN, "s", tmp_path)
    assert after.host_id.endswith(":0")
    after.release()


def test_host_id_from_the_url_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PostgresStore(f"{DSN}?host_id=web-1").host_id == "web-1"
    monkeypatch.setenv("DURABLEFLOW_HOST_ID", "web-2")
    assert PostgresStore(DSN).host_id == "web-2"
    assert PostgresStore(DSN, host_id="web-3").host_id == "web-3"
    with pytest.raises(ValidationError, match="host_id must not be empty"):
        PostgresStore(f"{DSN}?host_id=%20")
