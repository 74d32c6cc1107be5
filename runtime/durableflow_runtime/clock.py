"""Time, injected: the engine reads and waits on a clock object, never on the OS directly.

``RealClock`` is wall time. ``VirtualClock`` is for tests: time moves only when told to,
or jumps to the next timer whenever the engine has nothing else to do.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Clock", "RealClock", "Timeout", "VirtualClock"]


class Timeout(Protocol):
    """What ``Clock.timeout`` returns: an async context manager that knows if it fired."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    def expired(self) -> bool: ...


class Clock(abc.ABC):
    """Where the engine gets the time from."""

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds since the epoch."""

    @abc.abstractmethod
    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when``."""

    @abc.abstractmethod
    def timeout(self, seconds: float) -> Timeout:
        """Cancel the body after ``seconds`` and raise ``TimeoutError`` in its place."""

    def idle(self, next_at: float | None) -> bool:
        """Called by the engine when it has nothing to run until ``next_at``.

        Returns:
            True when time jumped (a virtual clock in a test), so the engine looks again.
        """
        return False


class RealClock(Clock):
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def __init__(self) -> None:
        self._deadlines = _Deadlines()

    def timeout(self, seconds: float) -> Timeout:
        return _Deadline(self._deadlines, seconds)


class VirtualClock(Clock):
    """A clock for tests.

    Args:
        start: The time it starts at (seconds since the epoch; default: now).
        autojump: Jump to the next timer whenever the engine reports it is idle, so that
            a ``sleep("1 day")`` passes in milliseconds.
    """

    def __init__(self, start: float | None = None, *, autojump: bool = True) -> None:
        self._now = time.time() if start is None else start
        self.autojump = autojump
        self._holders = 0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (when, next(self._seq), future))
        await future

    def timeout(self, seconds: float) -> _VirtualTimeout:
        return _VirtualTimeout(self, seconds)

    def hold_autojump(self) -> contextlib.AbstractContextManager[None]:
        """Let the clock jump while the caller waits (the testing kit's waits use this)."""
        return self._holding()

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        self._holders += 1
        try:
            yield
        finally:
            self._holders -= 1

    def advance(self, seconds: float) -> None:
        """Move time forward and fire every timer that is now due."""
        self._fire(self._now + seconds)

    def idle(self, next_at: float | None) -> bool:
        if not (self.autojump or self._holders):
            return False
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
        candidates = [t for t in (next_at, self._timers[0][0] if self._timers else None) if t]
        if not candidates:
            return False
        self._fire(max(self._now, min(candidates)))
        return True

    def _fire(self, until: float) -> None:
        self._now = max(self._now, until)
        while self._timers and self._timers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._timers)
            if not future.done():
                future.set_result(None)


class _VirtualTimeout:
    def __init__(self, clock: VirtualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._fired = False
        self._dog: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None

    def expired(self) -> bool:
        return self._fired

    async def __aenter__(self) -> _VirtualTimeout:
        self._task = asyncio.current_task()
        self._dog = asyncio.ensure_future(self._watch())
        return self

    async def _watch(self) -> None:
        await self._clock.sleep_until(self._clock.now() + self._seconds)
        self._fired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._dog is not None and self._task is not None
        self._dog.cancel()
        if self._fired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError
        return None


class _Deadlines:
    """One timer for many step timeouts.

    A step timeout is armed on every attempt and almost never fires, so arming must be
    cheap: a heap push, and no timer handle of its own. One loop timer follows the
    earliest deadline; finished entries are dropped as they reach the top of the heap.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._live = 0

    def arm(self, entry: _Deadline) -> None:
        heap = self._heap
        while heap and heap[0][2].finished:
            heapq.heappop(heap)
        if len(heap) > 1024 and len(heap) > 4 * self._live:
            heap[:] = [item for item in heap if not item[2].finished]
            heapq.heapify(heap)
        heapq.heappush(heap, (entry.deadline, next(self._seq), entry))
        self._live += 1
        if entry.deadline < self._timer_at:
            self._schedule(entry.deadline)

    def disarm(self) -> None:
        self._live -= 1

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = asyncio.get_running_loop().time()
        heap = self._heap
        while heap and (heap[0][2].finished or heap[0][0] <= now):
            _, _, entry = heapq.heappop(heap)
            if not entry.finished:
                entry.expire()
        if heap:
            self._schedule(heap[0][0])


class _Deadline:
    """``async with clock.timeout(s)``: cancel the task after ``s`` and raise TimeoutError."""

    __slots__ = ("_deadlines", "_fired", "_seconds", "_task", "deadline", "finished")

    def __init__(self, deadlines: _Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._fired = False
        self._task: asyncio.Task[Any] | None = None
        self.deadline = 0.0
        self.finished = False

    def expired(self) -> bool:
        return self._fired

    def expire(self) -> None:
        self._fired = True
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> _Deadline:
        self._task = asyncio.current_task()
        self.deadline = asyncio.get_running_loop().time() + self._seconds
        self._deadlines.arm(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.finished = True
        self._deadlines.disarm()
        if self._fired and exc_type is asyncio.CancelledError:
            assert self._task is not None
            if self._task.uncancel() == 0:
                raise TimeoutError
        return None
