"""``durableflow init``: write a small working project to start from."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

import click

from ._app import fail, main

#: The files of a new project, as (template in durableflow_runtime/starter, file written).
FILES = (
    ("app.py.tmpl", "app.py"),
    ("test_app.py.tmpl", "test_app.py"),
    ("durableflow.toml.tmpl", "durableflow.toml"),
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("README.md.tmpl", "README.md"),
)
SQLITE_URL = "sqlite:///.durableflow/state.db"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def project_name(directory: Path) -> str:
    """A distribution name from the directory's name (``My App`` -> ``my-app``)."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name or "workflows"


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option(
    "--postgres",
    is_flag=True,
    help=f"Store state in PostgreSQL ({POSTGRES_URL}; edit durableflow.toml) instead of SQLite.",
)
def init(directory: Path, postgres: bool) -> None:
    """Write a new project into DIRECTORY (default: here): a workflow, its tests, the host's
    config, a pyproject.toml and a README with the commands to run."""
    taken = [name for _, name in FILES if (directory / name).exists()]
    if taken:
        fail(f"{directory} already has {', '.join(taken)}: choose an empty directory")
    values = {
        "name": project_name(directory),
        "storage_url": POSTGRES_URL if postgres else SQLITE_URL,
        "requirement": "durableflow[postgres]>=0.1" if postgres else "durableflow>=0.1",
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        starter = resources.files("durableflow_runtime").joinpath("starter")
        for template, name in FILES:
            text = Template(starter.joinpath(template).read_text()).substitute(values)
            (directory / name).write_text(text)
    except OSError as exc:
        fail(f"cannot write the project into {directory}: {exc.strerror or exc}")
    click.echo(f"wrote a durableflow project into {directory}/ ({', '.join(n for _, n in FILES)})")
    click.echo("next: pip install -e '.[dev]', then pytest, then durableflow serve (see README.md)")
