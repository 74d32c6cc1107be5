"""Starting and stopping a real host: start-up errors, SIGTERM, SIGKILL, one host per file."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from tests.helpers import eventually_sync

from .conftest import HostFactory, HostProcess, copy_project, run_cli

BASE = "/api/workflows"


def _post(host: HostProcess, path: str, body: object) -> object:
    import json
    import urllib.request

    request = urllib.request.Request(
        host.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **host.headers()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _status(host: HostProcess, workflow: str, id: str) -> str:
    status: str = host.get_json(f"{BASE}/{workflow}/instances/{id}")["status"]
    return status


def _wait_status(
    host: HostProcess, workflow: str, id: str, status: str, timeout: float = 15
) -> None:
    eventually_sync(
        lambda: _status(host, workflow, id) == status,
        timeout=timeout,
        message=f"{workflow}/{id} to be {status}",
    )


@pytest.mark.slow
def test_sigterm_exits_zero_and_in_flight_work_continues(
    hosts: HostFactory, tmp_path: Path
) -> None:
    """SIGTERM stops the host with status 0; a step cut off mid-run and a sleeping instance
    both finish after the next start."""
    project = copy_project(tmp_path / "project")
    gate, started = tmp_path / "gate", tmp_path / "started"
    host = hosts.start(project)
    _post(
        host,
        f"{BASE}/gate/instances",
        {"id": "g-1", "params": {"gate": str(gate), "started": str(started)}},
    )
    # longer than the look-ahead: the instance suspends (status waiting)
    _post(host, f"{BASE}/sleeper/instances", {"id": "s-1", "params": {"ms": 5000}})
    eventually_sync(started.exists, message="the gate step to start")
    _wait_status(host, "sleeper", "s-1", "waiting")
    assert host.stop(signal.SIGTERM) == 0
    log = host.output()
    assert "SIGTERM: stopping" in log and "stopped" in log
    assert "Traceback" not in log

    started.unlink()
    again = hosts.start(project)
    eventually_sync(started.exists, message="the gate step to run again after the restart")
    gate.write_text("open")
    _wait_status(again, "gate", "g-1", "complete")
    _wait_status(again, "sleeper", "s-1", "complete")
    detail = again.get_json(f"{BASE}/gate/instances/g-1")
    assert detail["output"] == {"gate": "open"}
    assert detail["steps"][0]["attempts"] == 2  # the cut-off attempt, then the finished one
    assert again.stop(signal.SIGINT) == 0


@pytest.mark.slow
def test_sigkill_then_restart_resumes_everything(hosts: HostFactory, tmp_path: Path) -> None:
    """After kill -9, the next host resumes sleeping (suspended, and held in memory for a
    short sleep), waiting and mid-step instances, and keeps the results committed before
    the kill."""
    project = copy_project(tmp_path / "project")
    gate, started = tmp_path / "gate", tmp_path / "started"
    host = hosts.start(project)
    _post(host, f"{BASE}/waiter/instances", {"id": "w-1"})
    _post(host, f"{BASE}/sleeper/instances", {"id": "s-1", "params": {"ms": 5000}})
    # shorter than the look-ahead: held in memory, its status running, its sleep recorded
    _post(host, f"{BASE}/sleeper/instances", {"id": "s-2", "params": {"ms": 1500}})
    _post(
        host,
        f"{BASE}/gate/instances",
        {"id": "g-1", "params": {"gate": str(gate), "started": str(started)}},
    )
    _post(host, f"{BASE}/echo/instances", {"id": "e-1", "params": {"name": "k"}})
    _wait_status(host, "waiter", "w-1", "waiting")
    _wait_status(host, "sleeper", "s-1", "waiting")
    held = eventually_sync(
        lambda: (
            (d := host.get_json(f"{BASE}/sleeper/instances/s-2"))["steps"][-1]["name"] == "nap"
            and d
        ),
        message="s-2 to sleep",
    )
    assert held["status"] == "running" and held["steps"][-1]["status"] == "waiting"
    _wait_status(host, "echo", "e-1", "complete")
    eventually_sync(started.exists, message="the gate step to start")
    assert host.stop(signal.SIGKILL) == -signal.SIGKILL

    again = hosts.start(project)
    _post(again, f"{BASE}/waiter/instances/w-1/events/go", "after the crash")
    gate.write_text("open")
    _wait_status(again, "waiter", "w-1", "complete")
    _wait_status(again, "sleeper", "s-1", "complete")
    _wait_status(again, "gate", "g-1", "complete")
    _wait_status(again, "sleeper", "s-2", "complete")
    for id in ("s-1", "s-2"):
        sleeper = again.get_json(f"{BASE}/sleeper/instances/{id}")
        assert sleeper["output"] == ["before", "after"]
        assert sleeper["steps"][0]["attempts"] == 1  # committed before the kill: not run again
    assert again.get_json(f"{BASE}/waiter/instances/w-1")["output"] == {"got": "after the crash"}
    assert again.get_json(f"{BASE}/echo/instances/e-1")["status"] == "complete"


def test_second_host_on_the_same_sqlite_file_is_refused(hosts: HostFactory, tmp_path: Path) -> None:
    """A second host on a SQLite file in use exits non-zero with one clear line."""
    project = copy_project(tmp_path / "project")
    first = hosts.start(project)
    second = run_cli("serve", "--port", "0", cwd=project)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"error: {project / '.durableflow' / 'state.db'} is in use by another durableflow "
        "host; one host per SQLite file (use PostgreSQL to run several hosts)"
    ]
    assert first.get_json("/healthz") == {"status": "ok"}


_RESERVED_ROUTE = """
@routes.get("/api/mine")
async def mine(request: web.Request) -> web.Response:
    return web.json_response({})
"""

_NOT_A_WORKFLOW = """
class NotAWorkflow:
    pass
"""


def _edit(project: Path, old: str, new: str, file: str = "durableflow.toml") -> None:
    path = project / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing config", "no config file at"),
        ("class not found", "class 'Missing' not found in app.py"),
        (
            "not a subclass",
            "app.py:NotAWorkflow is not a subclass of durableflow.WorkflowEntrypoint",
        ),
        ("duplicate binding", "binding 'ECHO' is used twice"),
        ("duplicate name", "workflow name 'echo' is used twice"),
        ("invalid name", "invalid workflow name 'bad name'"),
        ("unknown key", "unknown key(s) 'prot' in [server]"),
        ("main missing", "main file 'nope.py' not found"),
        ("main broken", "importing"),
        ("app missing", "app 'app:nothing': app has no attribute 'nothing'"),
        ("bad duration", "invalid step 'timeout' 'ten minutes'"),
        ("public without token", "refusing to listen on 0.0.0.0 without a token"),
        ("reserved route", "route GET /api/mine is on a path the host's API reserves"),
    ],
)
def test_startup_errors_are_one_line(tmp_path: Path, case: str, fragment: str) -> None:
    """Each start-up mistake exits non-zero with one clear line on stderr and no traceback."""
    project = copy_project(tmp_path / "project")
    args = ["serve", "--port", "0"]
    if case == "missing config":
        (project / "durableflow.toml").unlink()
    elif case == "class not found":
        _edit(project, '"EchoWorkflow"', '"Missing"')
    elif case == "not a subclass":
        (project / "app.py").write_text((project / "app.py").read_text() + _NOT_A_WORKFLOW)
        _edit(project, '"EchoWorkflow"', '"NotAWorkflow"')
    elif case == "duplicate binding":
        _edit(project, 'binding = "WAITER"', 'binding = "ECHO"')
    elif case == "duplicate name":
        _edit(project, 'name = "waiter"', 'name = "echo"')
    elif case == "invalid name":
        _edit(project, 'name = "echo"', 'name = "bad name"')
    elif case == "unknown key":
        (project / "durableflow.toml").write_text(
            (project / "durableflow.toml").read_text() + "\n[server]\nprot = 1\n"
        )
    elif case == "main missing":
        _edit(project, 'main = "app.py"', 'main = "nope.py"')
    elif case == "main broken":
        (project / "app.py").write_text("def broken(:\n")
    elif case == "app missing":
        _edit(project, 'app = "app:routes"', 'app = "app:nothing"')
    elif case == "bad duration":
        _edit(project, 'timeout = "2 minutes"', 'timeout = "ten minutes"')
    elif case == "public without token":
        args += ["--host", "0.0.0.0"]
    elif case == "reserved route":
        (project / "app.py").write_text((project / "app.py").read_text() + _RESERVED_ROUTE)
    result = run_cli(*args, cwd=project)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_public_host_with_insecure_or_token_starts(hosts: HostFactory, tmp_path: Path) -> None:
    """A non-loopback host starts with --insecure, or with a token."""
    project = copy_project(tmp_path / "project")
    host = hosts.start(project, "--host", "0.0.0.0", "--insecure")
    assert host.get_json("/healthz") == {"status": "ok"}
    assert host.stop() == 0
    host = hosts.start(project, "--host", "0.0.0.0", env={"DURABLEFLOW_TOKEN": "t0k"}, token="t0k")
    assert host.get_json("/api/workflows")["workflows"]


def test_config_given_as_a_path_elsewhere(hosts: HostFactory, tmp_path: Path) -> None:
    """--config points at a project elsewhere; main and the SQLite file resolve beside it."""
    project = copy_project(tmp_path / "project")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    host = HostProcess(elsewhere, ["--config", str(project / "durableflow.toml")])
    hosts.hosts.append(host)
    host.wait_ready()
    _post(host, f"{BASE}/echo/instances", {"id": "x", "params": {"name": "n"}})
    _wait_status(host, "echo", "x", "complete")
    assert (project / ".durableflow" / "state.db").exists()
    assert not (elsewhere / ".durableflow").exists()


def test_app_factory_is_mounted(hosts: HostFactory, tmp_path: Path) -> None:
    """`app = "module:factory"` builds the application; the API and the env are added to it."""
    project = copy_project(tmp_path / "project")
    (project / "shop.py").write_text(
        textwrap.dedent(
            """
            from aiohttp import web
            from durableflow.web import ENV_KEY

            STARTED = web.AppKey("started", bool)


            async def order(request: web.Request) -> web.Response:
                env = request.app[ENV_KEY]
                instance = await env.ECHO.create(params={"name": "factory"})
                return web.json_response(
                    {"id": instance.id, "started": request.app[STARTED]}, status=201
                )


            async def on_startup(app: web.Application) -> None:
                app[STARTED] = True


            def create_app(env) -> web.Application:
                assert env.ECHO is not None
                app = web.Application()
                app.router.add_post("/order", order)
                app.on_startup.append(on_startup)
                return app
            """
        )
    )
    _edit(project, 'app = "app:routes"', 'app = "shop:create_app"')
    host = hosts.start(project)
    answer = _post(host, "/order", {})
    assert isinstance(answer, dict) and answer["started"] is True
    _wait_status(host, "echo", answer["id"], "complete")
    assert host.get_json("/api/workflows")["workflows"][0]["name"] == "echo"
