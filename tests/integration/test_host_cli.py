"""The ``durableflow`` client commands against a live host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import eventually_sync

from .conftest import DURABLEFLOW, HostProcess, copy_project, run_cli


def cli(host: HostProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--url", host.url)


def ok(host: HostProcess, *args: str) -> str:
    result = cli(host, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_workflows_list_table_and_json(shared_host: HostProcess) -> None:
    """`workflows list` prints a table of the host's workflows, or JSON with --json."""
    table = ok(shared_host, "workflows", "list").splitlines()
    assert table[0].split() == ["NAME", "BINDING", "CLASS", "PARAMS"]
    assert table[1].split() == ["echo", "ECHO", "EchoWorkflow", "Greeting"]
    data = json.loads(ok(shared_host, "workflows", "list", "--json"))
    assert [w["name"] for w in data["workflows"]] == ["echo", "waiter", "sleeper", "gate", "flaky"]


def test_trigger_list_and_describe(shared_host: HostProcess) -> None:
    """`trigger` prints the new id; `instances list` and `describe` show it and its steps."""
    out = ok(shared_host, "trigger", "echo", "--id", "cli-1", "--params", '{"name": "cli"}')
    assert out.strip() == "cli-1"
    eventually_sync(
        lambda: shared_host.get_json("/api/workflows/echo/instances/cli-1")["status"] == "complete"
    )
    listed = ok(shared_host, "instances", "list", "echo", "--status", "complete")
    header, *rows = listed.splitlines()
    assert header.split() == ["ID", "STATUS", "VERSION", "CREATED", "ENDED", "ERROR"]
    assert any(row.split()[:2] == ["cli-1", "complete"] for row in rows)

    described = ok(shared_host, "instances", "describe", "echo", "cli-1")
    assert "status    complete" in described
    assert 'params    {"name":"cli"}' in described
    assert '"greeting":"hello cli"' in described
    steps = described[described.index("STEP") :].splitlines()
    assert steps[0].split() == [
        "STEP", "TYPE", "STATUS", "ATTEMPTS", "DURATION", "OUTPUT", "ERROR", "WAKE-UP"
    ]  # fmt: skip
    assert steps[1].split()[:4] == ["greet", "do", "complete", "1"]

    generated = ok(shared_host, "trigger", "echo", "--params", '{"name": "g"}', "--json")
    assert set(json.loads(generated)) == {"id", "status"}


def test_instances_list_filters(shared_host: HostProcess) -> None:
    """`instances list` passes --id-prefix and the created range on to the host."""
    ok(shared_host, "trigger", "echo", "--id", "cf_1", "--params", '{"name": "f"}')
    ok(shared_host, "trigger", "echo", "--id", "cfx2", "--params", '{"name": "f"}')
    listed = json.loads(
        ok(shared_host, "instances", "list", "echo", "--id-prefix", "cf_", "--json")
    )
    assert [i["id"] for i in listed["instances"]] == ["cf_1"]
    args = ["--id-prefix", "cf", "--created-before", "2000-01-01T00:00:00Z", "--json"]
    assert json.loads(ok(shared_host, "instances", "list", "echo", *args))["instances"] == []
    args = ["--id-prefix", "cf", "--created-after", "2000-01-01T00:00:00Z", "--json"]
    listed = json.loads(ok(shared_host, "instances", "list", "echo", *args))
    assert [i["id"] for i in listed["instances"]] == ["cfx2", "cf_1"]


def test_describe_latest_and_errors(shared_host: HostProcess) -> None:
    """`describe NAME latest` shows the newest instance, with its step errors and attempts."""
    ok(shared_host, "trigger", "flaky", "--id", "cli-flaky")
    eventually_sync(
        lambda: (
            shared_host.get_json("/api/workflows/flaky/instances/cli-flaky")["status"] == "errored"
        )
    )
    described = ok(shared_host, "instances", "describe", "flaky", "latest")
    assert "cli-flaky (flaky)" in described
    assert "error     RuntimeError: always fails" in described
    step = described[described.index("STEP") :].splitlines()[1]
    assert step.split()[:4] == ["fail", "do", "failed", "2"]
    assert "RuntimeError: always fails" in step
    data = json.loads(ok(shared_host, "instances", "describe", "flaky", "cli-flaky", "--json"))
    assert data["steps"][0]["attempt_log"][1]["error"]["message"] == "always fails"


def test_control_and_send_event(shared_host: HostProcess) -> None:
    """pause, resume, terminate, restart and send-event steer an instance from the CLI."""
    ok(shared_host, "trigger", "waiter", "--id", "cli-w")
    eventually_sync(
        lambda: shared_host.get_json("/api/workflows/waiter/instances/cli-w")["status"] == "waiting"
    )
    assert ok(shared_host, "instances", "pause", "waiter", "cli-w").strip() == "cli-w: paused"
    assert ok(shared_host, "instances", "resume", "waiter", "cli-w").startswith("cli-w: ")
    sent = ok(
        shared_host,
        "instances", "send-event", "waiter", "cli-w", "--type", "go", "--payload", '{"ok": true}',
    )  # fmt: skip
    assert sent.strip() == "sent event 'go' to cli-w"
    eventually_sync(
        lambda: (
            shared_host.get_json("/api/workflows/waiter/instances/cli-w")["output"]
            == {"got": {"ok": True}}
        )
    )
    restarted = ok(shared_host, "instances", "restart", "waiter", "cli-w")
    assert restarted.startswith("cli-w: ")
    terminated = ok(shared_host, "instances", "terminate", "waiter", "cli-w", "--json")
    assert json.loads(terminated) == {"id": "cli-w", "status": "terminated"}
    result = cli(shared_host, "instances", "resume", "waiter", "cli-w")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: cannot resume instance 'cli-w': it is terminated, not paused"
    )


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["trigger", "nope"], 1, "error: no workflow named 'nope'"),
        (["instances", "describe", "echo", "missing"], 1, "error: no instance 'missing'"),
        (["instances", "describe", "gate", "latest"], 1, "has no instances yet"),
        (["trigger", "echo", "--params", "{bad"], 2, "not valid JSON"),
        (["trigger", "echo", "--params", '{"name": "a", "times": "x"}'], 1, "params.times"),
        (["instances", "list", "echo", "--status", "nap"], 1, "unknown status 'nap'"),
    ],
)
def test_cli_errors_are_one_line(
    shared_host: HostProcess, args: list[str], code: int, fragment: str
) -> None:
    """A failing client command prints one clear line on stderr and exits non-zero."""
    result = cli(shared_host, *args)
    assert result.returncode == code, result
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_host_is_one_line() -> None:
    """A client command with no host to talk to says so in one line."""
    result = run_cli("workflows", "list", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: cannot reach the durableflow host at http://127.0.0.1:9"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_url_defaults_to_the_configs_server(shared_host: HostProcess, tmp_path: Path) -> None:
    """Without --url, client commands use the [server] of ./durableflow.toml (or --config)."""
    port = shared_host.url.rsplit(":", 1)[1]
    project = copy_project(tmp_path / "project")
    toml = project / "durableflow.toml"
    toml.write_text(toml.read_text() + f'\n[server]\nhost = "127.0.0.1"\nport = {port}\n')
    result = run_cli("workflows", "list", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workflows"][0]["name"] == "echo"
    result = run_cli("workflows", "list", "--config", str(toml), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_dev_restarts_the_host_on_code_change(tmp_path: Path) -> None:
    """`durableflow dev` restarts its host when a .py file changes, and exits 0 on SIGTERM."""
    project = copy_project(tmp_path / "project")
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [DURABLEFLOW, "dev", "--port", "0", "--poll", "0.1", "--grace", "1"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ,
        )
        try:
            eventually_sync(lambda: log.read_text().count("serving 5 workflow(s)") == 1, timeout=30)
            app = project / "app.py"
            app.write_text(app.read_text() + "\n# changed\n")
            eventually_sync(lambda: "changed: app.py; restarting" in log.read_text(), timeout=15)
            eventually_sync(lambda: log.read_text().count("serving 5 workflow(s)") == 2, timeout=30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("stopped") == 2  # each child host stopped gracefully
