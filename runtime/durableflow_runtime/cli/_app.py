"""The ``durableflow`` command group, its constants and the helpers every command uses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..config import ConfigError, load_config

if TYPE_CHECKING:
    pass


__all__ = ["fail", "main"]


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


def _load(config_path: Path | None) -> Any:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        fail(exc.message)
