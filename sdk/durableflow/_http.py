"""What ``Client`` and ``SyncClient`` share: requests, retry policy, answers, error mapping.

The two clients differ only in how bytes travel (aiohttp for ``Client``, httpx for
``SyncClient``). Everything else is written once here, without I/O: the settings and their
checks, the request each binding method sends (:class:`Call`), which failures are retried
and after how long, how an answer becomes a value or one of the SDK's error classes, and
the long poll of ``result()`` (:func:`result_polls`). A method's requests are a generator
of :class:`Call` objects; :func:`with_retries` adds the retry policy to it, and each client
drives the result with its own I/O (``await`` or blocking).

HTTP errors come back as the SDK's error classes: 404 is ``NotFoundError``, 409 is
``InstanceExistsError`` or ``InvalidTransitionError``, 400 is ``ValidationError`` (or
``InvalidParamsError``), 413 is ``LimitExceededError``, 401 is ``AuthenticationError``,
503 is ``StoreUnavailableError`` and 507 is ``StorageFullError``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import attrs
import orjson

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
from ._output import (
    LogEntry,
    StreamChunk,
    check_stream_name,
    chunk_from_json,
    log_from_json,
)
from ._serde import restore_output, unstructure
from ._types import (
    BulkResult,
    CreateOptions,
    ErrorInfo,
    InstanceStatus,
    StepRef,
    check_bulk,
    check_id,
    check_token,
)

__all__ = [
    "NDJSON",
    "Call",
    "Calls",
    "HostSettings",
    "StreamCursor",
    "Work",
    "action_call",
    "batch_ids",
    "bulk_call",
    "bulk_results",
    "create_batch_call",
    "create_call",
    "delete_call",
    "error_from",
    "event_call",
    "instance_path",
    "instances_path",
    "list_call",
    "logs_pages",
    "one",
    "restart_call",
    "result_polls",
    "schedule_action_call",
    "schedules_call",
    "status_call",
    "status_from",
    "with_retries",
    "workflow_name",
    "workflows_call",
]

#: Longest single wait a client asks of the host's result endpoint; longer waits loop.
POLL_CHUNK = 30.0
#: Longest single back-off between two attempts, in seconds.
MAX_RETRY_DELAY = 5.0
#: Statuses after which a call that is safe to repeat is tried again.
_RETRY_STATUSES = frozenset({503})

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


def error_from(status: int, body: bytes, url: str) -> WorkflowError:
    """The SDK error for an HTTP error answer (``{"error": {"code", "message"}}``)."""
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


@attrs.frozen
class Call:
    """One request to the host, before any I/O.

    Attributes:
        method: HTTP method.
        path: Path below the host URL, starting with ``/``.
        body: A JSON-ready value sent as the body when ``send_body`` (or not ``None``).
        send_body: Send ``body`` even when it is ``None`` (as JSON ``null``).
        query: Query string parameters.
        wait: Seconds the host may hold the request (long poll), on top of the timeout.
        idempotent: The request may be repeated without doing anything twice, so it is
            retried after a 503 or a connection failure (default: only a GET).
    """

    method: str
    path: str
    body: Any = None
    send_body: bool = False
    query: Mapping[str, str] | None = None
    wait: float = 0.0
    idempotent: bool | None = None

    @property
    def retry_safe(self) -> bool:
        return self.method == "GET" if self.idempotent is None else self.idempotent

    def content(self) -> bytes | None:
        """The encoded body, or ``None`` when the request has none."""
        if self.body is None and not self.send_body:
            return None
        return orjson.dumps(self.body)


class HostSettings:
    """A client's checked settings, and the decisions that follow from them.

    Requests marked safe to repeat are retried after a 503 or a connection failure:
    ``retries`` more attempts, waiting ``retry_delay * 2 ** (n - 1)`` seconds (with up to
    25 % jitter, at most 5 s) before the n-th retry.

    Raises:
        ValidationError: A bad ``url``, ``retries`` or ``retry_delay``.
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
        if not 0 <= delay <= MAX_RETRY_DELAY:
            raise ValidationError(
                f"retry_delay must be between 0 and {MAX_RETRY_DELAY:g} seconds, not {retry_delay!r}"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = float(retry_delay)

    def headers(self) -> dict[str, str]:
        """The headers every request carries."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based), jittered."""
        delay: float = min(self.retry_delay * 2.0 ** (retry - 1), MAX_RETRY_DELAY)
        return delay * (1 - 0.25 * random.random())  # jitter, so clients do not retry in step

    def delay_before_retry(self, call: Call, error: Exception, retries_done: int) -> float | None:
        """Seconds to wait before trying ``call`` again after ``error``; ``None``: raise it.

        Only a call safe to repeat is retried, only after a 503 or a failed connection
        (not a 507: freeing space takes a person), and at most ``retries`` times.
        """
        transient = (isinstance(error, HostError) and error.status in (0, *_RETRY_STATUSES)) or (
            isinstance(error, StoreUnavailableError) and not isinstance(error, StorageFullError)
        )
        if not call.retry_safe or not transient or retries_done >= self.retries:
            return None
        return self.backoff(retries_done + 1)

    def unreachable(self, reason: object) -> HostUnreachableError:
        """The error for a host that cannot be reached."""
        return HostUnreachableError(f"cannot reach the durableflow host at {self.url}: {reason}")

    def timed_out(self, call: Call) -> TimeoutError:
        """The error for a request that got no answer in time."""
        return TimeoutError(
            f"the durableflow host at {self.url} did not answer within "
            f"{self.timeout + call.wait:g}s"
        )

    def answer(self, status: int, raw: bytes, url: str) -> Any:
        """The parsed JSON of an answer (``None`` for an empty one).

        Raises:
            WorkflowError: The matching subclass for an HTTP error, or ``HostError`` for an
                answer that is not JSON.
        """
        if status >= 400:
            raise error_from(status, raw, url)
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HostError(
                f"HTTP {status} from {url} is not JSON: {raw[:200]!r}", status=status, code=""
            ) from None


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def workflow_name(name: str) -> str:
    """``name``, checked as a workflow name.

    Raises:
        ValidationError: ``name`` is not a valid workflow name.
    """
    check_id(name, what="workflow name", max_length=64)
    return name


def instances_path(workflow: str) -> str:
    return f"/api/workflows/{_segment(workflow)}/instances"


def instance_path(workflow: str, id: str) -> str:
    return f"{instances_path(workflow)}/{_segment(id)}"


def workflows_call() -> Call:
    return Call("GET", "/api/workflows")


def schedules_call() -> Call:
    return Call("GET", "/api/schedules")


def schedule_action_call(name: str, action: str) -> Call:
    # pausing twice is pausing: safe to repeat
    return Call("POST", f"/api/schedules/{quote(name, safe='')}/{action}", {}, idempotent=True)


def status_call(instance: str) -> Call:
    return Call("GET", instance + "/status")


def action_call(instance: str, action: str) -> Call:
    """``pause``, ``resume``, ``terminate`` or ``restart``: sent once, never retried."""
    return Call("POST", f"{instance}/{action}")


def restart_call(instance: str, from_step: object) -> Call:
    """A restart, from the start or from a step (checked before anything is sent)."""
    if from_step is None:
        return action_call(instance, "restart")
    ref = StepRef.parse(from_step)
    return Call("POST", f"{instance}/restart", {"from": ref.to_json()})


def delete_call(instance: str) -> Call:
    """``DELETE`` an instance: a repeat finds it gone (404), so it is not retried."""
    return Call("DELETE", instance)


def bulk_call(workflow: str, action: object, ids: object, status: object) -> Call:
    """A bulk action, checked before anything is sent."""
    checked_action, id_list, checked_status = check_bulk(
        action, list(ids) if isinstance(ids, Sequence) and not isinstance(ids, str) else ids, status
    )
    body: dict[str, Any] = {"action": checked_action}
    if id_list is not None:
        body["ids"] = id_list
    else:
        body["status"] = checked_status
    return Call("POST", f"{instances_path(workflow)}/actions", body)


def bulk_results(data: Mapping[str, Any]) -> list[BulkResult]:
    return [BulkResult.from_json(r) for r in data["results"]]


def terminate_call(instance: str, rollback: bool, *, cascade: bool = False) -> Call:
    """``terminate``, with ``{"rollback": true}`` when rollbacks run first and
    ``{"cascade": true}`` when its running children go too."""
    body = {key: True for key, on in (("rollback", rollback), ("cascade", cascade)) if on}
    if not body:
        return action_call(instance, "terminate")
    return Call("POST", f"{instance}/terminate", body)


def event_call(instance: str, type: str, payload: Any) -> Call:
    check_id(type, what="event type")
    return Call("POST", f"{instance}/events/{_segment(type)}", unstructure(payload), True)


def hook_call(token: str, payload: Any) -> Call:
    """``POST /api/hooks/{token}``: sent once (a hook takes one payload)."""
    check_token(token)
    return Call("POST", f"/api/hooks/{_segment(token)}", unstructure(payload), True)


def create_call(
    workflow: str,
    id: str | None,
    params: Any,
    priority: int | None = None,
    concurrency_key: str | None = None,
) -> Call:
    body: dict[str, Any] = {}
    if id is not None:
        body["id"] = id
    if params is not None:
        body["params"] = unstructure(params)
    if priority is not None:
        body["priority"] = priority
    if concurrency_key is not None:
        body["concurrency_key"] = concurrency_key
    # with an id, a repeat cannot create a second instance: safe to retry
    return Call("POST", instances_path(workflow), body, idempotent=id is not None)


def create_batch_call(workflow: str, batch: Sequence[CreateOptions[Any]]) -> Call:
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
    return Call(
        "POST",
        instances_path(workflow) + "/batch",
        {"instances": entries},
        idempotent=bool(entries) and all("id" in item for item in entries),
    )


def batch_ids(data: Mapping[str, Any]) -> list[str]:
    """The ids of a batch create's answer, in order."""
    return [item["id"] for item in data["instances"]]


def list_call(
    workflow: str, status: str | None, limit: int, cursor: str | None, version: str | None = None
) -> Call:
    query = {"limit": str(limit)}
    if status is not None:
        query["status"] = status
    if version is not None:
        query["version"] = version
    if cursor is not None:
        query["cursor"] = cursor
    return Call("GET", instances_path(workflow), query=query)


def status_from(data: Mapping[str, Any], output_type: Any = Any) -> InstanceStatus[Any]:
    """An ``InstanceStatus`` from the host's JSON, its output restored to ``output_type``."""
    error = data.get("error")
    return InstanceStatus(
        status=data["status"],
        error=ErrorInfo(name=error["name"], message=error["message"]) if error else None,
        output=_output(data, output_type),
    )


def _output(data: Mapping[str, Any], output_type: Any) -> Any:
    what = f"the output of instance {data.get('id')!r}"
    return restore_output(data.get("output"), output_type, what=what)


def _result_of(id: str, data: Mapping[str, Any], output_type: Any) -> Any:
    status = data["status"]
    if status == "complete":
        return _output({**data, "id": id}, output_type)
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


#: A sequence of calls without I/O: yields each call, is sent its answer, returns a value.
Calls = Generator[Call, Any, Any]
#: What a client drives: yields a call to send (answer it with ``send``, or ``throw`` its
#: error in) or seconds to sleep (then ``send(None)``); returns the value.
Work = Generator["Call | float", Any, Any]


def one(call: Call) -> Calls:
    """The calls of a method that sends one request: its answer is the value."""
    return (yield call)


def with_retries(settings: HostSettings, calls: Calls) -> Work:
    """``calls`` with the retry policy: a failed call that may be retried is sent again
    after the back-off (yielded as a number of seconds to sleep); others raise."""
    try:
        call = next(calls)
    except StopIteration as stop:
        return stop.value
    while True:
        retries = 0
        while True:
            try:
                answer = yield call
                break
            except Exception as exc:
                delay = settings.delay_before_retry(call, exc, retries)
                if delay is None:
                    raise
                retries += 1
                yield delay
        try:
            call = calls.send(answer)
        except StopIteration as stop:
            return stop.value


def result_polls(workflow: str, id: str, timeout: float | None, output_type: Any = Any) -> Calls:
    """The long poll behind ``instance.result(timeout)``, without I/O.

    The client sends each yielded call and sends its answer back in; the generator returns
    the instance's output (restored to ``output_type``), or raises when the instance
    failed or ``timeout`` ran out.

    Raises:
        InstanceFailedError: It ended ``errored`` or ``terminated``.
        TimeoutError: It did not end within ``timeout``.
    """
    path = instance_path(workflow, id) + "/result"
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = POLL_CHUNK if deadline is None else deadline - time.monotonic()
        wait = max(0.0, min(remaining, POLL_CHUNK))
        data = yield Call("GET", path, query={"timeout": f"{wait:.3f}"}, wait=wait)
        if data.get("done"):
            return _result_of(id, data, output_type)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"instance {id!r} of workflow {workflow!r} did not end within "
                f"{timeout:g}s (it is {data.get('status')})"
            )


NDJSON = "application/x-ndjson"
FINAL_STATUSES = frozenset({"complete", "errored", "terminated"})
#: Log entries per request when a client reads a whole log.
LOG_PAGE = 1000


def logs_pages(instance: str) -> Calls:
    """The pages behind ``instance.logs()``: every entry so far, oldest first."""
    entries: list[LogEntry] = []
    after = 0
    while True:
        data = yield Call(
            "GET", instance + "/logs", query={"after": str(after), "limit": str(LOG_PAGE)}
        )
        entries.extend(log_from_json(item) for item in data["logs"])
        if data.get("next_after") is None:
            return entries
        after = int(data["next_after"])


class StreamCursor:
    """Reading a stream over HTTP as JSON lines, without I/O: where to (re)connect, and
    the chunks in the bytes received. A client reconnects from :attr:`next_index` after
    a dropped connection, so no chunk is lost or repeated.

    Raises:
        ValidationError: A bad stream name or start.
    """

    def __init__(self, instance: str, name: str, start: int) -> None:
        check_stream_name(name)
        given: object = start  # untyped callers may pass anything
        if isinstance(given, bool) or not isinstance(given, int) or given < 0:
            raise ValidationError(f"start must be a chunk index >= 0, not {start!r}")
        self.path = f"{instance}/streams/{_segment(name)}"
        self.next_index = start
        self._buffer = b""

    def query(self) -> dict[str, str]:
        """The query of the next connection: from the first chunk not yet read."""
        self._buffer = b""  # a partial line of a dropped connection is read again
        return {"from": str(self.next_index)}

    def feed(self, data: bytes) -> list[StreamChunk]:
        """The chunks completed by ``data``."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        chunks = [chunk_from_json(orjson.loads(line)) for line in lines if line.strip()]
        if chunks:
            self.next_index = chunks[-1].index + 1
        return chunks
