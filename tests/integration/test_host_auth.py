"""Bearer-token auth on ``/api``: from ``[server] token`` or ``DURABLEFLOW_TOKEN``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from durableflow import WorkflowError
from durableflow._client import Client

from .conftest import HostFactory, HostProcess, copy_project, run_cli

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def token_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """A host whose config sets a token."""
    project = copy_project(tmp_path_factory.mktemp("auth") / "project")
    toml = project / "durableflow.toml"
    toml.write_text(toml.read_text() + f'\n[server]\ntoken = "{TOKEN}"\n')
    factory = HostFactory()
    try:
        yield factory.start(project, token=TOKEN)
    finally:
        factory.close()


async def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_api_needs_the_token(token_host: HostProcess) -> None:
    """/api answers 401 without a token or with a wrong one, and 200 with the right one."""
    url = token_host.url + "/api/workflows"
    status, body = await _status(url)
    assert status == 401
    assert body == {
        "error": {
            "code": "unauthorized",
            "message": "missing Authorization header: send 'Authorization: Bearer <token>'",
        }
    }
    for header in ("Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        status, body = await _status(url, {"Authorization": header})
        assert status == 401, header
    status, _ = await _status(url, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    status, _ = await _status(token_host.url + "/api/openapi.json")
    assert status == 401
    status, _ = await _status(token_host.url + "/api/nothing")
    assert status == 401  # no probing of routes without the token


async def test_healthz_and_user_routes_are_open(token_host: HostProcess) -> None:
    """GET /healthz and the user's own routes need no token."""
    assert await _status(token_host.url + "/healthz") == (200, {"status": "ok"})
    async with (
        aiohttp.ClientSession() as session,
        session.post(token_host.url + "/greet", json={"params": {"name": "open"}}) as response,
    ):
        assert response.status == 201


async def test_client_with_and_without_token(token_host: HostProcess) -> None:
    """Client(token=...) is let in; without it the 401 is a WorkflowError saying why."""
    async with Client(token_host.url, token=TOKEN) as client:
        assert len(await client.workflows()) == 5
    async with Client(token_host.url) as client:
        with pytest.raises(WorkflowError, match="Authorization"):
            await client.workflows()


def test_cli_token_from_option_and_env(token_host: HostProcess) -> None:
    """Client commands take --token, or DURABLEFLOW_TOKEN; without one they fail in one line."""
    url = ["--url", token_host.url]
    assert run_cli("workflows", "list", *url, "--token", TOKEN).returncode == 0
    assert run_cli("workflows", "list", *url, env={"DURABLEFLOW_TOKEN": TOKEN}).returncode == 0
    denied = run_cli("workflows", "list", *url, env={"DURABLEFLOW_TOKEN": ""})
    assert denied.returncode == 1
    assert denied.stderr.strip() == (
        "error: missing Authorization header: send 'Authorization: Bearer <token>'"
    )


async def test_env_token_overrides_the_config(hosts: HostFactory, tmp_path: Path) -> None:
    """DURABLEFLOW_TOKEN protects a host whose config has no token, and wins over the config's."""
    project = copy_project(tmp_path / "project")
    host = hosts.start(project, env={"DURABLEFLOW_TOKEN": "from-env"}, token="from-env")
    url = host.url + "/api/workflows"
    assert (await _status(url))[0] == 401
    assert (await _status(url, {"Authorization": "Bearer from-env"}))[0] == 200
