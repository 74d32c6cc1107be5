"""The runtime side of ``durableflow.testing``: an engine on a SQLite file and a clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from durableflow import (
    InstanceStatus,
    ValidationError,
    WebhookRequest,
    Workflow,
    WorkflowEntrypoint,
)
from durableflow._output import StreamChunk, check_stream_name
from durableflow._serde import loads

from .clock import RealClock, VirtualClock
from .engine import Engine, InstanceHooks, WorkflowSpec
from .engine._output import chunk_of
from .engine._replay import history_from_json, raise_for, replay
from .server import InstanceDetail
from .store.sqlite import SqliteStore

__all__ = ["TestRuntime", "create_test_runtime", "replay_history"]


class _IdleSignal:
    """Futures resolved the next time the engine's scheduler finds nothing to run.

    The scheduler calls ``clock.idle(next_at)`` exactly then: no activation is running,
    everything due has been claimed, no wake-up is pending, and it is about to block.
    """

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def next(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


class _KitVirtualClock(VirtualClock):
    def __init__(self, start: float | None, signal: _IdleSignal) -> None:
        super().__init__(start, autojump=False)
        self._signal = signal

    def idle(self, next_at: float | None) -> bool:
        jumped = super().idle(next_at)
        if not jumped:  # after a jump there is work due again
            self._signal.fire()
        return jumped


class _KitRealClock(RealClock):
    def __init__(self, signal: _IdleSignal) -> None:
        super().__init__()
        self._signal = signal

    def idle(self, next_at: float | None) -> bool:
        self._signal.fire()
        return False


class TestRuntime:
    """An engine for tests; see ``durableflow.testing.WorkflowTestEnvironment``."""

    def __init__(
        self,
        *,
        workflows: Mapping[str, type[WorkflowEntrypoint[Any, Any]]],
        database: Path,
        virtual_time: bool,
        start: float | None,
        max_concurrency: int,
        hooks: Callable[[str, str], InstanceHooks | None],
        on_created: Callable[[str, str], Awaitable[None]],
        on_queued: Callable[[str, str], None] | None = None,
    ) -> None:
        self._idle = _IdleSignal()
        self.clock: VirtualClock | RealClock = (
            _KitVirtualClock(start, self._idle) if virtual_time else _KitRealClock(self._idle)
        )
        specs = [WorkflowSpec(name=name, cls=cls, binding=name) for name, cls in workflows.items()]
        self.engine = Engine(
            SqliteStore(database), specs, clock=self.clock, max_concurrency=max_concurrency
        )
        self.engine.set_hooks(hooks)
        self.env = self.engine.env
        self._on_created = on_created
        self._on_queued = on_queued
        self._tasks: set[asyncio.Task[None]] = set()
        self.engine.add_listener(self._created)

    def _created(self, workflow: str, id: str, status: str | None) -> None:
        if status == "queued":
            if self._on_queued is not None:
                self._on_queued(workflow, id)  # before anything can claim it
            task = asyncio.ensure_future(self._on_created(workflow, id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self.engine.stop(grace=5.0)

    def binding(self, workflow: str) -> Workflow[Any]:
        return self.engine.bindings[workflow]

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("advance() needs virtual_time=True")
        self.clock.advance(seconds)
        self.engine.kick()

    async def send_event(self, workflow: str, id: str, type: str, payload: Any) -> None:
        await self.engine.send_event(workflow, id, type, payload)

    async def resume_hook(self, token: str, payload: Any) -> tuple[str, str]:
        return await self.engine.resume_hook(token, payload)

    async def call_webhook(self, token: str, request: WebhookRequest) -> int:
        return await self.engine.call_webhook(token, request)

    async def wait_until_idle(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._tasks:  # mocked events still being delivered to new instances
                        await asyncio.wait(list(self._tasks))
                    # the engine tells its clock when it is idle; wake it so that it looks
                    idle = self._idle.next()
                    self.engine.kick()
                    await idle
                    if not self._tasks:
                        return
        except TimeoutError:
            raise TimeoutError(
                f"the engine was not idle within {timeout}s: an instance kept running"
            ) from None

    async def status(self, workflow: str, id: str) -> InstanceStatus:
        return await self.engine.status(workflow, id)

    async def run_mark(self, workflow: str, id: str) -> tuple[int, int] | None:
        """Which run of which instance is stored now: ``(key, generation)``, or ``None``."""
        row = await self.engine.store.get_instance(workflow, id)
        return None if row is None else (row.key, row.generation)

    async def event_counts(self, workflow: str, id: str) -> dict[str, int]:
        """How many events of each type are stored for the instance (taken or not)."""
        row = await self.engine.store.get_instance(workflow, id)
        counts: dict[str, int] = {}
        for event in await self.engine.store.load_events(row.key) if row is not None else []:
            counts[event.type] = counts.get(event.type, 0) + 1
        return counts

    async def describe(self, workflow: str, id: str) -> dict[str, Any]:
        return InstanceDetail.from_record(await self.engine.describe(workflow, id)).to_json()

    async def read_stored_chunks(self, workflow: str, id: str, stream: str) -> list[StreamChunk]:
        check_stream_name(stream)
        key = await self.engine._key_of(workflow, id)
        rows = await self.engine.store.read_chunks(key, stream, 0, 1 << 30)
        return [chunk_of(row) for row in rows]

    async def history(self, workflow: str, id: str) -> dict[str, Any]:
        return await self.engine.history(workflow, id)

    def _jumping(self) -> contextlib.AbstractContextManager[None]:
        if isinstance(self.clock, VirtualClock):
            self.engine.kick()  # let an idle scheduler notice it may jump now
            return self.clock.hold_autojump()
        return contextlib.nullcontext()

    async def wait_for_status(
        self, workflow: str, id: str, statuses: frozenset[str], timeout: float
    ) -> InstanceStatus:
        reached = asyncio.Event()
        hold = self._jumping()
        hold.__enter__()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                hold.__exit__(None, None, None)

        def listener(wf: str, iid: str, status: str | None) -> None:
            if wf == workflow and iid == id and status in statuses:
                release()  # stop time right here, before anything else runs
                reached.set()

        self.engine.add_listener(listener)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    current = await self.engine.status(workflow, id)
                    if current.status in statuses:
                        return current
                    reached.clear()
                    await reached.wait()
        except TimeoutError:
            current = await self.engine.status(workflow, id)
            raise TimeoutError(
                f"instance {id!r} did not reach {sorted(statuses)} within {timeout}s "
                f"(it is {current.status})"
            ) from None
        finally:
            release()
            self.engine.remove_listener(listener)

    async def wait_for_step(
        self, workflow: str, id: str, name: str, count: int, timeout: float
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def done() -> bool:
            record = await self.engine.describe(workflow, id)
            detail = InstanceDetail.from_record(record, reveal=True).to_json()
            for step in detail["steps"]:
                if (
                    step["name"] == name
                    and step["count"] == count
                    and step["status"]
                    in (
                        "complete",
                        "failed",
                    )
                ):
                    found.append(step)
                    return True
            return False

        with self._jumping():
            try:
                await self.engine.wait(workflow, id, done, timeout, steps=True)
            except TimeoutError:
                raise TimeoutError(
                    f"step {name!r} (#{count}) of instance {id!r} did not finish within {timeout}s"
                ) from None
        step = found[0]
        if step["status"] == "failed":
            error = step["error"] or {}
            raise AssertionError(
                f"step {name!r} failed: {error.get('name')}: {error.get('message')}"
            )
        step["output"] = loads(None) if step["output"] is None else step["output"]
        return step


def create_test_runtime(**options: Any) -> TestRuntime:
    """Entry point ``durableflow.runtime:testing``: build the kit's runtime."""
    return TestRuntime(**options)


async def replay_history(
    cls: type[WorkflowEntrypoint[Any, Any]], history: Mapping[str, Any]
) -> None:
    """Entry point ``durableflow.runtime:replay``: ``durableflow.testing.replay``.

    Raises:
        ValidationError: A malformed history, or one of another version than ``cls``.
        NonDeterminismError: The code diverges from the history (the engine's message).
        Exception: What the code raised outside its steps.
    """
    row, steps = history_from_json(dict(history))
    spec = WorkflowSpec(row.workflow, cls)
    if spec.class_for(row.version) is None:
        raise ValidationError(
            f"the history of {row.workflow}/{row.id} was recorded at version "
            f"{row.version!r} and {cls.__name__} has version {spec.version!r}: an instance "
            "runs only on the class of its version; replay it against that class"
        )
    raise_for(await replay(spec, row, steps))
