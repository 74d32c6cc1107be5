"""``durableflow.SyncClient``: the bindings of a running host, without ``await``.

For code that is not async (a Django view or management command, a Flask route, a
script, a Celery task being replaced), the same API as ``durableflow.Client`` over one
pooled httpx connection::

    with durableflow.SyncClient("http://127.0.0.1:8787", token="...") as client:
        orders = client.workflow("order-processing", Order)  # SyncWorkflow[Order]
        instance = orders.create(id="order-1", params=Order(...))
        instance.send_event(type="approval", payload={"approved": True})
        print(instance.result(timeout=60))

The requests, the retry policy and the error classes are ``Client``'s (both use
``durableflow._http``). httpx comes with the ``durableflow[sync]`` extra; it is imported
when a ``SyncClient`` is made, so ``from durableflow import SyncClient`` works without it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import typing_extensions

from . import _http
from ._http import NDJSON, Call, HostSettings, StreamCursor
from ._output import LogEntry, StreamChunk
from ._types import BulkAction, BulkResult, CreateOptions, InstanceStatus, StatusName, StepRef

if TYPE_CHECKING:
    import httpx

__all__ = ["SyncClient", "SyncWorkflow", "SyncWorkflowInstance"]

P = TypeVar("P")
OutT = typing_extensions.TypeVar("OutT", default=Any)  # SyncWorkflow[P] is SyncWorkflow[P, Any]


def _import_httpx() -> Any:
    try:
        return importlib.import_module("httpx")
    except ImportError:
        raise ImportError(
            "durableflow.SyncClient needs httpx, which comes with the 'sync' extra: "
            "pip install 'durableflow[sync]'"
        ) from None


class _SyncHttpApi:
    """JSON over HTTP to one host with httpx: ``Client``'s ``_HttpApi``, blocking."""

    def __init__(self, settings: HostSettings) -> None:
        self._httpx = _import_httpx()
        self.settings = settings
        self.url = settings.url
        # one pool for every call: connections are kept alive and reused
        self._client: httpx.Client = self._httpx.Client(
            headers=settings.headers(), timeout=settings.timeout
        )

    def send(self, call: Call) -> Any:
        """Send ``call``, retried as the settings say; the parsed JSON answer."""
        return self.drive(_http.one(call))

    def drive(self, calls: _http.Calls) -> Any:
        """Run a method's calls (one request, or ``result()``'s long poll) to their value."""
        work = _http.with_retries(self.settings, calls)
        try:
            step = next(work)
            while True:
                if isinstance(step, Call):
                    try:
                        answer = self._send_once(step)
                    except Exception as exc:  # the retry policy retries it or raises it
                        step = work.throw(exc)
                        continue
                    step = work.send(answer)
                else:
                    time.sleep(step)
                    step = work.send(None)
        except StopIteration as stop:
            return stop.value

    def _send_once(self, call: Call) -> Any:
        url = self.url + call.path
        content = call.content()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        httpx = self._httpx
        try:
            response = self._client.request(
                call.method,
                url,
                content=content,
                headers=headers,
                params=call.query,
                timeout=self.settings.timeout + call.wait,
            )
        except httpx.TimeoutException:
            raise self.settings.timed_out(call) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise self.settings.unreachable(exc) from None
        return self.settings.answer(response.status_code, response.content, url)

    def follow(self, cursor: StreamCursor) -> Iterator[StreamChunk]:
        """A stream's chunks as JSON lines: ``Client``'s reader, blocking (see there)."""
        httpx = self._httpx
        url = self.url + cursor.path
        failures = 0
        timeout = httpx.Timeout(self.settings.timeout, read=None)  # a stream lasts long
        while True:
            try:
                with self._client.stream(
                    "GET", url, params=cursor.query(), headers={"Accept": NDJSON}, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        self.settings.answer(response.status_code, response.read(), url)
                    for data in response.iter_raw():
                        for chunk in cursor.feed(data):
                            failures = 0
                            yield chunk
                return
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failures += 1
                if failures > self.settings.retries:
                    raise self.settings.unreachable(exc) from None
                time.sleep(self.settings.backoff(failures))

    def close(self) -> None:
        self._client.close()


class SyncWorkflowInstance(Generic[OutT]):
    """A handle on one instance, steered over HTTP without ``await``.

    The synchronous counterpart of :class:`durableflow.WorkflowInstance`: the same
    methods, each a blocking call.

    Attributes:
        id: The instance's id.
    """

    id: str

    def __init__(self, api: _SyncHttpApi, workflow: str, id: str, output_type: Any = Any) -> None:
        self._api = api
        self._workflow = workflow
        self._output_type = output_type
        self.id = id
        self._path = _http.instance_path(workflow, id)

    def status(self) -> InstanceStatus[OutT]:
        """The instance's status, error and output."""
        data = self._api.send(_http.status_call(self._path))
        return _http.status_from(data, self._output_type)

    def describe(self) -> dict[str, Any]:
        """The instance's detail: params, output, error, times and every step."""
        data: dict[str, Any] = self._api.send(Call("GET", self._path))
        return data

    def pause(self) -> None:
        """Pause it: a running step finishes first (status ``waitingForPause``).

        Raises:
            InvalidTransitionError: It has already ended.
        """
        self._api.send(_http.action_call(self._path, "pause"))

    def resume(self) -> None:
        """Resume a paused instance.

        Raises:
            InvalidTransitionError: It is not paused.
        """
        self._api.send(_http.action_call(self._path, "resume"))

    def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None:
        """Stop it for good; no further step runs.

        Args:
            rollback: Run the rollback handlers of its steps first, then end ``terminated``.
            cascade: Also terminate its running children (by default they go on).

        Raises:
            InvalidTransitionError: It has already ended.
        """
        self._api.send(_http.terminate_call(self._path, rollback, cascade=cascade))

    def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None:
        """Run it again with the same params: from the start, or from ``from_step``
        (see :meth:`durableflow.WorkflowInstance.restart`).

        Raises:
            ValidationError: ``from_step`` is malformed or not in the instance's history.
        """
        self._api.send(_http.restart_call(self._path, from_step))

    def delete(self) -> None:
        """Delete it and everything stored for it; its id can be used again.

        Raises:
            NotFoundError: No such instance.
        """
        self._api.send(_http.delete_call(self._path))

    def send_event(self, *, type: str, payload: Any = None) -> None:
        """Deliver an event; the first ``wait_for_event`` for ``type`` takes it."""
        self._api.send(_http.event_call(self._path, type, payload))

    def result(self, timeout: float | None = None) -> OutT:
        """Wait until the instance ends and return its output (a long poll, not a busy
        one), restored to the output type the binding was given.

        Args:
            timeout: Seconds to wait at most (``None``: no bound).

        Raises:
            InstanceFailedError: It ended ``errored`` or ``terminated``.
            TimeoutError: It did not end within ``timeout``.
        """
        polls = _http.result_polls(self._workflow, self.id, timeout, self._output_type)
        output: OutT = self._api.drive(polls)
        return output

    def stream(self, name: str = "default", start: int = 0) -> Iterator[StreamChunk]:
        """Read one of the instance's streams: ``for chunk in instance.stream("tokens")``.

        Yields the chunks stored from index ``start`` on, then each new one as a step
        writes it (blocking meanwhile), and ends once the instance has ended.

        Raises:
            NotFoundError: No such instance. ValidationError: a bad name or start.
        """
        cursor = StreamCursor(self._path, name, start)
        while True:
            yield from self._api.follow(cursor)
            # the host ends the answer when the instance ended, or when it shuts down
            if self.status().status in _http.FINAL_STATUSES:
                return
            time.sleep(self._api.settings.backoff(1))

    def logs(self) -> list[LogEntry]:
        """The instance's log so far, oldest entry first."""
        entries: list[LogEntry] = self._api.drive(_http.logs_pages(self._path))
        return entries

    def __repr__(self) -> str:
        return f"<SyncWorkflowInstance {self.id!r}>"


class SyncWorkflow(Generic[P, OutT]):
    """A binding to one workflow over HTTP, without ``await``.

    The synchronous counterpart of :class:`durableflow.Workflow`: the same methods, each
    a blocking call.
    """

    def __init__(self, api: _SyncHttpApi, name: str, output_type: Any = Any) -> None:
        self._api = api
        self.name = name
        self._output_type = output_type

    def _instance(self, id: str) -> SyncWorkflowInstance[OutT]:
        return SyncWorkflowInstance(self._api, self.name, id, self._output_type)

    def create(
        self,
        *,
        id: str | None = None,
        params: P | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> SyncWorkflowInstance[OutT]:
        """Create and start an instance.

        Args:
            id: Its id (default: a new UUID4 string). With an id the call is safe to
                repeat, so it is retried after a 503 or a failed connection.
            params: Its params, checked against the workflow's params type.
            priority: 0 to 100 (default 0): higher starts first among queued instances.
            concurrency_key: The key ``key_concurrency`` counts it under.

        Raises:
            ValidationError: A bad id; InvalidParamsError: params that do not fit.
            InstanceExistsError: The id is taken.
        """
        data = self._api.send(_http.create_call(self.name, id, params, priority, concurrency_key))
        return self._instance(data["id"])

    def create_batch(self, batch: Sequence[CreateOptions[P]]) -> list[SyncWorkflowInstance[OutT]]:
        """Create up to 100 instances at once, all or nothing."""
        data = self._api.send(_http.create_batch_call(self.name, batch))
        return [self._instance(id) for id in _http.batch_ids(data)]

    def get(self, id: str) -> SyncWorkflowInstance[OutT]:
        """A handle on an existing instance.

        Raises:
            NotFoundError: No such instance.
        """
        instance = self._instance(id)
        instance.status()  # NotFoundError when there is no such instance
        return instance

    def list_instances(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """One page of instances, newest first: ``{"instances": [...], "next_cursor"}``.

        Args:
            status: Only instances with this status.
            limit: Page size, 1 to 1000.
            cursor: The ``next_cursor`` of the previous page.
            version: Only instances created at this version of the workflow's code.
        """
        data: dict[str, Any] = self._api.send(
            _http.list_call(self.name, status, limit, cursor, version)
        )
        return data

    def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]:
        """Apply ``action`` to up to 1,000 instances, by ``ids`` or by ``status``; one
        result per instance (see :meth:`durableflow.Workflow.bulk`)."""
        data = self._api.send(_http.bulk_call(self.name, action, ids, status))
        return _http.bulk_results(data)

    def delete_batch(self, ids: Sequence[str]) -> list[str]:
        """Delete up to 1,000 instances; returns the ids that were deleted."""
        return [r.id for r in self.bulk("delete", ids=ids) if r.result == "applied"]

    def resume_hook(self, token: str, payload: Any = None) -> SyncWorkflowInstance:
        """Resume the wait that registered ``token``, as ``Workflow.resume_hook``."""
        return _resume_hook(self._api, token, payload)

    def __repr__(self) -> str:
        return f"<SyncWorkflow {self.name!r} at {self._api.url}>"


def _resume_hook(api: _SyncHttpApi, token: str, payload: Any) -> SyncWorkflowInstance:
    data = api.send(_http.hook_call(token, payload))
    return SyncWorkflowInstance(api, data["workflow"], data["instance_id"])


class SyncClient:
    """The bindings of a running durableflow host, over HTTP, for code that is not async.

    The same API, retry policy and error classes as :class:`durableflow.Client`, with
    blocking methods; its bindings are :class:`SyncWorkflow` and
    :class:`SyncWorkflowInstance`. One httpx connection pool serves every call (keep one
    client per process, or use it as a context manager). It may be shared by threads.

    Calls that are safe to repeat are retried when the host answers 503
    (``store_unavailable``) or cannot be reached: every GET and ``create`` /
    ``create_batch`` when each instance has an explicit id. ``create`` without an id,
    ``send_event`` and the control actions are sent once.

    Args:
        url: The host's base URL (``http://127.0.0.1:8787``).
        token: Bearer token, when the host requires one.
        timeout: Seconds each request may take (a ``result()`` wait adds its own).
        retries: Further attempts after the first for a call that is safe to repeat
            (0: never retry).
        retry_delay: Seconds before the first retry; each next one waits twice as long
            (at most 5 s), less up to 25 % jitter.

    Raises:
        ImportError: httpx is not installed (``pip install 'durableflow[sync]'``).
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
        settings = HostSettings(
            url, token=token, timeout=timeout, retries=retries, retry_delay=retry_delay
        )
        self._api = _SyncHttpApi(settings)

    @overload
    def workflow(self, name: str) -> SyncWorkflow[Any, Any]: ...

    @overload
    def workflow(self, name: str, params_type: type[P]) -> SyncWorkflow[P, Any]: ...

    @overload
    def workflow(
        self, name: str, params_type: type[P] | None, output_type: type[OutT]
    ) -> SyncWorkflow[P, OutT]: ...

    @overload
    def workflow(self, name: str, *, output_type: type[OutT]) -> SyncWorkflow[Any, OutT]: ...

    def workflow(
        self, name: str, params_type: Any = None, output_type: Any = None
    ) -> SyncWorkflow[Any, Any]:
        """The binding of one workflow on the host.

        Args:
            name: The workflow's name (its ``name`` in ``durableflow.toml``).
            params_type: Its params type, for type checking only.
            output_type: Its output type: ``result()`` and ``status().output`` are
                restored to it. Without it, outputs are plain JSON.

        Raises:
            ValidationError: ``name`` is not a valid workflow name.
        """
        return SyncWorkflow(
            self._api, _http.workflow_name(name), Any if output_type is None else output_type
        )

    def resume_hook(self, token: str, payload: Any = None) -> SyncWorkflowInstance:
        """Resume the wait that registered ``token`` (``wait_for_event(..., token=)``),
        whatever its workflow and instance: ``POST /api/hooks/{token}``. Sent once.

        Raises:
            NotFoundError: No wait with this token is waiting.
            ValidationError: The payload does not fit the wait's ``payload_type``.
        """
        return _resume_hook(self._api, token, payload)

    def workflows(self) -> list[dict[str, Any]]:
        """The workflows the host runs: ``[{"name", "binding", "class_name", ...}]``."""
        workflows: list[dict[str, Any]] = self._api.send(_http.workflows_call())["workflows"]
        return workflows

    def schedules(self) -> list[dict[str, Any]]:
        """The host's schedules, as :meth:`Client.schedules`."""
        schedules: list[dict[str, Any]] = self._api.send(_http.schedules_call())["schedules"]
        return schedules

    def pause_schedule(self, name: str) -> dict[str, Any]:
        """Stop a schedule's ticks on every host; the schedule afterwards."""
        result: dict[str, Any] = self._api.send(_http.schedule_action_call(name, "pause"))
        return result

    def resume_schedule(self, name: str) -> dict[str, Any]:
        """Start a paused schedule's ticks again (missed ones are skipped)."""
        result: dict[str, Any] = self._api.send(_http.schedule_action_call(name, "resume"))
        return result

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<durableflow.SyncClient {self._api.url}>"
