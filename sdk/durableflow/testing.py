"""A testing kit for users' own test suites.

Run workflows in-process on a real (temporary) SQLite file, with a virtual clock so that a
``step.sleep("1 day")`` passes in milliseconds, and change what one instance sees: mock a
step's result or error, force a step or event timeout, inject events, resume hooks and
call webhooks, skip sleeps and retry delays. It offers what Cloudflare's
``introspectWorkflowInstance`` and ``introspectWorkflow`` offer, in Python spelling::

    async with WorkflowTestEnvironment({"ORDERS": OrderWorkflow}) as env:
        probe = env.introspect("order-1")
        probe.mock_step_result("charge card", {"charge_id": "ch_1"})
        probe.mock_event("approval", {"approved": True})
        await env.workflow(OrderWorkflow).create(id="order-1", params=Order(...))
        await probe.wait_for_status("complete")
        assert await probe.get_output() == {...}

    with env.introspect_workflow(OrderWorkflow) as orders:  # every instance created next
        orders.modify_all(lambda m: m.disable_sleeps())
        await env.workflow(OrderWorkflow).create(params=Order(...))
        [probe] = orders.get()

Time is virtual by default: it stands still while the test runs and jumps to the next
timer while the test waits on the kit (``wait_for_status``, ``wait_for_step_result``,
``result``), the way Temporal's time-skipping test environment does. To show that
something did not happen, ``await env.wait_until_idle()`` (nothing runnable) instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import inspect
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

import attrs
import orjson

from ._binding import Workflow, WorkflowInstance
from ._duration import Duration, to_seconds
from ._entrypoint import WorkflowEntrypoint
from ._errors import ValidationError
from ._output import LogEntry, StreamChunk
from ._types import (
    BulkAction,
    BulkResult,
    CreateOptions,
    ErrorInfo,
    InstanceStatus,
    StatusName,
    StepRef,
)
from ._webhooks import WebhookRequest

__all__ = [
    "InstanceIntrospector",
    "InstanceModifier",
    "WorkflowIntrospector",
    "WorkflowTestEnvironment",
    "replay",
]

ParamsT = TypeVar("ParamsT")


class _TestRuntime(Protocol):
    """What the host's runtime provides to the kit (found through an entry point)."""

    env: Any

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def binding(self, workflow: str) -> Workflow[Any]: ...
    def now(self) -> float: ...
    def advance(self, seconds: float) -> None: ...
    async def send_event(self, workflow: str, id: str, type: str, payload: Any) -> None: ...
    async def resume_hook(self, token: str, payload: Any) -> tuple[str, str]: ...
    async def call_webhook(self, token: str, request: WebhookRequest) -> int: ...
    async def wait_until_idle(self, timeout: float) -> None: ...
    async def status(self, workflow: str, id: str) -> InstanceStatus: ...
    async def describe(self, workflow: str, id: str) -> dict[str, Any]: ...
    async def wait_for_status(
        self, workflow: str, id: str, statuses: frozenset[str], timeout: float
    ) -> InstanceStatus: ...
    async def wait_for_step(
        self, workflow: str, id: str, name: str, count: int, timeout: float
    ) -> dict[str, Any]: ...
    async def run_mark(self, workflow: str, id: str) -> tuple[int, int] | None: ...
    async def event_counts(self, workflow: str, id: str) -> dict[str, int]: ...
    async def read_stored_chunks(
        self, workflow: str, id: str, stream: str
    ) -> list[StreamChunk]: ...
    async def history(self, workflow: str, id: str) -> dict[str, Any]: ...


def _runtime_entry(name: str) -> Any:
    for point in importlib.metadata.entry_points(group="durableflow.runtime", name=name):
        return point.load()
    raise RuntimeError("durableflow's runtime is not installed (entry point durableflow.runtime)")


def _load_runtime(**options: Any) -> _TestRuntime:
    runtime: _TestRuntime = _runtime_entry("testing")(**options)
    return runtime


def replay(
    workflow: type[WorkflowEntrypoint[Any, Any]],
    history: Mapping[str, Any] | str | os.PathLike[str],
) -> None:
    """Replay a recorded history against a workflow class, as a host would resume it,
    without running any step callback; returns when the class replays all of it.

    Record histories with ``durableflow instances export NAME ID > h.json`` (or
    :meth:`WorkflowTestEnvironment.export_history`) and keep them in your test suite: a
    history recorded today must replay under tomorrow's code. Works from synchronous and
    from ``async`` tests alike.

    Args:
        workflow: The class that serves the history's version (its ``version`` must equal
            the one the history recorded).
        history: The exported history, or the path of a file holding it.

    Raises:
        NonDeterminismError: The code asks for other steps than the history holds, with
            the message the engine would record.
        ValidationError: A malformed history, or one of another version than the class.
        Exception: Whatever the code raised outside its steps.
    """
    if isinstance(history, str | os.PathLike):
        history = orjson.loads(Path(history).read_bytes())
    work = _runtime_entry("replay")(workflow, history)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work)
        return
    # called from a coroutine: this loop is busy running the caller; replay on another
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


@attrs.define
class _StepMock:
    kind: str  # "result" | "error" | "timeout"
    value: Any
    count: int | None
    times: int | None
    used: int = 0


class InstanceModifier:
    """What an instance sees: mocked step results and errors, forced timeouts, mocked
    events, disabled sleeps and retry delays (Cloudflare's ``WorkflowInstanceModifier``).

    Mocks hold across ``restart()`` of the instance: a mocked event the restarted run no
    longer has (its wait was dropped with the history) is delivered again.
    """

    def __init__(self) -> None:
        self._mocks: dict[str, list[_StepMock]] = {}
        self._no_sleeps = False
        self._no_retry_delays = False
        self._event_timeouts: set[str] = set()
        #: ``(type, payload)`` of each mocked event, in the order they are delivered
        self.mocked_events: list[tuple[str, Any]] = []

    # --- set-up --------------------------------------------------------------------
    def disable_sleeps(self) -> None:
        """``sleep`` and ``sleep_until`` return at once."""
        self._no_sleeps = True

    def disable_retry_delays(self) -> None:
        """Failed attempts are retried at once, without back-off."""
        self._no_retry_delays = True

    def mock_step_result(self, name: str, value: Any, *, count: int | None = None) -> None:
        """The step ``name`` (every occurrence, or only occurrence ``count``) returns
        ``value`` without running its callback."""
        self._mocks.setdefault(name, []).append(_StepMock("result", value, count, None))

    def mock_step_error(
        self, name: str, error: BaseException, *, times: int | None = None, count: int | None = None
    ) -> None:
        """Attempts of step ``name`` raise ``error`` (the first ``times`` attempts, or all)."""
        if not isinstance(error, Exception):
            raise ValidationError(f"mock_step_error needs an Exception, not {error!r}")
        self._mocks.setdefault(name, []).append(_StepMock("error", error, count, times))

    def force_step_timeout(
        self, name: str, *, times: int | None = None, count: int | None = None
    ) -> None:
        """Attempts of step ``name`` time out (the first ``times`` attempts, or all)."""
        self._mocks.setdefault(name, []).append(_StepMock("timeout", None, count, times))

    def mock_event(self, type: str, payload: Any = None) -> None:
        """Send this event to the instance as soon as it is created (and again after a
        restart that dropped the wait that took it)."""
        self.mocked_events.append((type, payload))

    def force_event_timeout(self, name: str) -> None:
        """``wait_for_event`` step ``name`` times out at once."""
        self._event_timeouts.add(name)

    # --- the engine asks these ------------------------------------------------------
    def step_outcome(self, name: str, count: int, attempt: int) -> tuple[str, Any] | None:
        """Used by the engine: what a mocked attempt does, or ``None`` to run it."""
        for mock in self._mocks.get(name, ()):
            if mock.count is not None and mock.count != count:
                continue
            if mock.times is not None and mock.used >= mock.times:
                continue
            mock.used += 1
            return (mock.kind, mock.value)
        return None

    def sleeps_disabled(self) -> bool:
        """Used by the engine."""
        return self._no_sleeps

    def retry_delays_disabled(self) -> bool:
        """Used by the engine."""
        return self._no_retry_delays

    def event_timeout_forced(self, name: str) -> bool:
        """Used by the engine."""
        return name in self._event_timeouts

    def _copy_into(self, other: InstanceModifier) -> None:
        """Give ``other`` the same set-up, with fresh counts of used mocks."""
        other._mocks = {
            name: [attrs.evolve(m, used=0) for m in mocks] for name, mocks in self._mocks.items()
        }
        other._no_sleeps = self._no_sleeps
        other._no_retry_delays = self._no_retry_delays
        other._event_timeouts = set(self._event_timeouts)
        other.mocked_events = list(self.mocked_events)


class InstanceIntrospector(InstanceModifier):
    """Changes what one instance sees, and waits on what it does.

    Get one from :meth:`WorkflowTestEnvironment.introspect`, set it up before creating
    the instance, then create it with the same id; or from
    :meth:`WorkflowIntrospector.get` for the instances a workflow introspector saw created.
    """

    def __init__(self, env: WorkflowTestEnvironment, workflow: str, instance_id: str) -> None:
        super().__init__()
        self._env = env
        self.workflow = workflow
        self.instance_id = instance_id
        self._delivered: tuple[int, int] | None = None  # the run the mocked events went to

    # --- observation -------------------------------------------------------------
    async def wait_for_status(
        self, status: StatusName | Sequence[StatusName], *, timeout: float = 10.0
    ) -> InstanceStatus:
        """Wait (virtual time jumps meanwhile) until the instance has one of ``status``.

        Raises:
            TimeoutError: Not within ``timeout`` real seconds.
        """
        wanted = frozenset([status] if isinstance(status, str) else status)
        return await self._env._runtime_or_fail().wait_for_status(
            self.workflow, self.instance_id, wanted, timeout
        )

    async def wait_for_step_result(
        self, name: str, *, count: int = 1, timeout: float = 10.0
    ) -> Any:
        """Wait until step ``name`` (occurrence ``count``) completes; return its result."""
        step = await self._env._runtime_or_fail().wait_for_step(
            self.workflow, self.instance_id, name, count, timeout
        )
        return step["output"]

    async def get_output(self) -> Any:
        """The instance's output (``None`` until complete)."""
        status = await self._env._runtime_or_fail().status(self.workflow, self.instance_id)
        return status.output

    async def get_error(self) -> ErrorInfo | None:
        """The ``{name, message}`` of the error that ended the instance, if any."""
        status = await self._env._runtime_or_fail().status(self.workflow, self.instance_id)
        return status.error

    async def get_steps(self) -> list[dict[str, Any]]:
        """Every step with status, attempts, attempt log, output, error and times."""
        detail = await self._env._runtime_or_fail().describe(self.workflow, self.instance_id)
        steps: list[dict[str, Any]] = detail["steps"]
        return steps

    async def _instance(self) -> WorkflowInstance:
        return await self._env._runtime_or_fail().binding(self.workflow).get(self.instance_id)

    async def get_logs(self) -> list[LogEntry]:
        """The instance's log so far (``ctx.log`` and ``step.log`` entries), oldest first."""
        return await (await self._instance()).logs()

    async def get_stream(self, name: str = "default") -> list[StreamChunk]:
        """The chunks of one of the instance's streams written so far (no waiting)."""
        return await self._env._runtime_or_fail().read_stored_chunks(
            self.workflow, self.instance_id, name
        )


class _KitInstance(WorkflowInstance):
    """An instance handle that follows the environment across engine restarts."""

    def __init__(self, env: WorkflowTestEnvironment, workflow: str, id: str) -> None:
        self._env = env
        self._workflow = workflow
        self.id = id

    async def _current(self) -> WorkflowInstance:
        return await self._env._runtime_or_fail().binding(self._workflow).get(self.id)

    async def status(self) -> InstanceStatus:
        return await (await self._current()).status()

    async def pause(self) -> None:
        await (await self._current()).pause()

    async def resume(self) -> None:
        await (await self._current()).resume()

    async def terminate(self, *, rollback: bool = False, cascade: bool = False) -> None:
        await (await self._current()).terminate(rollback=rollback, cascade=cascade)

    async def restart(self, from_step: StepRef | dict[str, Any] | None = None) -> None:
        await (await self._current()).restart(from_step)

    async def delete(self) -> None:
        await (await self._current()).delete()

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        await (await self._current()).send_event(type=type, payload=payload)

    async def stream(self, name: str = "default", start: int = 0) -> AsyncIterator[StreamChunk]:
        async for chunk in (await self._current()).stream(name, start):
            yield chunk

    async def logs(self) -> list[LogEntry]:
        return await (await self._current()).logs()

    async def result(self, timeout: float | None = None) -> Any:
        # wait through the kit so that virtual time jumps meanwhile, then read the outcome
        await self._env.introspect(self.id, self._workflow).wait_for_status(
            ["complete", "errored", "terminated"], timeout=timeout if timeout is not None else 3600
        )
        return await (await self._current()).result(timeout=10.0)


class _KitWorkflow(Workflow[Any]):
    """A binding that follows the environment across engine restarts."""

    def __init__(self, env: WorkflowTestEnvironment, workflow: str) -> None:
        self._env = env
        self._workflow = workflow

    def _current(self) -> Workflow[Any]:
        return self._env._runtime_or_fail().binding(self._workflow)

    async def create(
        self,
        *,
        id: str | None = None,
        params: Any = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> WorkflowInstance:
        instance = await self._current().create(
            id=id, params=params, priority=priority, concurrency_key=concurrency_key
        )
        return _KitInstance(self._env, self._workflow, instance.id)

    async def create_batch(self, batch: Sequence[CreateOptions[Any]]) -> list[WorkflowInstance]:
        instances = await self._current().create_batch(batch)
        return [_KitInstance(self._env, self._workflow, i.id) for i in instances]

    async def get(self, id: str) -> WorkflowInstance:
        instance = await self._current().get(id)
        return _KitInstance(self._env, self._workflow, instance.id)

    async def bulk(
        self,
        action: BulkAction,
        ids: Sequence[str] | None = None,
        status: StatusName | None = None,
    ) -> list[BulkResult]:
        return await self._current().bulk(action, ids=ids, status=status)

    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        return await self._env.resume_hook(token, payload)


class WorkflowIntrospector:
    """Applies one set-up to every instance of a workflow created after it, and lists
    them (Cloudflare's ``introspectWorkflow``).

    Get one from :meth:`WorkflowTestEnvironment.introspect_workflow`; set it up with
    :meth:`modify_all`; :meth:`dispose` it (or use it as a context manager) so that
    instances created later are left alone.
    """

    def __init__(self, env: WorkflowTestEnvironment, workflow: str) -> None:
        self._env = env
        self.workflow = workflow
        self._modifier = InstanceModifier()
        self._instances: list[InstanceIntrospector] = []

    def modify_all(
        self, fn: Callable[[InstanceModifier], Awaitable[None] | None]
    ) -> Awaitable[None] | None:
        """Call ``fn`` with the modifier every instance created from now on gets a copy of
        (each with its own counts of used mocks). ``fn`` may be async: then await this."""
        outcome = fn(self._modifier)
        return outcome if inspect.isawaitable(outcome) else None

    def get(self) -> list[InstanceIntrospector]:
        """The introspectors of the instances created since, in the order of creation."""
        return list(self._instances)

    def dispose(self) -> None:
        """Stop applying the set-up to instances created from now on."""
        self._env._workflow_probes.pop(self.workflow, None)

    def _adopt(self, instance_id: str) -> InstanceIntrospector:
        probe = InstanceIntrospector(self._env, self.workflow, instance_id)
        self._modifier._copy_into(probe)
        self._instances.append(probe)
        return probe

    def __enter__(self) -> WorkflowIntrospector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


class WorkflowTestEnvironment:
    """An in-process engine for tests, on a SQLite file, with a virtual clock.

    Args:
        workflows: ``{binding: WorkflowClass}``, or a list of classes (binding = class name).
            The workflow's name is its binding.
        database: SQLite file to use (default: a new temporary one). Reuse a file to test
            what survives a restart.
        virtual_time: Use a virtual clock (default) or wall-clock time.
        start: The virtual clock's start (default: now).
        max_concurrency: Instances in memory at once.
    """

    def __init__(
        self,
        workflows: Mapping[str, type[WorkflowEntrypoint[Any, Any]]]
        | Sequence[type[WorkflowEntrypoint[Any, Any]]],
        *,
        database: str | Path | None = None,
        virtual_time: bool = True,
        start: datetime | None = None,
        max_concurrency: int = 256,
    ) -> None:
        if isinstance(workflows, Mapping):
            self._classes = dict(workflows)
        else:
            self._classes = {cls.__name__: cls for cls in workflows}
        self._database = database
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._virtual = virtual_time
        self._start = start.timestamp() if start is not None else None
        self._max_concurrency = max_concurrency
        self._introspectors: dict[tuple[str, str], InstanceIntrospector] = {}
        self._workflow_probes: dict[str, WorkflowIntrospector] = {}
        self._runtime: _TestRuntime | None = None

    @property
    def database(self) -> Path:
        """The SQLite file in use."""
        if self._database is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="durableflow-test-")
            self._database = Path(self._tmp.name) / "state.db"
        return Path(self._database)

    async def __aenter__(self) -> WorkflowTestEnvironment:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def start(self) -> None:
        """Start the engine (``async with`` does this)."""
        runtime = _load_runtime(
            workflows=self._classes,
            database=self.database,
            virtual_time=self._virtual,
            start=self._start,
            max_concurrency=self._max_concurrency,
            hooks=self._hooks_for,
            on_queued=self._adopt,
            on_created=self.deliver_mocked_events,
        )
        await runtime.start()
        self._runtime = runtime

    async def stop(self) -> None:
        """Stop the engine; the database keeps everything."""
        if self._runtime is not None:
            self._start = self._runtime.now()
            await self._runtime.stop()
            self._runtime = None

    async def restart(self) -> None:
        """Stop the engine and start a new one on the same database (a host restart)."""
        await self.stop()
        await self.start()

    def _runtime_or_fail(self) -> _TestRuntime:
        if self._runtime is None:
            raise RuntimeError("the test environment is not started (use 'async with')")
        return self._runtime

    def _hooks_for(self, workflow: str, instance_id: str) -> InstanceIntrospector | None:
        return self._introspectors.get((workflow, instance_id))

    def _adopt(self, workflow: str, instance_id: str) -> None:
        """An instance was queued (created, resumed or restarted): a workflow
        introspector takes it when no introspector has it yet."""
        key = (workflow, instance_id)
        probe = self._workflow_probes.get(workflow)
        if probe is not None and key not in self._introspectors:
            self._introspectors[key] = probe._adopt(instance_id)

    @property
    def env(self) -> Any:
        """The bindings workflows see as ``self.env`` (one attribute per binding)."""
        return self._runtime_or_fail().env

    @overload
    def workflow(self, which: type[WorkflowEntrypoint[Any, ParamsT]]) -> Workflow[ParamsT]: ...
    @overload
    def workflow(self, which: str) -> Workflow[Any]: ...
    def workflow(self, which: type[WorkflowEntrypoint[Any, Any]] | str) -> Workflow[Any]:
        """The binding of a workflow, by class or by binding name.

        It stays valid across :meth:`restart`: each call goes to the engine running now.
        """
        return _KitWorkflow(self, self._name(which))

    def _only_or(self, workflow: type[WorkflowEntrypoint[Any, Any]] | str | None) -> str:
        """The name of ``workflow``, or of the environment's only workflow when ``None``."""
        if workflow is None:
            if len(self._classes) != 1:
                raise ValidationError("name the workflow: this environment has several")
            return next(iter(self._classes))
        return self._name(workflow)

    def _name(self, which: type[WorkflowEntrypoint[Any, Any]] | str) -> str:
        if isinstance(which, str):
            if which not in self._classes:
                raise ValidationError(f"no workflow bound as {which!r} in this environment")
            return which
        for name, cls in self._classes.items():
            if cls is which:
                return name
        raise ValidationError(f"{which.__name__} is not a workflow of this environment")

    async def export_history(
        self, instance_id: str, workflow: type[WorkflowEntrypoint[Any, Any]] | str | None = None
    ) -> dict[str, Any]:
        """An instance's recorded history, as ``durableflow instances export`` prints it:
        save it as JSON and hand it to :func:`replay` in a later test."""
        return await self._runtime_or_fail().history(self._only_or(workflow), instance_id)

    def introspect(
        self, instance_id: str, workflow: type[WorkflowEntrypoint[Any, Any]] | str | None = None
    ) -> InstanceIntrospector:
        """The introspector of one instance (create the instance after setting it up)."""
        name = self._only_or(workflow)
        key = (name, instance_id)
        if key not in self._introspectors:
            self._introspectors[key] = InstanceIntrospector(self, name, instance_id)
        return self._introspectors[key]

    def introspect_workflow(
        self, workflow: type[WorkflowEntrypoint[Any, Any]] | str
    ) -> WorkflowIntrospector:
        """An introspector of every instance of ``workflow`` created from now on (until it
        is disposed); a second call for the same workflow returns the same one."""
        name = self._name(workflow)
        if name not in self._workflow_probes:
            self._workflow_probes[name] = WorkflowIntrospector(self, name)
        return self._workflow_probes[name]

    async def deliver_mocked_events(self, workflow: str, instance_id: str) -> None:
        """Send the events ``mock_event`` set up for an instance: on its creation, and
        after a restart those its history no longer holds (done by the kit)."""
        probe = self._introspectors.get((workflow, instance_id))
        if probe is None or not probe.mocked_events:
            return
        runtime = self._runtime_or_fail()
        mark = await runtime.run_mark(workflow, instance_id)
        if mark is None or mark == probe._delivered:
            return  # gone, or this run has them (a resume queues it too)
        probe._delivered = mark
        present = await runtime.event_counts(workflow, instance_id)
        for type, payload in probe.mocked_events:
            if present.get(type, 0) > 0:
                present[type] -= 1  # still stored (pending, or taken by a kept step)
                continue
            await runtime.send_event(workflow, instance_id, type, payload)

    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance:
        """Resume the wait that registered ``token``, as ``Workflow.resume_hook``.

        Raises:
            NotFoundError: No wait with this token is waiting.
            ValidationError: The payload does not fit the wait's ``payload_type``.
        """
        workflow, id = await self._runtime_or_fail().resume_hook(token, payload)
        return _KitInstance(self, workflow, id)

    async def call_webhook(
        self,
        url: str,
        body: bytes | str = b"",
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> int:
        """Call a webhook as an outside service would; returns the HTTP status the host
        answers: 202 taken, 401 bad signature, 404 unknown, 410 already called.

        Args:
            url: The webhook's ``url`` (or its token).
            body: The raw body.
            method: ``POST``, ``PUT`` or ``PATCH``.
            headers: Request headers (a signature, a content type...).
            query: Query string parameters.
        """
        token = url.rstrip("/").rpartition("/")[2]
        request = WebhookRequest(
            method=method.upper(),
            path=f"/hooks/{token}",
            query=dict(query or {}),
            headers={k.lower(): v for k, v in (headers or {}).items()},
            body=body.encode() if isinstance(body, str) else body,
        )
        return await self._runtime_or_fail().call_webhook(token, request)

    def now(self) -> datetime:
        """The environment's current time (virtual or real)."""
        from datetime import UTC

        return datetime.fromtimestamp(self._runtime_or_fail().now(), UTC)

    def advance(self, duration: Duration) -> None:
        """Move virtual time forward, firing every timer that falls due."""
        self._runtime_or_fail().advance(to_seconds(duration))

    async def wait_until_idle(self, *, timeout: float = 10.0) -> None:
        """Return once nothing is runnable: no instance running, nothing due now.

        The way to show that something did *not* happen (a paused instance stayed paused,
        a terminated one ran no further step) without sleeping: everything that was due
        has run to its next suspension, and every instance left is waiting on a timer
        later than now, on an event, or on nothing (paused, ended). Virtual time does not
        move meanwhile: a timer due later stays pending until :meth:`advance` (or a kit
        wait that lets time jump). Like trio's ``wait_all_tasks_blocked``.

        Args:
            timeout: Real seconds to wait for the engine to become idle.

        Raises:
            TimeoutError: Something was still running after ``timeout`` (a step that
                never returns, for example).
        """
        await self._runtime_or_fail().wait_until_idle(timeout)
