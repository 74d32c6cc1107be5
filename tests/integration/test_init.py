"""``durableflow init``: the starter project tests green, type-checks, and runs on a host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import eventually_sync

from .conftest import HostFactory, run_cli

STUBPATH = Path(__file__).parents[1] / "typing" / "stubpath"


def test_init_writes_a_project_that_tests_serves_and_completes(
    tmp_path: Path, hosts: HostFactory
) -> None:
    """init writes a project whose own tests pass and whose code passes mypy --strict; a
    host serves it, and an instance triggered from the CLI completes after its event."""
    project = tmp_path / "My Shop"
    done = run_cli("init", str(project))
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in project.iterdir())
    assert names == ["README.md", "app.py", "durableflow.toml", "pyproject.toml", "test_app.py"]
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "my-shop"
    assert meta["project"]["dependencies"] == ["durableflow>=0.1"]

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    # as an installed durableflow is checked: against its stubs (a checkout puts them
    # first with MYPYPATH, as `make typecheck` does)
    types = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "app.py", "test_app.py"],
        cwd=project,
        env={**os.environ, "MYPYPATH": str(STUBPATH)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert types.returncode == 0, types.stdout + types.stderr

    host = hosts.start(project)
    url = ["--url", host.url]
    created = run_cli("trigger", "welcome", "--id", "ada", "--params", '{"email": "a@x.io"}', *url)
    assert created.returncode == 0, created.stderr

    def waiting_for_confirmation() -> bool:
        detail = host.get_json("/api/workflows/welcome/instances/ada")
        return any(s["type"] == "wait_for_event" for s in detail["steps"])

    eventually_sync(waiting_for_confirmation, timeout=30, message="ada waits for the event")
    sent = run_cli(
        "instances", "send-event", "welcome", "ada", "--type", "email-confirmed",
        "--payload", '{"at": "now"}', *url,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr

    def complete() -> dict[str, object] | None:
        detail: dict[str, object] = host.get_json("/api/workflows/welcome/instances/ada")
        return detail if detail["status"] == "complete" else None

    detail = eventually_sync(complete, timeout=30, message="ada completes")
    assert detail["output"] == {
        "account": "acct-a",
        "confirmed_at": "now",
        "mail": "welcome mail to a@x.io",
    }
    described = run_cli("instances", "describe", "welcome", "ada", "--json", *url)
    assert json.loads(described.stdout)["status"] == "complete"


def test_init_refuses_to_overwrite_and_knows_postgres(tmp_path: Path) -> None:
    """init never overwrites a file (it names the ones in the way); --postgres writes a
    PostgreSQL URL and the postgres extra."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "app.py").write_text("# mine\n")
    refused = run_cli("init", str(tmp_path / "taken"))
    assert refused.returncode == 1
    assert "app.py" in refused.stderr and "empty directory" in refused.stderr
    assert (tmp_path / "taken" / "app.py").read_text() == "# mine\n"

    done = run_cli("init", str(tmp_path / "pg"), "--postgres")
    assert done.returncode == 0, done.stderr
    config = tomllib.loads((tmp_path / "pg" / "durableflow.toml").read_text())
    assert config["storage"]["url"].startswith("postgresql://")
    meta = tomllib.loads((tmp_path / "pg" / "pyproject.toml").read_text())
    assert meta["project"]["dependencies"] == ["durableflow[postgres]>=0.1"]
