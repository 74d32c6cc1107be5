"""Shared test helpers: the one way to wait for something in a test.

Wait with :func:`eventually` (or, in blocking code, :func:`eventually_sync`), never with a
bare sleep. To show that nothing happens, use ``WorkflowTestEnvironment.wait_until_idle()``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

_T = TypeVar("_T")


@overload
async def eventually(
    check: Callable[[], Awaitable[_T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> _T: ...
@overload
async def eventually(
    check: Callable[[], _T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> _T: ...
async def eventually(
    check: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "the condition",
) -> object:
    """Poll ``check`` until it returns something truthy, and return that (never ``None``).

    Args:
        check: A function, sync or async, asked again every ``interval`` seconds.
        timeout: Seconds before giving up.
        interval: Seconds between two checks.
        message: What is awaited, for the failure message.

    Raises:
        AssertionError: ``check`` gave nothing truthy within ``timeout`` (the last answer
            is in the message).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message} (last: {last!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], _T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "the condition",
) -> _T:
    """:func:`eventually` for blocking code (a sync test driving a host process).

    It blocks the thread between checks, so never call it from a coroutine.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message} (last: {last!r})")
        time.sleep(interval)
