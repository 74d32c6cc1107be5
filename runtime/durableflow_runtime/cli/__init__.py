"""The ``durableflow`` command.

``serve`` and ``dev`` run a host; the other commands talk to a running host over HTTP
(``--url``, default from the config's ``[server]``), print tables for people and JSON for
scripts (``--json``). Every failure is one ``error: ...`` line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import importlib

import click

from . import _check, _client, _init, _logs, _serve
from ._app import main

__all__ = ["main"]

# imported for the commands they register on ``main``
_COMMANDS = (_check, _client, _init, _logs, _serve)


def _register_optional_commands() -> None:
    """Add ``durableflow types`` when its module (``durableflow_runtime.typegen``) exists."""
    name = f"{__package__.rpartition('.')[0]}.typegen"
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
