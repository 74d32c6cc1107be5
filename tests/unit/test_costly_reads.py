"""CostlyReads: counts are exact while they are quick, shared and reused while they are not."""

from __future__ import annotations

import asyncio

from durableflow_runtime.engine._costly import CostlyReads


class Counter:
    """A read whose answer is how many times it ran, taking ``seconds`` each time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reads = 0

    async def __call__(self) -> int:
        self.reads += 1
        answer = self.reads
        await asyncio.sleep(self.seconds)
        return answer


async def test_a_quick_read_is_done_on_every_call() -> None:
    """A read under `cheap` is never reused: a count right after a change includes it."""
    costly = CostlyReads(cheap=0.05)
    read = Counter(0)
    assert [await costly.get("k", read) for _ in range(3)] == [1, 2, 3]


async def test_a_costly_read_is_reused_then_shared_then_read_again() -> None:
    """A read over `cheap` is reused for took/share seconds, concurrent callers past that
    share one read, and the answer is read again after it."""
    costly = CostlyReads(cheap=0.05, share=0.5)  # reused for ~0.12 s after a 0.06 s read
    read = Counter(0.06)
    assert await costly.get("k", read) == 1
    assert await costly.get("k", read) == 1  # within 0.12 s: the same answer, no read
    assert await costly.get("other", read) == 2  # keys apart
    await asyncio.sleep(0.15)
    answers = await asyncio.gather(*(costly.get("k", read) for _ in range(5)))
    assert answers == [3] * 5 and read.reads == 3  # five callers, one read


async def test_a_cancelled_reader_does_not_cancel_the_callers_sharing_its_read() -> None:
    """When the caller doing a shared read is cancelled, the others read themselves."""
    costly = CostlyReads(cheap=0.05, share=1.0, longest=0.0)  # costly, never reused
    read = Counter(0.06)
    assert await costly.get("k", read) == 1
    first = asyncio.create_task(costly.get("k", read))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(costly.get("k", read))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == 3 and first.cancelled()
