"""``durableflow.Client``: the bindings of a running host, over its HTTP API.

A service that does not run workflows itself (another aiohttp app, a script) steers them
through the same ``Workflow`` / ``WorkflowInstance`` types a workflow gets in-process::

    async with durableflow.Client("http://127.0.0.1:8787", token="...") as client:
        orders = client.workflow("order-processing", Order)
        instance = await orders.create(id="order-1", params=Order(...))
        await instance.send_event(type="approval", payload={"approved": True})
        print(await instance.result(timeout=60))

HTTP errors come back as the SDK's error classes: 404 is ``NotFoundError``, 409 is
``InstanceExistsError`` or ``InvalidTransitionError``, 400 is ``ValidationError`` (or
``InvalidParamsError``), 413 is ``LimitExceededError``, 503 is ``StoreUnavailableError``
and 507 is ``StorageFullError``.

Calls that are safe to repeat (every GET, and ``create`` / ``create_batch`` when every
instance has an explicit id) are retried with exponential back-off when the host answers
503 or cannot be reached; see :class:`Client`. Others (``create`` without an id,
``send_event``, control actions) are sent once, because a retry could do them twice.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote

import aiohttp
import orjson

from ._binding import Workflow, WorkflowInstance
from ._errors import (
    AuthenticationError,
    HostError,
    HostUnreachableError,
    InstanceExistsError,
    InstanceFailedError,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    ValidationError,
    WorkflowError,
)
from ._serde import unstructure
from ._types import CreateOptions, ErrorInfo, InstanceStatus, check_id

__all__ = ["Client"]

P = TypeVar("P")

#: Longest single wait the client asks of the host's result endpoint; longer waits loop.
_POLL_CHUNK = 30.0
#: Bodies above this size are handed to aiohttp as a stream, not one bytes object.
_LARGE_BODY = 512 * 1024

_ERRORS_BY_CODE: dict[str, type[WorkflowError]] = {
    "not_found": NotFoundError,
    "instance_exists": InstanceExistsError,
    "invalid_transition": InvalidTransitionError,
    "invalid_params": InvalidParamsError,
    "limit_exceeded": LimitExceededError,
    "payload_too_large": LimitExceededError,
    "store_unavailable": StoreUnavailableError,
    "storage_full": StorageFullError,
}
_ERRORS_BY_STATUS: dict[int, type[WorkflowError]] = {
    400: ValidationError,
    404: NotFoundError,
    413: LimitExceededError,
    422: ValidationError,
    507: StorageFullError,
}
#: Statuses after which a call that is safe to repeat is tried again.
_RETRY_STATUSES = frozenset({503})
#: Longest single back-off between two attempts, in seconds.
_MAX_RETRY_DELAY = 5.0


def _error_from(status: int, body: bytes, url: str) -> WorkflowError:
    code = ""
    message = ""
    try:
        data = orjson.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
    except orjson.JSONDecodeError:
        pass
    if not message:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status} from {url}" + (f": {text}" if text else "")
    cls = _ERRORS_BY_CODE.get(code) or _ERRORS_BY_STATUS.get(status)
    if cls is None and status == 409:
        cls = InvalidTransitionError
    if cls is None:
        error_class = AuthenticationError if status == 401 else HostError
        return error_class(message, status=status, code=code or f"http_{status}")
    return cls(message)


class _HttpApi:
    """JSON over HTTP to one host; errors mapped to the SDK's tree.

    Requests marked safe to repeat are retried after a 503 or a connection failure:
    ``retries`` more attempts, waiting ``retry_delay * 2 ** (n - 1)`` seconds (with up to
    25 % jitter, at most 5 s) before the n-th retry.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout: float,
        retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValidationError(f"host url must start with http:// or https://, not {url!r}")
        count: object = retries  # untyped callers may pass anything
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValidationError(f"retries must be an integer >= 0, not {retries!r}")
        delay: object = retry_delay  # untyped callers may pass anything
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise ValidationError(f"retry_delay must be a number of seconds, not {retry_delay!r}")
        if not 0 <= delay <= _MAX_RETRY_DELAY:
            raise ValidationError(
                f"retry_delay must be between 0 and {_MAX_RETRY_DELAY:g} seconds, not {retry_delay!r}"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self._session: aiohttp.ClientSession | None = None

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based), jittered."""
        delay: float = min(self.retry_delay * 2.0 ** (retry - 1), _MAX_RETRY_DELAY)
        return delay * (1 - 0.25 * random.random())  # jitter, so clients do not retry in step

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                headers=headers, json_serialize=lambda v: orjson.dumps(v).decode()
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        send_body: bool = False,
        query: Mapping[str, str] | None = None,
        wait: float = 0.0,
        idempotent: bool | None = None,
    ) -> Any:
        """Send a request; the parsed JSON answer (``None`` for an empty one).

        Args:
            method: HTTP method.
            path: Path below the host URL, starting with ``/``.
            body: A JSON-ready value sent as the body when ``send_body`` (or not ``None``).
            send_body: Send ``body`` even when it is ``None`` (as JSON ``null``).
            query: Query string parameters.
            wait: Seconds the host may hold the request (long poll), on top of ``timeout``.
            idempotent: The request may be repeated without doing anything twice, so it is
                retried after a 503 or a connection failure (default: only a GET).

        Raises:
            WorkflowError: The matching subclass for an HTTP error; a ``ConnectionError``
                subclass when the host cannot be reached.
            TimeoutError: No answer within the timeout.
        """
        if idempotent is None:
            idempotent = method == "GET"
        retry = 0
        while True:
            try:
                return await self._request_once(method, path, body, send_body, query, wait)
            except (HostError, StoreUnavailableError) as exc:
                # 503 or no connection; not a 507: freeing space takes a person
                transient = (
                    isinstance(exc, HostError) and exc.status in (0, *_RETRY_STATUSES)
                ) or (
                    isinstance(exc, StoreUnavailableError) and not isinstance(exc, StorageFullError)
                )
                if not idempotent or not transient or retry >= self.retries:
                    raise
                retry += 1
                await asyncio.sleep(self.backoff(retry))

    async def _request_once(
        self,
        method: str,
        path: str,
        body: Any,
        send_body: bool,
        query: Mapping[str, str] | None,
        wait: float,
    ) -> Any:
        url = self.url + path
        data: bytes | io.BytesIO | None = None
        headers: dict[str, str] = {}
        if body is not None or send_body:
            data = orjson.dumps(body)
            if len(data) > _LARGE_BODY:
                data = io.BytesIO(data)  # aiohttp streams a file-like body in chunks
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=self.timeout + wait)
        try:
            async with self._get_session().request(
                method, url, data=data, headers=headers, params=query, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise TimeoutError(
                    f"the durableflow host at {self.url} did not answer within "
                    f"{self.timeout + wait:g}s"
                ) from None
            raise HostUnreachableError(
                f"cannot reach the durableflow host at {self.url}: {exc}"
            ) from None
        except TimeoutError:
            raise TimeoutError(
                f"the durableflow host at {self.url} did not answer within {self.timeout + wait:g}s"
            ) from None
        if status >= 400:
            raise _error_from(status, raw, url)
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HostError(
                f"HTTP {status} from {url} is not JSON: {raw[:200]!r}", status=status, code=""
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _status_from(data: Mapping[str, Any]) -> InstanceStatus:
    error = data.get("error")
    return InstanceStatus(
        status=data["status"],
        error=ErrorInfo(name=error["name"], message=error["message"]) if error else None,
        output=data.get("output"),
    )


class _HttpInstance(WorkflowInstance):
    """A ``WorkflowInstance`` steered over HTTP."""

    def __init__(self, api: _HttpApi, workflow: str, id: str) -> None:
        self._api = api
        self._workflow = workflow
        self.id = id
        self._path = f"/api/workflows/{_segment(workflow)}/instances/{_segment(id)}"

    async def status(self) -> InstanceStatus:
        return _status_from(await self._api.request("GET", self._path + "/status"))

    async def describe(self) -> dict[str, Any]:
        """The instance's detail: params, output, error, times and every step."""
        data: dict[str, Any] = await self._api.request("GET", self._path)
        return data

    async def pause(self) -> None:
        await self._api.request("POST", self._path + "/pause")

    async def resume(self) -> None:
        await self._api.request("POST", self._path + "/resume")

    async def terminate(self) -> None:
        await self._api.request("POST", self._path + "/terminate")

    async def restart(self) -> None:
        await self._api.request("POST", self._path + "/restart")

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        check_id(type, what="event type")
        await self._api.request(
            "POST",
            f"{self._path}/events/{_segment(type)}",
            body=unstructure(payload),
            send_body=True,
        )

    async def result(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _POLL_CHUNK if deadline is None else deadline - time.monotonic()
            wait = max(0.0, min(remaining, _POLL_CHUNK))
            data = await self._api.request(
                "GET", self._path + "/result", query={"timeout": f"{wait:.3f}"}, wait=wait
            )
            if data.get("done"):
                return _result_of(self.id, data)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"instance {self.id!r} of workflow {self._workflow!r} did not end within "
                    f"{timeout:g}s (it is {data.get('status')})"
                )


def _result_of(id: str, data: Mapping[str, Any]) -> Any:
    status = data["status"]
    if status == "complete":
        return data.get("output")
    if status == "terminated":
        raise InstanceFailedError(f"instance {id!r} was terminated", status="terminated")
    error = data.get("error") or {}
    name = error.get("name", "Error")
    message = error.get("message", "")
    raise InstanceFailedError(
        f"instance {id!r} errored: {name}: {message}",
        status=status,
        error_name=name,
        error_message=message,
    )


class _HttpWorkflow(Workflow[P]):
    """A ``Workflow`` binding over HTTP."""

    def __init__(self, api: _HttpApi, name: str) -> None:
        self._api = api
        self.name = name
        self._path = f"/api/workflows/{_segment(name)}/instances"

    async def create(self, *, id: str | None = None, params: P | None = None) -> WorkflowInstance:
        body: dict[str, Any] = {}
        if id is not None:
            body["id"] = id
        if params is not None:
            body["params"] = unstructure(params)
        # with an id, a repeat cannot create a second instance: safe to retry
        data = await self._api.request("POST", self._path, body=body, idempotent=id is not None)
        return _HttpInstance(self._api, self.name, data["id"])

    async def create_batch(self, batch: Sequence[CreateOptions[P]]) -> list[WorkflowInstance]:
        entries: list[dict[str, Any]] = []
        items: Sequence[object] = batch  # untyped callers may pass dicts
        for entry in items:
            if isinstance(entry, CreateOptions):
                id, params = entry.id, entry.params
            elif isinstance(entry, Mapping):
                unknown = set(entry) - {"id", "params"}
                if unknown:
                    raise ValidationError(f"unknown key(s) in a batch entry: {sorted(unknown)}")
                id, params = entry.get("id"), entry.get("params")
            else:
                raise ValidationError(
                    f"a batch entry must be CreateOptions or a dict, not {type(entry).__name__}"
                )
            item: dict[str, Any] = {}
            if id is not None:
                item["id"] = id
            if params is not None:
                item["params"] = unstructure(params)
            entries.append(item)
        data = await self._api.request(
            "POST",
            self._path + "/batch",
            body={"instances": entries},
            idempotent=bool(entries) and all("id" in item for item in entries),
        )
        return [_HttpInstance(self._api, self.name, i["id"]) for i in data["instances"]]

    async def get(self, id: str) -> WorkflowInstance:
        instance = _HttpInstance(self._api, self.name, id)
        await instance.status()  # NotFoundError when there is no such instance
        return instance

    async def list_instances(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of instances, newest first: ``{"instances": [...], "next_cursor"}``."""
        query = {"limit": str(limit)}
        if status is not None:
            query["status"] = status
        if cursor is not None:
            query["cursor"] = cursor
        data: dict[str, Any] = await self._api.request("GET", self._path, query=query)
        return data

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} at {self._api.url}>"


class Client:
    """The bindings of a running durableflow host, over HTTP.

    Calls that are safe to repeat are retried when the host answers 503
    (``store_unavailable``) or cannot be reached: every GET (``status``, ``get``,
    ``result``, listings) and ``create`` / ``create_batch`` when each instance has an
    explicit id (a repeat finds the id taken instead of creating a second instance, so a
    retried create may raise ``InstanceExistsError`` for the instance its first attempt
    made). ``create`` without an id, ``send_event`` and the control actions are sent once.
    A 507 (``StorageFullError``) is not retried: space must be freed first. With the
    defaults a call is tried 4 times over about 3.5 s of back-off (0.5, 1, 2 s).

    Args:
        url: The host's base URL (``http://127.0.0.1:8787``).
        token: Bearer token, when the host requires one.
        timeout: Seconds each request may take (a ``result()`` wait adds its own).
        retries: Further attempts after the first for a call that is safe to repeat
            (0: never retry).
        retry_delay: Seconds before the first retry; each next one waits twice as long
            (at most 5 s), less up to 25 % jitter.

    Raises:
        ValidationError: A bad ``url``, ``retries`` or ``retry_delay``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        self._api = _HttpApi(
            url, token=token, timeout=timeout, retries=retries, retry_delay=retry_delay
        )

    @overload
    def workflow(self, name: str) -> Workflow[Any]: ...

    @overload
    def workflow(self, name: str, params_type: type[P]) -> Workflow[P]: ...

    def workflow(self, name: str, params_type: type[Any] | None = None) -> Workflow[Any]:
        """The binding of one workflow on the host.

        Args:
            name: The workflow's name (its ``name`` in ``durableflow.toml``).
            params_type: Its params type, for type checking only.

        Raises:
            ValidationError: ``name`` is not a valid workflow name.
        """
        check_id(name, what="workflow name", max_length=64)
        return _HttpWorkflow(self._api, name)

    async def workflows(self) -> list[dict[str, Any]]:
        """The workflows the host runs: ``[{"name", "binding", "class_name", ...}]``."""
        data = await self._api.request("GET", "/api/workflows")
        workflows: list[dict[str, Any]] = data["workflows"]
        return workflows

    async def close(self) -> None:
        """Close the connection pool."""
        await self._api.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<durableflow.Client {self._api.url}>"
