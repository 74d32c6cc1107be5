"""Step options through a real host on both stores: sensitive outputs, delay functions,
RetryableError, the resolved ``ctx.config``, ``workflow_name`` and typed outputs, with
``kill -9`` where replay could change the outcome."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from playwright.async_api import Page, expect

import durableflow
from durableflow import Client, InstanceFailedError, SyncClient
from tests.helpers import eventually

from .conftest import (
    PG_DSN,
    Api,
    HostFactory,
    HostProcess,
    _pg,
    copy_project,
    require_postgres,
    run_cli,
)
from .test_dashboard import needs_chromium
from .test_dashboard import page as page  # the headless chromium fixture

PROJECT = Path(__file__).with_name("options_project")
BASE = "/api/workflows"

pytestmark = pytest.mark.slow


@attrs.frozen
class Store:
    """Where a test's hosts keep their state: the serve arguments that say so."""

    kind: str
    args: tuple[str, ...]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Each test once on SQLite (the project's file) and once on PostgreSQL (a fresh schema,
    the same for every host the test starts, so a restarted host finds the state)."""
    if request.param == "sqlite":
        yield Store("sqlite", ())
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"opts_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    try:
        yield Store("postgres", ("--storage", f"{PG_DSN}{separator}schema={schema}"))
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project", PROJECT)


def _api(host: HostProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers=host.headers())


def _kill9(host: HostProcess) -> None:
    host.proc.send_signal(signal.SIGKILL)
    host.proc.wait(30)


def _sync_result(url: str, output_type: type[Any]) -> Any:
    with SyncClient(url) as client:
        instance = client.workflow("receipts", output_type=output_type).get("o-1")
        assert instance.status().output == instance.result(timeout=10)
        return instance.result(timeout=10)


def _logs_mention(project: Path, text: str) -> list[str]:
    """The host logs of a project that contain ``text``."""
    return [log.name for log in project.glob("host-*.log") if text in log.read_text()]


def _gaps(step: dict[str, Any]) -> list[float]:
    """Seconds from the end of each attempt to the start of the next."""
    log = step["attempt_log"]
    return [
        (
            datetime.fromisoformat(b["started_at"]) - datetime.fromisoformat(a["ended_at"])
        ).total_seconds()
        for a, b in itertools.pairwise(log)
    ]


async def _step_status(api: Api, workflow: str, id: str, name: str, status: str) -> None:
    async def reached() -> bool:
        detail = await api.ok("GET", f"{BASE}/{workflow}/instances/{id}")
        return any(s["name"] == name and s["status"] == status for s in detail["steps"])

    await eventually(reached, timeout=20, message=f"step {name!r} is {status}")


async def test_sensitive_output_is_redacted_on_every_surface_and_real_in_run(
    store: Store, hosts: HostFactory, project: Path
) -> None:
    """A sensitive step's output is "[redacted]" in the HTTP detail, the Client, the CLI
    and the logs, its error is not, and run() gets the real value, also after a kill -9."""
    host = hosts.start(project, *store.args)
    path = f"{BASE}/secrets/instances/s-1"
    token = "tok_seed-7f3a9c"
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok(
            "POST",
            f"{BASE}/secrets/instances",
            {"id": "s-1", "params": {"seed": "seed-7f3a9c"}},
            201,
        )
        detail = await api.wait_status("secrets", "s-1", "waiting")
        [fetch, _wait] = detail["steps"]
        assert fetch["output"] == "[redacted]" and fetch["attempts"] == 2
        assert fetch["attempt_log"][0]["error"] == {
            "name": "ConnectionError",
            "message": "vault sealed, try again",
        }
        status, raw = await api.call("GET", path)
        assert status == 200 and token not in str(raw)
    async with Client(host.url) as client:
        # Client instances have describe() beyond the WorkflowInstance interface
        instance: Any = await client.workflow("secrets").get("s-1")
        described = await instance.describe()
        assert described["steps"][0]["output"] == "[redacted]"
    cli = run_cli("instances", "describe", "secrets", "s-1", "--url", host.url)
    assert cli.returncode == 0, cli.stderr
    assert "[redacted]" in cli.stdout and token not in cli.stdout
    cli_json = run_cli("instances", "describe", "secrets", "s-1", "--url", host.url, "--json")
    assert cli_json.returncode == 0, cli_json.stderr
    assert '"[redacted]"' in cli_json.stdout and token not in cli_json.stdout

    _kill9(host)  # the token is only in the store now
    host = hosts.start(project, *store.args)
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok("POST", f"{path}/events/go", {}, 202)
        detail = await api.wait_status("secrets", "s-1", "complete")
        # replay handed run() the stored token, not the redacted text
        assert detail["output"] == {"used": token.upper(), "workflow": "secrets"}
        assert detail["steps"][0]["output"] == "[redacted]"
        assert detail["steps"][2]["output"] == token.upper()
    assert not _logs_mention(project, token)


async def test_delay_function_sets_the_back_off_and_is_not_called_again_after_kill9(
    store: Store, hosts: HostFactory, project: Path, tmp_path: Path
) -> None:
    """A delay function's result is the back-off; ctx.config shows it as None beside the
    workflow's defaults; a kill -9 during the back-off neither calls it again nor
    shortens the wait."""
    calls = tmp_path / "delay-calls.log"
    host = hosts.start(project, *store.args)
    params = {"calls": str(calls), "delay": "4 seconds"}
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok("POST", f"{BASE}/backoff/instances", {"id": "d-1", "params": params}, 201)
        await _step_status(api, "backoff", "d-1", "flaky", "retrying")
    _kill9(host)
    host = hosts.start(project, *store.args)
    async with _api(host) as session:
        api = Api(session, host.url)
        detail = await api.wait_status("backoff", "d-1", "complete", timeout=30)
    assert calls.read_text().splitlines() == ["1 ConnectionError"]
    flaky = detail["steps"][1]
    assert flaky["attempts"] == 2
    assert _gaps(flaky)[0] >= 3.9
    output = detail["output"]
    # workflow defaults from durableflow.toml, in the full duration grammar
    assert output["defaults"] == {"limit": 2, "delay": 0.25, "backoff": "linear", "timeout": 90.0}
    assert output["flaky"] == {
        "attempt": 2,
        "retries": {"limit": 2, "delay": None, "backoff": "linear"},
        "timeout": 90.0,
        "sensitive": None,
    }
    assert output["workflow"] == "backoff"


async def test_a_delay_function_that_raises_fails_the_step_with_its_error(
    store: Store, hosts: HostFactory, project: Path, tmp_path: Path
) -> None:
    """When the delay function raises, the step fails at once with that error; the attempt
    log keeps what the attempt raised."""
    calls = tmp_path / "delay-calls.log"
    host = hosts.start(project, *store.args)
    params = {"calls": str(calls), "delay": "1 s", "mode": "broken"}
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok("POST", f"{BASE}/backoff/instances", {"id": "d-2", "params": params}, 201)
        detail = await api.wait_status("backoff", "d-2", "errored")
    assert detail["error"] == {"name": "LookupError", "message": "no delay for this error"}
    flaky = detail["steps"][1]
    assert flaky["status"] == "failed" and flaky["attempts"] == 1
    assert flaky["error"]["name"] == "LookupError"
    assert flaky["attempt_log"][0]["error"] == {
        "name": "ConnectionError",
        "message": "attempt 1 failed",
    }
    assert calls.read_text().splitlines() == ["1 ConnectionError"]


async def test_retryable_error_overrides_the_delay_within_the_retry_limit(
    store: Store, hosts: HostFactory, project: Path
) -> None:
    """RetryableError(retry_after="1 s") retries after a second, not the configured hour;
    the retry limit still ends a step that keeps raising it."""
    host = hosts.start(project, *store.args)
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok("POST", f"{BASE}/retry-after/instances", {"id": "r-1", "params": {}}, 201)
        await api.ok(
            "POST", f"{BASE}/retry-after/instances", {"id": "r-2", "params": {"always": True}}, 201
        )
        done = await api.wait_status("retry-after", "r-1", "complete", timeout=30)
        failed = await api.wait_status("retry-after", "r-2", "errored", timeout=30)
    assert done["output"] == 2
    [fetch] = done["steps"]
    assert 0.9 <= _gaps(fetch)[0] < 60
    assert fetch["attempt_log"][0]["error"] == {
        "name": "RetryableError",
        "message": "HTTP 429 on attempt 1",
    }
    [fetch] = failed["steps"]
    assert fetch["attempts"] == 2 and fetch["status"] == "failed"
    assert failed["error"] == {"name": "RetryableError", "message": "HTTP 429 on attempt 2"}


async def test_retry_after_survives_a_kill9_during_the_wait(
    store: Store, hosts: HostFactory, project: Path
) -> None:
    """A retry_after wait is stored like any back-off: after a kill -9 during it, the next
    attempt still waits it out, and runs once."""
    host = hosts.start(project, *store.args)
    params = {"retry_after": "4 seconds"}
    async with _api(host) as session:
        api = Api(session, host.url)
        await api.ok("POST", f"{BASE}/retry-after/instances", {"id": "r-9", "params": params}, 201)
        await _step_status(api, "retry-after", "r-9", "fetch", "retrying")
    _kill9(host)
    host = hosts.start(project, *store.args)
    async with _api(host) as session:
        done = await Api(session, host.url).wait_status("retry-after", "r-9", "complete", 30)
    [fetch] = done["steps"]
    assert done["output"] == 2 and fetch["attempts"] == 2
    assert 3.9 <= _gaps(fetch)[0] < 60


async def test_outputs_are_restored_to_the_return_annotation_of_run(
    store: Store, hosts: HostFactory, project: Path
) -> None:
    """The in-process binding and a Client given output_type restore an attrs output, also
    after a kill -9; a Client without it returns the JSON."""
    from tests.integration.options_project.app import Line, Receipt  # the project's classes

    host = hosts.start(project, *store.args)
    async with Client(host.url) as client:
        receipts = client.workflow("receipts", output_type=Receipt)
        instance = await receipts.create(id="o-1", params={"order_id": "o-1"})
        async with _api(host) as session:
            await _step_status(Api(session, host.url), "receipts", "o-1", "paid", "waiting")
    _kill9(host)
    host = hosts.start(project, *store.args)
    async with Client(host.url) as client:
        receipts = client.workflow("receipts", output_type=Receipt)
        instance = await receipts.get("o-1")
        await instance.send_event(type="paid")
        expected = Receipt("o-1", [Line("A-1", 2)], 42)
        assert await instance.result(timeout=20) == expected
        assert (await instance.status()).output == expected
        plain = await client.workflow("receipts").get("o-1")
        assert await plain.result() == {
            "order_id": "o-1",
            "lines": [{"sku": "A-1", "quantity": 2}],
            "total": 42,
        }
        # SyncClient shares the client's HTTP code: the same restoration
        assert await asyncio.to_thread(_sync_result, host.url, Receipt) == expected
        wrong = client.workflow("receipts", output_type=int)
        with pytest.raises(durableflow.SerializationError, match="does not structure into int"):
            await (await wrong.get("o-1")).result()
    async with _api(host) as session, session.get(host.url + "/receipts/o-1") as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer == {
        "result_type": "Receipt",
        "line_type": "Line",
        "status_output_type": "Receipt",
        "equal": True,
        "total": 42,
    }


async def test_failed_typed_output_still_raises_instance_failed(
    store: Store, hosts: HostFactory, project: Path
) -> None:
    """result() on a typed binding still raises InstanceFailedError for a failed instance."""
    from tests.integration.options_project.app import Receipt

    host = hosts.start(project, *store.args)
    async with Client(host.url) as client:
        receipts = client.workflow("receipts", output_type=Receipt)
        instance = await receipts.create(id="o-2", params={"order_id": "o-2"})
        await instance.terminate()
        with pytest.raises(InstanceFailedError):
            await instance.result(timeout=10)


@needs_chromium
async def test_dashboard_shows_a_sensitive_output_redacted(
    hosts: HostFactory, project: Path, page: Page
) -> None:
    """In the browser, an expanded sensitive step shows "[redacted]" as its output and the
    page holds the token nowhere (the dashboard reads the redacted detail)."""
    host = hosts.start(project)
    token = "tok_dash-91b2"
    async with _api(host) as session:
        api = Api(session, host.url)
        body = {"id": "s-2", "params": {"seed": "dash-91b2"}}
        await api.ok("POST", f"{BASE}/secrets/instances", body, 201)
        await api.wait_status("secrets", "s-2", "waiting")
        await api.ok("POST", f"{BASE}/secrets/instances/s-2/events/go", {}, 202)
        await api.wait_status("secrets", "s-2", "complete")
    await page.goto(host.url + "/dashboard#/workflows/secrets/instances/s-2")
    await expect(page.locator(".tl-row")).to_have_count(3)
    await page.locator('.tl-row[data-type="do"]').first.click()
    await expect(page.locator(".tl-detail")).to_contain_text('"[redacted]"')
    await page.locator('.tl-row[data-type="do"]').nth(1).click()
    await expect(page.locator(".tl-detail").last).to_contain_text(token.upper())
    assert token not in await page.content()
