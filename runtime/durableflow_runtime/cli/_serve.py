"""``durableflow serve`` and ``durableflow dev``: run a host in the foreground."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import DEFAULT_CONFIG_NAME

if TYPE_CHECKING:
    from ..host import Host

from ._app import F, _load, fail, main


def _configure_logging(level: str, style: str) -> None:
    """Log to stderr: ``readable`` lines for a person (``dev``), ``text`` lines, or
    ``json``: one object per record (``time``, ``level``, ``logger``, ``message``, and the
    record's extra fields, such as the access log's)."""
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
                json_ensure_ascii=False,
            )
        )
    elif style == "readable":
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s  %(message)s", "%H:%M:%S"
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
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
    host_id: str | None = None,
    check: str | None = None,
) -> None:
    from ..host import HostOptions, StartupError, run_host  # only the host needs the engine

    config = _load(config_path)
    options = HostOptions(
        host=host,
        port=port,
        storage_url=storage,
        insecure=insecure,
        grace=grace,
        access_log=access_log,
        host_id=host_id,
        check=check,
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
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines or JSON objects (default: [server] log_format, else text).",
)
@click.option(
    "--host-id",
    default=None,
    envvar="DURABLEFLOW_HOST_ID",
    help="This host's identity on a PostgreSQL store, kept across restarts so that a "
    "restarted host takes back its leases at once (default: hostname:slot).",
    show_default=False,
)
@click.option(
    "--check",
    type=click.Choice(["off", "warn", "refuse"]),
    is_flag=False,
    flag_value="refuse",
    default=None,
    help="Replay the in-flight instances against this code: warn serves at once and logs "
    "each of the 1,000 newest per workflow that would not replay, refuse (--check alone) "
    "checks all before serving and exits 1 instead (default: [server] check, else warn).",
)
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    storage: str | None,
    insecure: bool,
    grace: float,
    log_level: str,
    access_log: bool,
    log_format: str | None,
    host_id: str | None,
    check: str | None,
) -> None:
    """Run the host in the foreground; SIGTERM/SIGINT stop it gracefully."""
    _configure_logging(log_level, log_format or _load(config_path).server.log_format)
    _serve(config_path, host, port, storage, insecure, grace, access_log, host_id, check)


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
    _configure_logging(log_level, "readable")
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
    _configure_logging(log_level, "readable")
    _serve(config_path, host, port, storage, insecure, grace, access_log=True)
