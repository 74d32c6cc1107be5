"""``durableflow.SyncClient`` against a live host: Client's API and policy, without await."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import psutil
import pytest

from durableflow import (
    AuthenticationError,
    CreateOptions,
    HostUnreachableError,
    InstanceExistsError,
    InstanceFailedError,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NotFoundError,
    StoreUnavailableError,
    SyncClient,
    SyncWorkflow,
    SyncWorkflowInstance,
    ValidationError,
)
from tests.helpers import eventually_sync

from .conftest import HostFactory, HostProcess, copy_project


@attrs.frozen
class Greeting:
    name: str
    times: int = 1


@pytest.fixture
def client(shared_host: HostProcess) -> Iterator[SyncClient]:
    with SyncClient(shared_host.url, timeout=10.0) as client:
        yield client


def test_workflows(client: SyncClient) -> None:
    """client.workflows() lists the host's workflows."""
    names = [w["name"] for w in client.workflows()]
    assert names == ["echo", "waiter", "sleeper", "gate", "flaky"]


def test_create_with_attrs_params_and_result(client: SyncClient) -> None:
    """create() sends attrs params; result() blocks until the output is there."""
    echo = client.workflow("echo", Greeting)
    assert isinstance(echo, SyncWorkflow)
    instance = echo.create(id="sy-1", params=Greeting("sync", times=2))
    assert isinstance(instance, SyncWorkflowInstance)
    assert instance.id == "sy-1"
    assert instance.result(timeout=10) == {"greeting": "hello sync hello sync", "id": "sy-1"}
    status = instance.status()
    assert status.status == "complete" and status.error is None
    assert instance.describe()["params"] == {"name": "sync", "times": 2}


def test_create_batch_get_and_list(client: SyncClient) -> None:
    """create_batch() creates all; get() returns a handle on an existing instance or raises
    NotFoundError; list_instances() pages them."""
    echo = client.workflow("echo", Greeting)
    made = echo.create_batch(
        [CreateOptions(id="sb-1", params=Greeting("a")), CreateOptions(params=Greeting("b"))]
    )
    assert made[0].id == "sb-1" and len(made) == 2
    assert echo.get("sb-1").result(timeout=10)["greeting"] == "hello a"
    with pytest.raises(NotFoundError, match="no instance 'missing'"):
        echo.get("missing")
    listed = echo.list_instances(limit=500)
    assert {"sb-1", made[1].id} <= {i["id"] for i in listed["instances"]}


def test_errors_map_to_sdk_classes(client: SyncClient) -> None:
    """HTTP errors come back as the same classes as Client's: NotFoundError,
    InstanceExistsError, InvalidParamsError, ValidationError, LimitExceededError and
    InvalidTransitionError."""
    echo = client.workflow("echo")
    with pytest.raises(NotFoundError, match="no workflow named 'nope'"):
        client.workflow("nope").create()
    echo.create(id="se-1", params={"name": "x"})
    with pytest.raises(InstanceExistsError, match="se-1"):
        echo.create(id="se-1", params={"name": "x"})
    with pytest.raises(InvalidParamsError, match=r"params\.times"):
        echo.create(params={"name": "x", "times": "lots"})
    with pytest.raises(ValidationError, match="invalid instance id"):
        echo.create(id="-bad", params={"name": "x"})
    with pytest.raises(LimitExceededError):
        echo.create(params={"name": "x" * (1024 * 1024 + 1)})
    instance = echo.get("se-1")
    instance.result(timeout=10)
    with pytest.raises(InvalidTransitionError, match="cannot terminate"):
        instance.terminate()
    with pytest.raises(ValidationError):
        client.workflow("bad name")


def test_control_events_and_result(client: SyncClient) -> None:
    """pause, resume, send_event, restart and terminate (with cascade) steer an instance;
    result() of a terminated one raises InstanceFailedError."""
    waiter = client.workflow("waiter")
    instance = waiter.create(id="sc-1")
    instance.pause()
    assert instance.status().status in ("paused", "waitingForPause")
    instance.resume()
    instance.send_event(type="go", payload={"k": [1, 2]})
    assert instance.result(timeout=10) == {"got": {"k": [1, 2]}}
    instance.restart()
    assert instance.status().status in ("queued", "running", "waiting")
    instance.terminate(cascade=True)  # it started no child: as terminate()
    with pytest.raises(InstanceFailedError) as failed:
        instance.result(timeout=5)
    assert failed.value.status == "terminated"


def test_result_of_an_errored_instance(client: SyncClient) -> None:
    """result() raises InstanceFailedError with the error's name and message."""
    with pytest.raises(InstanceFailedError) as failed:
        client.workflow("flaky").create().result(timeout=10)
    assert failed.value.status == "errored"
    assert failed.value.error_name == "RuntimeError"
    assert failed.value.error_message == "always fails"


def test_result_long_polls_across_threads_and_times_out(client: SyncClient) -> None:
    """result(timeout) raises TimeoutError after about that long; a result() blocking in
    one thread returns as soon as another thread's event ends the instance."""
    instance = client.workflow("waiter").create()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not end within 0\.5s"):
        instance.result(timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(instance.result, 20)
        instance.send_event(type="go", payload="now")
        assert waiting.result(timeout=10) == {"got": "now"}


def test_one_connection_serves_every_call(client: SyncClient, shared_host: HostProcess) -> None:
    """Twenty calls in a row travel over one kept-alive connection to the host."""
    echo = client.workflow("echo")
    for n in range(20):
        echo.create(id=f"sk-{n}", params={"name": "k"})
        echo.get(f"sk-{n}")
    host = psutil.Process(shared_host.proc.pid)
    port = int(shared_host.url.rsplit(":", 1)[1])
    established = [
        c
        for c in host.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    ]
    assert len(established) == 1, established


def test_token_is_sent(tmp_path: Path, hosts: HostFactory) -> None:
    """A host that requires a token answers the client holding it, and refuses one without
    it with AuthenticationError."""
    host = hosts.start(copy_project(tmp_path / "p"), env={"DURABLEFLOW_TOKEN": "s3cret"})
    with SyncClient(host.url, token="s3cret") as client:
        assert client.workflow("echo").create(params={"name": "t"}).result(timeout=10)
    with SyncClient(host.url) as client, pytest.raises(AuthenticationError):
        client.workflows()


def test_retries_only_calls_safe_to_repeat(tmp_path: Path, hosts: HostFactory) -> None:
    """On 503 store_unavailable (its SQLite file deleted) the client retries create with an
    id, never create without one or send_event, and retries an unreachable host before
    raising, exactly as Client does."""
    root = copy_project(tmp_path / "p")
    host = hosts.start(root, "--access-log")
    path = "/api/workflows/echo/instances"

    def answered(method: str, target: str, n: int) -> None:
        line = f'"{method} {target} HTTP/1.1" 503 '
        eventually_sync(
            lambda: host.output().count(line) == n,
            timeout=5,
            message=f"{method} {target} answered 503 {n} time(s)",
        )

    with SyncClient(host.url, retries=2, retry_delay=0.05) as client:
        waiting = client.workflow("waiter").create(id="w")
        eventually_sync(lambda: waiting.status().status == "waiting", message="w waits")
        (root / ".durableflow" / "state.db").unlink()
        echo = client.workflow("echo")
        with pytest.raises(StoreUnavailableError):
            echo.create(params={"name": "x"})
        answered("POST", path, 1)  # without an id: sent once
        with pytest.raises(StoreUnavailableError):
            echo.create(id="with-id", params={"name": "x"})
        answered("POST", path, 1 + 3)  # with an id: retried twice
        with pytest.raises(StoreUnavailableError):
            waiting.send_event(type="go", payload={})
        answered("POST", "/api/workflows/waiter/instances/w/events/go", 1)
    assert host.stop() == 0

    # an unreachable host: the GET is tried 1 + retries times, then HostUnreachableError
    with SyncClient(host.url, retries=2, retry_delay=0.2) as client:
        started = time.monotonic()
        with pytest.raises(HostUnreachableError, match="cannot reach the durableflow host"):
            client.workflow("echo").get("w")
        assert time.monotonic() - started >= 0.2 * 0.75 + 0.4 * 0.75, "it backed off twice"


def test_bad_settings_are_validation_errors() -> None:
    """A URL without a scheme, negative retries or a huge retry_delay are refused at once."""
    with pytest.raises(ValidationError, match="must start with http"):
        SyncClient("localhost:8787")
    with pytest.raises(ValidationError, match="retries"):
        SyncClient("http://127.0.0.1:8787", retries=-1)
    with pytest.raises(ValidationError, match="retry_delay"):
        SyncClient("http://127.0.0.1:8787", retry_delay=60)
