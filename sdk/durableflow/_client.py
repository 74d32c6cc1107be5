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
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar, overload

import aiohttp

from . import _http
from ._binding import Workflow, WorkflowInstance
from ._http import NDJSON, Call, HostSettings, StreamCursor
from ._output import LogEntry, StreamChunk
from ._types import BulkAction, BulkResult, CreateOptions, InstanceStatus, StatusName, StepRef

__all__ = ["Client"]

P = TypeVar("P")
OutT = TypeVar("OutT")

#: Bodies above this size are handed to aiohttp as a stream, not one bytes object.
_LARGE_BODY = 512 * 1024


class _HttpApi:
    """JSON over HTTP to one host with aiohttp; errors mapped to the SDK's tree.

    The settings, the retry policy and the error mapping are :class:`HostSettings`'s,
    shared with ``SyncClient``.
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
        self.settings = HostSettings(
            url, token=token, timeout=timeout, retries=retries, retry_delay=retry_delay
        )
        self.url = self.settings.url
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.settings.headers())
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

        The arguments are :class:`durableflow._http.Call`'s fields.

        Raises:
            WorkflowError: The matching subclass for an HTTP error; a ``ConnectionError``
                subclass when the host cannot be reached.
            TimeoutError: No answer within the timeout.
        """
        return await self.send(Call(method, path, body, send_body, query, wait, idempotent))

    async def send(self, call: Call) -> Any:
        """Send ``call``, retried as the settings say; the parsed JSON answer."""
        return await self.drive(_http.one(call))

    async def drive(self, calls: _http.Calls) -> Any:
        """Run a method's calls (one request, or ``result()``'s long poll) to their value."""
        work = _http.with_retries(self.settings, calls)
        try:
            step = next(work)
            while True:
                if isinstance(step, Call):
                    try:
                        answer = await self._send_once(step)
                    except Exception as exc:  # the retry policy retries it or raises it
                        step = work.throw(exc)
                        continue
                    step = work.send(answer)
                else:
                    await asyncio.sleep(step)
                    step = work.send(None)
        except StopIteration as stop:
            return stop.value

    async def _send_once(self, call: Call) -> Any:
        url = self.url + call.path
        content = call.content()
        data: bytes | io.BytesIO | None = content
        headers: dict[str, str] = {}
        if content is not None:
            if len(content) > _LARGE_BODY:
                data = io.BytesIO(content)  # aiohttp streams a file-like body in chunks
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout + call.wait)
        try:
            async with self._get_session().request(
                call.method, url, data=data, headers=headers, params=call.query, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise self.settings.timed_out(call) from None
            raise self.settings.unreachable(exc) from None
        except TimeoutError:
            raise self.settings.timed_out(call) from None
        return self.settings.answer(status, raw, url)

    async def follow(self, cursor: StreamCursor) -> AsyncIterator[StreamChunk]:
        """A stream's chunks as JSON lines; reconnects from the first chunk not yet read
        after a dropped connection (``retries`` times in a row at most), and ends when the
        host ends the answer for good (the instance ended)."""
        url = self.url + cursor.path
        failures = 0
        # no total timeout: a stream lasts as long as its instance
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout)
        while True:
            try:
                async with self._get_session().get(
                    url, params=cursor.query(), headers={"Accept": NDJSON}, timeout=timeout
                ) as response:
                    if response.status != 200:
                        self.settings.answer(response.status, await response.read(), url)
                    async for data in response.content.iter_any():
                        for chunk in cursor.feed(data):
                            failures = 0
                            yield chunk
                return
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failures += 1
                if failures > self.settings.retries:
                    raise self.settings.unreachable(exc) from None
                await asyncio.sleep(self.settings.backoff(failures))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _HttpInstance(WorkflowInstance[OutT]):
    """A ``WorkflowInstance`` steered over HTTP."""

    def __init__(self, api: _HttpApi, workflow: str, id: str, output_type: Any = Any) -> None:
        self._api = api
        self._workflow = workflow
        self._output_type = output_type
        self.id = id
        self._path = _http.instance_path(workflow, id)

    async def status(self) -> InstanceStatus[OutT]:
        data = await self._api.send(_http.status_call(self._path))
        return _http.status_from(data, self._output_type)

    async def describe(self) -> dict[str, Any]:
        """The instance's detail: params, output, error, times and every step."""
        data: dict[str, Any] = await self._api.send(Call("GET", self._path))
        return data

    async def pause(self) -> None:
        await self._api.send(_http.action_call(self._path, "pause"))

    async def resume(self) -> None:
        await self._api.send(_http.action_call(self._path, "resume"))

    async def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None:
        await self._api.send(_http.terminate_call(self._path, rollback, cascade=cascade))

    async def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None:
        await self._api.send(_http.restart_call(self._path, from_step))

    async def delete(self) -> None:
        await self._api.send(_http.delete_call(self._path))

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        await self._api.send(_http.event_call(self._path, type, payload))

    async def result(self, timeout: float | None = None) -> OutT:
        polls = _http.result_polls(self._workflow, self.id, timeout, self._output_type)
        output: OutT = await self._api.drive(polls)
        return output

    async def stream(self, name: str = "default", start: int = 0) -> AsyncIterator[StreamChunk]:
        cursor = StreamCursor(self._path, name, start)
        while True:
            async for chunk in self._api.follow(cursor):
                yield chunk
            # the host ends the answer when the instance ended, or when it shuts down
            if (await self.status()).status in _http.FINAL_STATUSES:
                return
            await asyncio.sleep(self._api.settings.backoff(1))

    async def logs(self) -> list[LogEntry]:
        entries: list[LogEntry] = await self._api.drive(_http.logs_pages(self._path))
        return entries


class _HttpWorkflow(Workflow[P, OutT]):
    """A ``Workflow`` binding over HTTP."""

    def __init__(self, api: _HttpApi, name: str, output_type: Any = Any) -> None:
        self._api = api
        self.name = name
        self._output_type = output_type

    def _instance(self, id: str) -> _HttpInstance[OutT]:
        return _HttpInstance(self._api, self.name, id, self._output_type)

    async def create(
        self,
        *,
        id: str | None = None,
        params: P | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> WorkflowInstance[OutT]:
        data = await self._api.send(
            _http.create_call(self.name, id, params, priority, concurrency_key)
        )
        return self._instance(data["id"])

    async def create_batch(self, batch: Sequence[CreateOptions[P]]) -> list[WorkflowInstance[OutT]]:
        data = await self._api.send(_http.create_batch_call(self.name, batch))
        return [self._instance(id) for id in _http.batch_ids(data)]

    async def get(self, id: str) -> WorkflowInstance[OutT]:
        instance = self._instance(id)
        await instance.status()  # NotFoundError when there is no such instance
        return instance

    async def list_instances(
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
        data: dict[str, Any] = await self._api.send(
            _http.list_call(self.name, status, limit, cursor, version)
        )
        return data

    async def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]:
        data = await self._api.send(_http.bulk_call(self.name, action, ids, status))
        return _http.bulk_results(data)

    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        return await _resume_hook(self._api, token, payload)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} at {self._api.url}>"


async def _resume_hook(api: _HttpApi, token: str, payload: Any) -> WorkflowInstance:
    data = await api.send(_http.hook_call(token, payload))
    return _HttpInstance(api, data["workflow"], data["instance_id"])


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
    def workflow(self, name: str) -> Workflow[Any, Any]: ...

    @overload
    def workflow(self, name: str, params_type: type[P]) -> Workflow[P, Any]: ...

    @overload
    def workflow(
        self, name: str, params_type: type[P] | None, output_type: type[OutT]
    ) -> Workflow[P, OutT]: ...

    @overload
    def workflow(self, name: str, *, output_type: type[OutT]) -> Workflow[Any, OutT]: ...

    def workflow(
        self, name: str, params_type: Any = None, output_type: Any = None
    ) -> Workflow[Any, Any]:
        """The binding of one workflow on the host.

        Args:
            name: The workflow's name (its ``name`` in ``durableflow.toml``).
            params_type: Its params type, for type checking only.
            output_type: Its output type (the return annotation of its ``run()``):
                ``result()`` and ``status().output`` are restored to it (attrs classes
                via cattrs). Without it, outputs are plain JSON.

        Raises:
            ValidationError: ``name`` is not a valid workflow name.
        """
        return _HttpWorkflow(
            self._api, _http.workflow_name(name), Any if output_type is None else output_type
        )

    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        """Resume the wait that registered ``token`` (``wait_for_event(..., token=)``),
        whatever its workflow and instance: ``POST /api/hooks/{token}``. Sent once.

        Returns:
            A handle on the instance that was resumed.

        Raises:
            NotFoundError: No wait with this token is waiting.
            ValidationError: The payload does not fit the wait's ``payload_type``.
        """
        return await _resume_hook(self._api, token, payload)

    async def workflows(self) -> list[dict[str, Any]]:
        """The workflows the host runs: ``[{"name", "binding", "class_name", ...}]``."""
        data = await self._api.send(_http.workflows_call())
        workflows: list[dict[str, Any]] = data["workflows"]
        return workflows

    async def schedules(self) -> list[dict[str, Any]]:
        """The host's schedules: ``[{"name", "workflow", "cron", "timezone", "catch_up",
        "paused", "next_instance", "last_tick"}]``."""
        data = await self._api.send(_http.schedules_call())
        schedules: list[dict[str, Any]] = data["schedules"]
        return schedules

    async def pause_schedule(self, name: str) -> dict[str, Any]:
        """Stop a schedule's ticks on every host; the schedule afterwards.

        Raises:
            NotFoundError: No such schedule.
        """
        result: dict[str, Any] = await self._api.send(_http.schedule_action_call(name, "pause"))
        return result

    async def resume_schedule(self, name: str) -> dict[str, Any]:
        """Start a paused schedule's ticks again (missed ones are skipped).

        Raises:
            NotFoundError: No such schedule.
        """
        result: dict[str, Any] = await self._api.send(_http.schedule_action_call(name, "resume"))
        return result

    async def close(self) -> None:
        """Close the connection pool."""
        await self._api.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<durableflow.Client {self._api.url}>"
