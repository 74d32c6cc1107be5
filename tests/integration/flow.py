"""Shared by the flow-control and schedule tests: a project per test, hosts on either
store, and the log its workflow writes (``flow_project/app.py``)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import attrs

from .conftest import PG_DSN, Api, HostFactory, HostProcess, _pg, copy_project, require_postgres

FLOW_PROJECT = Path(__file__).with_name("flow_project")


@attrs.frozen
class Line:
    """One line of the log: a step's ``start`` or ``end``."""

    what: str
    id: str
    at: float
    customer: str


@attrs.define
class Project:
    """A copy of ``flow_project`` with its own config, log and store."""

    path: Path
    log: Path
    storage: list[str]

    def start(self, hosts: HostFactory) -> HostProcess:
        return hosts.start(self.path, *self.storage, env={"FLOW_LOG": str(self.log)})

    def lines(self) -> list[Line]:
        if not self.log.exists():
            return []
        found = []
        for raw in self.log.read_text().splitlines():
            what, id, at, customer = raw.split(" ")
            found.append(Line(what, id, float(at), customer))
        return found

    def ended(self) -> set[str]:
        return {line.id for line in self.lines() if line.what == "end"}


def _pg_apart(statement: str) -> str | None:
    """``_pg`` on a thread of its own: the async tests' event loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_pg, statement).result()


@contextmanager
def flow_project(tmp: Path, store: str, config: str) -> Iterator[Project]:
    """A project whose ``durableflow.toml`` ends with ``config``, on ``store`` (a fresh
    PostgreSQL schema, dropped afterwards, or a SQLite file in the project)."""
    path = copy_project(tmp / "project", FLOW_PROJECT)
    (path / "durableflow.toml").write_text(f'main = "app.py"\n\n{config}')
    storage: list[str] = []
    schema = f"flow_{os.getpid()}_{time.monotonic_ns()}"
    if store == "postgres":
        require_postgres(_pg_apart("SELECT 1"))
        separator = "&" if "?" in PG_DSN else "?"
        storage = ["--storage", f"{PG_DSN}{separator}schema={schema}&poll_interval=0.5"]
    try:
        yield Project(path, tmp / "flow.log", storage)
    finally:
        if store == "postgres":
            _pg_apart(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@asynccontextmanager
async def api_of(host: HostProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers=host.headers()) as session:
        yield Api(session, host.url)


def most_at_once(lines: list[Line], until: float | None = None) -> int:
    """The most steps running at one moment, from their start and end lines (a start with
    no end ran until ``until``: a host killed in the middle)."""
    moments: list[tuple[float, int]] = []
    open_starts: dict[str, list[float]] = {}
    for line in lines:
        if line.what == "start":
            moments.append((line.at, 1))
            open_starts.setdefault(line.id, []).append(line.at)
        else:
            moments.append((line.at, -1))
            open_starts[line.id].pop()
    for starts in open_starts.values():
        moments += [(until if until is not None else at, -1) for at in starts]
    running = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):  # ends before starts
        running += change
        most = max(most, running)
    return most
