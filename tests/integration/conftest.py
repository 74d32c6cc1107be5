"""Helpers for the host tests: a real ``durableflow serve`` process on a temporary project."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from tests.helpers import eventually, eventually_sync

HOST_PROJECT = Path(__file__).with_name("host_project")
DURABLEFLOW = str(Path(sys.executable).with_name("durableflow"))
_READY = re.compile(r"serving \d+ workflow\(s\) on (http://\S+)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: restarts hosts or waits on real time (seconds)")


def copy_project(target: Path, source: Path = HOST_PROJECT) -> Path:
    """A fresh copy of a test project (its SQLite file lands inside it)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".durableflow"))
    return target


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``durableflow ARGS`` to completion."""
    return subprocess.run(
        [DURABLEFLOW, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class HostProcess:
    """One ``durableflow serve`` subprocess; its stderr goes to a file."""

    def __init__(
        self,
        project: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.project = project
        self.token = token
        self.log = project / f"host-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [DURABLEFLOW, "serve", "--port", "0", "--grace", "1", *args],
            cwd=project,
            env={**os.environ, **(env or {})},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> HostProcess:
        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the host exited with {self.proc.returncode}:\n{self.output()}"
                )
            match = _READY.search(self.output())
            return match.group(1) if match else None

        self.url = eventually_sync(ready, timeout=timeout, message="the host to listen")
        return self

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get_json(self, path: str) -> Any:
        """A blocking GET, for synchronous checks."""
        request = urllib.request.Request(self.url + path, headers=self.headers())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One blocking JSON request; ``(status, body)`` whatever the status."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **self.headers()},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


class HostFactory:
    """Starts hosts and makes sure none outlives the test."""

    def __init__(self) -> None:
        self.hosts: list[HostProcess] = []

    def start(
        self,
        project: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        token: str | None = None,
        wait: bool = True,
    ) -> HostProcess:
        host = HostProcess(project, args, env, token)
        self.hosts.append(host)
        return host.wait_ready() if wait else host

    def close(self) -> None:
        for host in self.hosts:
            host.close()


@pytest.fixture
def hosts() -> Iterator[HostFactory]:
    """Start ``durableflow serve`` processes; all are killed at the end of the test."""
    factory = HostFactory()
    try:
        yield factory
    finally:
        factory.close()


PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg(statement: str) -> str | None:
    """Run one statement on the test PostgreSQL; the reason it could not, or ``None``."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except Exception as exc:
        return f"no PostgreSQL at {PG_DSN} ({type(exc).__name__}: {exc})"
    return None


def require_postgres(reason: str | None) -> None:
    """Skip when PostgreSQL does not answer, except under CI, where that is a failure."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires PostgreSQL (set DURABLEFLOW_TEST_PG_DSN)")
    pytest.skip(f"{reason}; set DURABLEFLOW_TEST_PG_DSN or start PostgreSQL to run these")


def storage_args(kind: str, schema: str) -> list[str]:
    """``serve`` arguments for a store of ``kind`` (``sqlite``: the project's file;
    ``postgres``: the test database, in ``schema``); skips when PostgreSQL is missing."""
    if kind == "sqlite":
        return []
    require_postgres(_pg("SELECT 1"))
    separator = "&" if "?" in PG_DSN else "?"
    return ["--storage", f"{PG_DSN}{separator}schema={schema}"]


@contextlib.contextmanager
def project_host(kind: str, project: Path, prefix: str) -> Iterator[HostProcess]:
    """A host on ``project`` with a fresh store of ``kind``, killed (and its PostgreSQL
    schema dropped) at the end."""
    schema = f"{prefix}_{os.getpid()}_{time.monotonic_ns()}"
    factory = HostFactory()
    try:
        yield factory.start(project, *storage_args(kind, schema))
    finally:
        factory.close()
        if kind == "postgres":
            _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    """One host on the test project, shared by a module's tests: once on SQLite, once on
    PostgreSQL (a fresh schema), so the HTTP contract is checked on both stores."""
    project = copy_project(tmp_path_factory.mktemp("shared") / "project")
    args: list[str] = []
    schema = f"host_{os.getpid()}_{time.monotonic_ns()}"
    if request.param == "postgres":
        require_postgres(_pg("SELECT 1"))
        separator = "&" if "?" in PG_DSN else "?"
        args = ["--storage", f"{PG_DSN}{separator}schema={schema}"]
    factory = HostFactory()
    try:
        yield factory.start(project, *args)
    finally:
        factory.close()
        if request.param == "postgres":
            _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Api:
    """JSON over HTTP to a host: ``(status, body)`` for any request."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | str | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        if body is not None:
            data = json.dumps(body)
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, bytes):
            data = io.BytesIO(data)  # aiohttp warns about large raw bodies
        if data is not None and not any(k.lower() == "content-type" for k in headers or {}):
            headers = {**(headers or {}), "Content-Type": "application/json"}
        async with self.session.request(
            method, self.base + path, data=data, headers=headers
        ) as response:
            raw = await response.read()
            if response.status != 204:  # No Content has no body, so no type
                assert response.content_type == "application/json", (response.status, raw[:300])
            return response.status, json.loads(raw) if raw else None

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = await self.call(method, path, body)
        assert got == status, answer
        return answer

    async def wait_status(self, workflow: str, id: str, status: str, timeout: float = 15.0) -> Any:
        """Wait until an instance has ``status``; its detail."""
        path = f"/api/workflows/{workflow}/instances/{id}"

        async def reached() -> Any:
            detail = await self.ok("GET", path)
            return detail if detail["status"] == status else None

        return await eventually(reached, timeout=timeout, message=f"{path} is {status}")


@pytest.fixture
async def api(shared_host: HostProcess) -> Any:
    """An :class:`Api` on the shared host."""
    async with aiohttp.ClientSession(headers=shared_host.headers()) as session:
        yield Api(session, shared_host.url)
