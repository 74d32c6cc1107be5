"""A testing kit for users' own test suites.

Run workflows in-process on a real (temporary) SQLite file, with a virtual clock so that a
``step.sleep("1 day")`` passes in milliseconds, and change what one instance sees: mock a
step's result or error, force a step or event timeout, inject events, skip sleeps and
retry delays. It offers what Cloudflare's ``introspectWorkflowInstance`` offers, in
Python spelling::

    async with WorkflowTestEnvironment({"ORDERS": OrderWorkflow}) as env:
        probe = env.introspect("order-1")
        probe.mock_step_result("charge card", {"charge_id": "ch_1"})
        probe.mock_event("approval", {"approved": True})
        await env.workflow(OrderWorkflow).create(id="order-1", params=Order(...))
        await probe.wait_for_status("complete")
        assert await probe.get_output() == {...}

Time is virtual by default: it stands still while the test runs and jumps to the next
timer while the test waits on the kit (``wait_for_status``, ``wait_for_step_result``,
``result``), the way Temporal's time-skipping test environment does. To show that
something did not happen, ``await env.wait_until_idle()`` (nothing runnable) instead of
sleeping.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

import attrs

from ._binding import Workflow, WorkflowInstance
from ._duration import Duration, to_seconds
from ._entrypoint import WorkflowEntrypoint
from ._errors import ValidationError
from ._types import CreateOptions, ErrorInfo, InstanceStatus, StatusName

__all__ = ["InstanceIntrospector", "WorkflowTestEnvironment"]

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
    async def wait_until_idle(self, timeout: float) -> None: ...
    async def status(self, workflow: str, id: str) -> InstanceStatus: ...
    async def describe(self, workflow: str, id: str) -> dict[str, Any]: ...
    async def wait_for_status(
        self, workflow: str, id: str, statuses: frozenset[str], timeout: float
    ) -> InstanceStatus: ...
    async def wait_for_step(
        self, workflow: str, id: str, name: str, count: int, timeout: float
    ) -> dict[str, Any]: ...


def _load_runtime(**options: Any) -> _TestRuntime:
    points = importlib.metadata.entry_points(group="durableflow.runtime", name="testing")
    for point in points:
        factory = point.load()
        runtime: _TestRuntime = factory(**options)
        return runtime
    raise RuntimeError("durableflow's runtime is not installed (entry point durableflow.runtime)")


@attrs.define
class _StepMock:
    kind: str  # "result" | "error" | "timeout"
    value: Any
    count: int | None
    times: int | None
    used: int = 0


class InstanceIntrospector:
    """Changes what one instance sees, and waits on what it does.

    Get one from :meth:`WorkflowTestEnvironment.introspect`, set it up before creating
    the instance, then create it with the same id.
    """

    def __init__(self, env: WorkflowTestEnvironment, workflow: str, instance_id: str) -> None:
        self._env = env
        self.workflow = workflow
        self.instance_id = instance_id
        self._mocks: dict[str, list[_StepMock]] = {}
        self._no_sleeps = False
        self._no_retry_delays = False
        self._event_timeouts: set[str] = set()
        self.pending_events: list[tuple[str, Any]] = []

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
        """Send this event to the instance as soon as it is created."""
        self.pending_events.append((type, payload))

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

    async def terminate(self) -> None:
        await (await self._current()).terminate()

    async def restart(self) -> None:
        await (await self._current()).restart()

    async def send_event(self, *, type: str, payload: Any = None) -> None:
        await (await self._current()).send_event(type=type, payload=payload)

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

    async def create(self, *, id: str | None = None, params: Any = None) -> WorkflowInstance:
        instance = await self._current().create(id=id, params=params)
        return _KitInstance(self._env, self._workflow, instance.id)

    async def create_batch(self, batch: Sequence[CreateOptions[Any]]) -> list[WorkflowInstance]:
        instances = await self._current().create_batch(batch)
        return [_KitInstance(self._env, self._workflow, i.id) for i in instances]

    async def get(self, id: str) -> WorkflowInstance:
        instance = await self._current().get(id)
        return _KitInstance(self._env, self._workflow, instance.id)


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

    def _name(self, which: type[WorkflowEntrypoint[Any, Any]] | str) -> str:
        if isinstance(which, str):
            if which not in self._classes:
                raise ValidationError(f"no workflow bound as {which!r} in this environment")
            return which
        for name, cls in self._classes.items():
            if cls is which:
                return name
        raise ValidationError(f"{which.__name__} is not a workflow of this environment")

    def introspect(
        self, instance_id: str, workflow: type[WorkflowEntrypoint[Any, Any]] | str | None = None
    ) -> InstanceIntrospector:
        """The introspector of one instance (create the instance after setting it up)."""
        if workflow is None:
            if len(self._classes) != 1:
                raise ValidationError("name the workflow: this environment has several")
            name = next(iter(self._classes))
        else:
            name = self._name(workflow)
        key = (name, instance_id)
        if key not in self._introspectors:
            self._introspectors[key] = InstanceIntrospector(self, name, instance_id)
        return self._introspectors[key]

    async def deliver_mocked_events(self, workflow: str, instance_id: str) -> None:
        """Send the events ``mock_event`` queued for an instance (done on its creation)."""
        probe = self._introspectors.get((workflow, instance_id))
        if probe is None:
            return
        events, probe.pending_events = probe.pending_events, []
        for type, payload in events:
            await self._runtime_or_fail().send_event(workflow, instance_id, type, payload)

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
