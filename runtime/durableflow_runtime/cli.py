"""The ``durableflow`` command.

``serve`` and ``dev`` run a host; the other commands talk to a running host over HTTP
(``--url``, default from the config's ``[server]``), print tables for people and JSON for
scripts (``--json``). Every failure is one ``error: ...`` line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import orjson

from durableflow import ValidationError, WorkflowError
from durableflow._client import _HttpApi
from durableflow._duration import to_seconds

from .config import DEFAULT_CONFIG_NAME, TOKEN_ENV, ConfigError, load_config

if TYPE_CHECKING:
    from .host import Host

__all__ = ["main"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

URL_ENV = "DURABLEFLOW_URL"
DEFAULT_URL = "http://127.0.0.1:8787"
CONTROL_ACTIONS = ("pause", "resume", "terminate", "restart")
FINISHED = ("complete", "errored", "terminated")
#: A large prune deletes batch after batch before it answers: wait longer than usual.
PRUNE_TIMEOUT = 600.0


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one ``error:`` line to stderr and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="durableflow", prog_name="durableflow")
def main() -> None:
    """durableflow: durable workflows for Python, self-hosted."""


# --- serve / dev ----------------------------------------------------------------------
def _configure_logging(level: str, readable: bool) -> None:
    if readable:
        fmt = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s  %(message)s"
        datefmt = "%H:%M:%S"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
        datefmt = "%Y-%m-%dT%H:%M:%S%z"
    logging.basicConfig(level=level.upper(), format=fmt, datefmt=datefmt, stream=sys.stderr)
    if level.upper() == "DEBUG":
        logging.getLogger("asyncio").setLevel(logging.INFO)


def _serve_options(func: F) -> F:
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path, dir_okay=True),
            default=None,
            help=f"The config file (default: ./{DEFAULT_CONFIG_NAME}).",
        ),
        click.option("--host", default=None, help="Interface to listen on (default: config)."),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=None,
            help="Port (default: config; 0 picks a free one).",
        ),
        click.option("--storage", default=None, help="Storage URL (default: config)."),
        click.option(
            "--insecure",
            is_flag=True,
            help="Allow listening on a non-loopback interface without a token.",
        ),
        click.option(
            "--grace",
            type=click.FloatRange(0),
            default=10.0,
            show_default=True,
            help="Seconds running steps get to finish at shutdown.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
            default="info",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load(config_path: Path | None) -> Any:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        fail(exc.message)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the host's event loop: uvloop when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    storage: str | None,
    insecure: bool,
    grace: float,
    access_log: bool,
) -> None:
    from .host import HostOptions, StartupError, run_host  # only the host needs the engine

    config = _load(config_path)
    options = HostOptions(
        host=host,
        port=port,
        storage_url=storage,
        insecure=insecure,
        grace=grace,
        access_log=access_log,
    )
    log = logging.getLogger("durableflow.host")

    def ready(running: Host) -> None:
        for address, bound in running.addresses:
            shown = f"[{address}]" if ":" in address else address
            log.info(
                "serving %d workflow(s) on http://%s:%d (storage %s)",
                len(config.workflows),
                shown,
                bound,
                storage or config.storage_url,
            )
            if config.server.dashboard:
                log.info("dashboard on http://%s:%d/dashboard", shown, bound)

    try:
        _run(run_host(config, options, on_ready=ready))
    except StartupError as exc:
        fail(str(exc))
    sys.exit(0)


@main.command()
@_serve_options
@click.option("--access-log", is_flag=True, help="Log every HTTP request.")
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    storage: str | None,
    insecure: bool,
    grace: float,
    log_level: str,
    access_log: bool,
) -> None:
    """Run the host in the foreground; SIGTERM/SIGINT stop it gracefully."""
    _configure_logging(log_level, readable=False)
    _serve(config_path, host, port, storage, insecure, grace, access_log)


_WATCHED_SUFFIXES = (".py", ".toml")
_SKIPPED_DIRS = frozenset(
    {"__pycache__", ".durableflow", ".git", ".venv", "venv", "node_modules", ".mypy_cache"}
)


def _watched_files(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(_WATCHED_SUFFIXES):
                yield Path(directory, name)


def _snapshot(root: Path) -> dict[Path, float]:
    result: dict[Path, float] = {}
    for path in _watched_files(root):
        try:
            result[path] = path.stat().st_mtime
        except OSError:
            continue
    return result


@main.command()
@_serve_options
@click.option(
    "--poll",
    type=click.FloatRange(0.05),
    default=0.5,
    show_default=True,
    help="Seconds between checks for changes.",
)
def dev(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    storage: str | None,
    insecure: bool,
    grace: float,
    log_level: str,
    poll: float,
) -> None:
    """Run serve with readable logs, an access log, and a restart on every code change.

    A supervising process watches the ``.py`` and ``.toml`` files under the config's
    directory and restarts the host when one changes.
    """
    _configure_logging(log_level, readable=True)
    config = _load(config_path)
    log = logging.getLogger("durableflow.dev")
    command = [
        sys.executable,
        "-m",
        "durableflow_runtime",
        "_dev-child",
        "--config",
        str(config.path),
        "--grace",
        str(grace),
        "--log-level",
        log_level,
    ]
    for flag, value in (("--host", host), ("--port", port), ("--storage", storage)):
        if value is not None:
            command += [flag, str(value)]
    if insecure:
        command.append("--insecure")

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def stop_child(child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(grace + 10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    root = config.base_dir
    log.info("watching %s for changes to .py and .toml files", root)
    while not stopping:
        before = _snapshot(root)
        child = subprocess.Popen(command)
        reported_exit = False
        while not stopping:
            time.sleep(poll)
            now = _snapshot(root)
            if now != before:
                changed = sorted(
                    str(p.relative_to(root))
                    for p in set(now) | set(before)
                    if now.get(p) != before.get(p)
                )
                log.info("changed: %s; restarting", ", ".join(changed[:5]))
                break
            if child.poll() is not None and not reported_exit:
                reported_exit = True
                log.warning(
                    "the host exited (status %s); waiting for a change to restart it",
                    child.returncode,
                )
        stop_child(child)
    sys.exit(0)


@main.command("_dev-child", hidden=True)
@_serve_options
def dev_child(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    storage: str | None,
    insecure: bool,
    grace: float,
    log_level: str,
) -> None:
    """The host that ``dev`` supervises."""
    _configure_logging(log_level, readable=True)
    _serve(config_path, host, port, storage, insecure, grace, access_log=True)


# --- client commands ------------------------------------------------------------------
class _Target:
    """Where the client commands send requests, and how they print answers."""

    def __init__(self, url: str, token: str | None, as_json: bool) -> None:
        self.url = url
        self.token = token
        self.as_json = as_json

    def run(self, work: Callable[[_HttpApi], Awaitable[T]], timeout: float = 30.0) -> T:
        async def go() -> T:
            api = _HttpApi(self.url, token=self.token, timeout=timeout)
            try:
                return await work(api)
            finally:
                await api.close()

        try:
            return asyncio.run(go())
        except WorkflowError as exc:
            fail(exc.message)
        except TimeoutError as exc:
            fail(str(exc) or f"the host at {self.url} did not answer in time")

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        else:
            human()


def _client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Config file whose [server] gives the default --url and --token.",
    )
    @click.option(
        "--url", default=None, help=f"Host URL (default: config, ${URL_ENV}, {DEFAULT_URL})."
    )
    @click.option("--token", default=None, help=f"Bearer token (default: ${TOKEN_ENV}, config).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
    @functools.wraps(func)
    def wrapper(
        config_path: Path | None, url: str | None, token: str | None, as_json: bool, **kwargs: Any
    ) -> Any:
        if url is None:
            url = os.environ.get(URL_ENV) or None
        has_config = config_path is not None or Path(DEFAULT_CONFIG_NAME).is_file()
        if (url is None or token is None) and has_config:
            config = _load(config_path)
            url = url or config.server.url
            token = token or config.server.token
        token = token or os.environ.get(TOKEN_ENV) or None
        return func(_Target(url or DEFAULT_URL, token, as_json), **kwargs)

    return wrapper


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def _short_json(value: Any, limit: int = 2000) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_text(error: Any, limit: int = 80) -> str | None:
    if not error:
        return None
    text = f"{error.get('name')}: {error.get('message')}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _duration(start: str | None, end: str | None) -> str | None:
    begin, finish = _parse_time(start), _parse_time(end)
    if begin is None or finish is None:
        return None
    seconds = (finish - begin).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None


def _path(name: str, *rest: str) -> str:
    from urllib.parse import quote

    return "/".join(["/api/workflows", quote(name, safe=""), *(quote(r, safe="") for r in rest)])


@main.group()
def workflows() -> None:
    """Workflows on the running host."""


@workflows.command("list")
@_client_options
def workflows_list(target: _Target) -> None:
    """List the workflows the host runs."""
    data = target.run(lambda api: api.request("GET", "/api/workflows"))
    target.emit(
        data,
        lambda: _table(
            ["name", "binding", "class", "params"],
            [
                (w["name"], w["binding"], w["class_name"], w.get("params_type"))
                for w in data["workflows"]
            ],
        ),
    )


@main.command()
@click.argument("name")
@click.option("--id", "instance_id", default=None, help="The instance id (default: a UUID).")
@click.option("--params", default=None, callback=_json_option, help="Params as JSON.")
@_client_options
def trigger(target: _Target, name: str, instance_id: str | None, params: Any) -> None:
    """Create an instance of workflow NAME and print its id."""
    body: dict[str, Any] = {}
    if instance_id is not None:
        body["id"] = instance_id
    if params is not None:
        body["params"] = params
    data = target.run(lambda api: api.request("POST", _path(name, "instances"), body=body))
    target.emit(data, lambda: click.echo(data["id"]))


@main.group()
def instances() -> None:
    """Instances of a workflow on the running host."""


@instances.command("list")
@click.argument("name")
@click.option("--status", default=None, help="Only instances with this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="The next page, as printed by the previous one.")
@click.option("--id-prefix", default=None, help="Only ids that start with this (literally).")
@click.option(
    "--created-after", default=None, help="Only instances created at or after this ISO time."
)
@click.option("--created-before", default=None, help="Only instances created before this ISO time.")
@_client_options
def instances_list(
    target: _Target,
    name: str,
    status: str | None,
    limit: int,
    cursor: str | None,
    id_prefix: str | None,
    created_after: str | None,
    created_before: str | None,
) -> None:
    """List instances of workflow NAME, newest first."""
    query = {"limit": str(limit)}
    for key, value in (
        ("status", status),
        ("cursor", cursor),
        ("id_prefix", id_prefix),
        ("created_after", created_after),
        ("created_before", created_before),
    ):
        if value:
            query[key] = value
    data = target.run(lambda api: api.request("GET", _path(name, "instances"), query=query))

    def human() -> None:
        _table(
            ["id", "status", "created", "ended", "error"],
            [
                (i["id"], i["status"], i["created_at"], i["ended_at"], _error_text(i["error"], 60))
                for i in data["instances"]
            ],
        )
        if data.get("next_cursor"):
            click.echo(f"more: --cursor {data['next_cursor']}", err=True)

    target.emit(data, human)


async def _resolve_id(api: _HttpApi, name: str, instance_id: str) -> str:
    if instance_id != "latest":
        return instance_id
    page = await api.request("GET", _path(name, "instances"), query={"limit": "1"})
    if not page["instances"]:
        raise WorkflowError(f"workflow {name!r} has no instances yet")
    latest: str = page["instances"][0]["id"]
    return latest


@instances.command("describe")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@_client_options
def instances_describe(target: _Target, name: str, instance_id: str) -> None:
    """Show an instance of workflow NAME: status, params, output, error and every step."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request("GET", _path(name, "instances", resolved))

    data = target.run(work)

    def human() -> None:
        fields = [
            ("instance", f"{data['id']} ({name})"),
            ("status", data["status"]),
            ("created", data["created_at"]),
            ("started", data["started_at"]),
            ("ended", data["ended_at"]),
            ("duration", _duration(data["started_at"], data["ended_at"])),
            ("params", _short_json(data["params"])),
            ("output", _short_json(data["output"]) if data["output"] is not None else None),
            ("error", _error_text(data["error"], 2000)),
        ]
        for label, value in fields:
            click.echo(f"{label:<9} {_cell(value)}")
        click.echo()
        steps = data["steps"]
        if not steps:
            click.echo("no steps yet")
            return
        _table(
            ["step", "type", "status", "attempts", "duration", "error", "wake-up"],
            [
                (
                    s["name"] if s.get("count", 1) == 1 else f"{s['name']} #{s['count']}",
                    s["type"],
                    s["status"],
                    s["attempts"],
                    _duration(s["started_at"], s["ended_at"]),
                    _error_text(s["error"], 60),
                    s["wake_at"] if s["status"] not in ("complete", "failed") else None,
                )
                for s in steps
            ],
        )

    target.emit(data, human)


def _control_command(action: str) -> None:
    @instances.command(action)
    @click.argument("name")
    @click.argument("instance_id", metavar="ID|latest")
    @_client_options
    def command(target: _Target, name: str, instance_id: str) -> None:
        async def work(api: _HttpApi) -> Any:
            resolved = await _resolve_id(api, name, instance_id)
            return await api.request("POST", _path(name, "instances", resolved, action))

        data = target.run(work)
        target.emit(data, lambda: click.echo(f"{data['id']}: {data['status']}"))

    command.__doc__ = f"{action.capitalize()} an instance of workflow NAME."
    command.help = command.__doc__


for _action in CONTROL_ACTIONS:
    _control_command(_action)


@instances.command("send-event")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@click.option("--type", "event_type", required=True, help="The event's type.")
@click.option("--payload", default=None, callback=_json_option, help="The payload as JSON.")
@_client_options
def instances_send_event(
    target: _Target, name: str, instance_id: str, event_type: str, payload: Any
) -> None:
    """Send an event to an instance of workflow NAME."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request(
            "POST",
            _path(name, "instances", resolved, "events", event_type),
            body=payload,
            send_body=True,
        )

    data = target.run(work)
    target.emit(data, lambda: click.echo(f"sent event {event_type!r} to {data['id']}"))


def _older_than(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return to_seconds(value, what="--older-than")
    except ValidationError as exc:
        raise click.BadParameter(exc.message) from None


@instances.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    callback=_older_than,
    help='Delete instances that ended longer ago than this: "7d", "12 hours", "30m".',
)
@click.option(
    "--status",
    type=click.Choice(FINISHED),
    default=None,
    help="Only instances with this status (default: complete, errored and terminated).",
)
@click.option("--workflow", default=None, help="Only this workflow's instances (default: all).")
@_client_options
def instances_prune(
    target: _Target, older_than: float, status: str | None, workflow: str | None
) -> None:
    """Delete finished instances, with their steps and events, that ended long enough ago.

    Running, waiting, paused and queued instances are never deleted.
    """
    body: dict[str, Any] = {"older_than": older_than * 1000}  # milliseconds
    if status is not None:
        body["status"] = status
    if workflow is not None:
        body["workflow"] = workflow
    data = target.run(
        lambda api: api.request("POST", "/api/instances/prune", body=body),
        timeout=PRUNE_TIMEOUT,
    )
    target.emit(data, lambda: click.echo(f"deleted {data['deleted']} instance(s)"))


def _register_optional_commands() -> None:
    """Add ``durableflow types`` when its module (``durableflow_runtime.typegen``) exists."""
    name = f"{__package__}.typegen"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return
        raise
    command = getattr(module, "types_command", None)
    if isinstance(command, click.Command):
        main.add_command(command, "types")


_register_optional_commands()
