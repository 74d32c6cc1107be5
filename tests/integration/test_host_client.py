"""``durableflow.Client`` against a live host: the same binding types, over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
import pytest

from durableflow import (
    CreateOptions,
    InstanceExistsError,
    InstanceFailedError,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
    Workflow,
    WorkflowError,
    WorkflowInstance,
)
from durableflow._client import Client

from .conftest import HostProcess


@attrs.frozen
class Greeting:
    name: str
    times: int = 1


@pytest.fixture
async def client(shared_host: HostProcess) -> Any:
    async with Client(shared_host.url, timeout=10.0) as client:
        yield client


async def test_workflows(client: Client) -> None:
    """client.workflows() lists the host's workflows."""
    names = [w["name"] for w in await client.workflows()]
    assert names == ["echo", "waiter", "sleeper", "gate", "flaky"]


async def test_create_with_attrs_params_and_result(client: Client) -> None:
    """create() sends attrs params; result() waits for the output."""
    echo = client.workflow("echo", Greeting)
    assert isinstance(echo, Workflow)
    instance = await echo.create(id="cl-1", params=Greeting("cli", times=2))
    assert isinstance(instance, WorkflowInstance)
    assert instance.id == "cl-1"
    assert await instance.result(timeout=10) == {"greeting": "hello cli hello cli", "id": "cl-1"}
    status = await instance.status()
    assert status.status == "complete" and status.error is None
    assert status.output["id"] == "cl-1"


async def test_create_batch_and_get(client: Client) -> None:
    """create_batch() creates all; get() returns a handle on an existing instance."""
    echo = client.workflow("echo", Greeting)
    made = await echo.create_batch(
        [CreateOptions(id="cb-1", params=Greeting("a")), CreateOptions(params=Greeting("b"))]
    )
    assert made[0].id == "cb-1" and len(made) == 2
    again = await echo.get("cb-1")
    assert (await again.result(timeout=10))["greeting"] == "hello a"
    with pytest.raises(NotFoundError, match="no instance 'missing'"):
        await echo.get("missing")


async def test_errors_map_to_sdk_classes(client: Client) -> None:
    """HTTP errors come back as NotFoundError, InstanceExistsError, InvalidParamsError,
    InvalidTransitionError, ValidationError and LimitExceededError."""
    echo = client.workflow("echo")
    with pytest.raises(NotFoundError, match="no workflow named 'nope'"):
        await client.workflow("nope").create()
    await echo.create(id="ce-1", params={"name": "x"})
    with pytest.raises(InstanceExistsError, match="ce-1"):
        await echo.create(id="ce-1", params={"name": "x"})
    with pytest.raises(InvalidParamsError, match=r"params\.times"):
        await echo.create(params={"name": "x", "times": "lots"})
    with pytest.raises(ValidationError, match="invalid instance id"):
        await echo.create(id="-bad", params={"name": "x"})
    with pytest.raises(LimitExceededError):
        await echo.create(params={"name": "x" * (1024 * 1024 + 1)})
    instance = await echo.get("ce-1")
    await instance.result(timeout=10)
    with pytest.raises(InvalidTransitionError, match="cannot terminate"):
        await instance.terminate()
    with pytest.raises(InvalidTransitionError):
        await instance.send_event(type="go", payload=1)
    with pytest.raises(ValidationError):
        client.workflow("bad name")


async def test_control_and_events(client: Client) -> None:
    """pause, resume, send_event and result() steer an instance over HTTP."""
    waiter = client.workflow("waiter")
    instance = await waiter.create(id="cc-1")
    await instance.pause()
    assert (await instance.status()).status in ("paused", "waitingForPause")
    await instance.resume()
    await instance.send_event(type="go", payload={"k": [1, 2]})
    assert await instance.result(timeout=10) == {"got": {"k": [1, 2]}}
    await instance.restart()
    assert (await instance.status()).status in ("queued", "running", "waiting")
    await instance.terminate()
    with pytest.raises(InstanceFailedError) as failed:
        await instance.result(timeout=5)
    assert failed.value.status == "terminated"


async def test_result_of_an_errored_instance(client: Client) -> None:
    """result() raises InstanceFailedError with the error's name and message."""
    instance = await client.workflow("flaky").create()
    with pytest.raises(InstanceFailedError) as failed:
        await instance.result(timeout=10)
    assert failed.value.status == "errored"
    assert failed.value.error_name == "RuntimeError"
    assert failed.value.error_message == "always fails"


async def test_result_waits_without_polling_and_times_out(client: Client) -> None:
    """result(timeout) raises TimeoutError after about that long, and returns as soon as the
    instance ends."""
    instance = await client.workflow("waiter").create()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not end within 0\.5s"):
        await instance.result(timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    waiting = asyncio.ensure_future(instance.result(timeout=20))
    await asyncio.sleep(0)
    await instance.send_event(type="go", payload="now")
    assert await asyncio.wait_for(waiting, 10) == {"got": "now"}


async def test_unreachable_host_is_a_connection_error() -> None:
    """A client pointed at nothing raises a ConnectionError that is also a WorkflowError."""
    async with Client("http://127.0.0.1:9") as client:
        with pytest.raises(ConnectionError, match="cannot reach the durableflow host") as info:
            await client.workflows()
        assert isinstance(info.value, WorkflowError)


def test_bad_url_is_a_validation_error() -> None:
    """A URL without http:// or https:// is refused at once."""
    with pytest.raises(ValidationError, match="must start with http"):
        Client("localhost:8787")
