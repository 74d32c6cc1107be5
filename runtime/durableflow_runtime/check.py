"""The pre-deploy replay check: does the code on disk replay what is in flight?

``durableflow check`` and ``durableflow serve --check`` load the config and the user's
code as they are now, read every instance that is not finished (and, on request, the
last few finished ones) from the store, read-only, and replay each history against the
class of the instance's version without running a step callback
(``engine._replay``). Each instance is ``ok``, ``diverges``, ``fails`` or ``no_code``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from durableflow import ValidationError

from .engine import WorkflowSpec
from .engine._replay import ReplayResult, replay
from .store.history import STEP_CHUNK, open_history_reader

__all__ = ["check_store", "describe", "log_results", "summary"]

log = logging.getLogger("durableflow.check")


async def check_store(
    specs: Sequence[WorkflowSpec],
    url: str,
    *,
    workflow: str | None = None,
    include_finished: int = 0,
    newest: int | None = None,
) -> list[ReplayResult]:
    """Replay the in-flight instances of ``specs`` in the store at ``url``.

    Args:
        specs: The workflows of the code about to run, each with its previous classes.
        url: The store (read-only; a host may be serving it).
        workflow: Only this workflow's instances.
        include_finished: Also the last N finished instances of each workflow.
        newest: Only the N in-flight instances of each workflow created last (a sample,
            for the check a host runs at start); ``None``: all of them.

    Returns:
        One result per instance, oldest first (finished ones last).

    Raises:
        ValidationError: An unknown workflow name or a negative ``include_finished``.
        StoreUnavailableError: The store cannot be read.
    """
    by_name = {spec.name: spec for spec in specs}
    if workflow is not None and workflow not in by_name:
        raise ValidationError(
            f"no workflow named {workflow!r} in the config (one of {', '.join(by_name)})"
        )
    if include_finished < 0:
        raise ValidationError(f"include_finished must be 0 or more, not {include_finished}")
    names = [workflow] if workflow is not None else list(by_name)
    reader = await open_history_reader(url)
    results: list[ReplayResult] = []
    try:
        rows = await reader.instances(names, include_finished, newest)
        for start in range(0, len(rows), STEP_CHUNK):
            chunk = rows[start : start + STEP_CHUNK]
            steps = await reader.steps([r.key for r in chunk])
            # side by side: a replay waits a few event-loop turns for run() to block, and
            # one turn serves all of them (one after the other, each turn would be its own)
            results += await asyncio.gather(
                *(replay(by_name[r.workflow], r, steps.get(r.key, [])) for r in chunk)
            )
    finally:
        await reader.close()
    return results


def summary(results: Sequence[ReplayResult]) -> str:
    """``"checked 12 instance(s): 10 ok, 1 diverge(s), 1 fail(s), 0 without code"``."""
    counts: Counter[str] = Counter(r.status for r in results)
    return (
        f"checked {len(results)} instance(s): {counts['ok']} ok, "
        f"{counts['diverges']} diverge(s), {counts['fails']} fail(s), "
        f"{counts['no_code']} without code"
    )


def describe(result: ReplayResult) -> str:
    """One line about one instance that is not ok."""
    version = "no version" if result.version is None else f"version {result.version!r}"
    return f"{result.workflow}/{result.id} ({version}): {result.status}: {result.detail}"


def log_results(results: Sequence[ReplayResult]) -> list[ReplayResult]:
    """Log a warning per instance that is not ok, and the summary; returns those."""
    bad = [r for r in results if r.status != "ok"]
    for result in bad:
        log.warning(
            "check: %s",
            describe(result),
            extra={"workflow": result.workflow, "instance": result.id},
        )
    # all well: nothing to say at start-up (whose errors are one line on their own)
    (log.warning if bad else log.debug)("check: %s", summary(results))
    return bad
