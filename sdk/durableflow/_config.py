"""Step configuration: retries and timeout, as attrs classes or Cloudflare-shaped dicts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypedDict, cast

import attrs

from ._duration import Duration, to_seconds
from ._errors import ValidationError

__all__ = [
    "Backoff",
    "DelayFunction",
    "ResolvedRetryConfig",
    "ResolvedStepConfig",
    "RetryConfig",
    "RetryConfigDict",
    "Sensitivity",
    "StepConfig",
    "StepConfigDict",
    "delay_function",
    "resolve_config",
]

Backoff: TypeAlias = Literal["constant", "linear", "exponential"]
_BACKOFFS = ("constant", "linear", "exponential")

Sensitivity: TypeAlias = Literal["output"]
"""What of a step is sensitive: ``"output"`` (stored, but shown as ``"[redacted]"``)."""
_SENSITIVITIES = ("output",)

DelayFunction: TypeAlias = Callable[[int, BaseException], Duration | Awaitable[Duration]]
"""``(attempt, error) -> Duration``: the delay before the attempt after ``attempt``
failed with ``error`` (a plain or an async function)."""


@attrs.frozen
class RetryConfig:
    """How a failing step is retried. A field left as ``None`` keeps the default.

    Attributes:
        limit: Retries after the first attempt (a step runs at most ``limit + 1`` times).
        delay: Base delay before a retry, or a function ``(attempt, error) -> Duration``
            that computes the delay before the next attempt (the back-off does not apply
            to what it returns).
        backoff: ``constant`` waits ``delay``; ``linear`` waits ``delay * n``;
            ``exponential`` waits ``delay * 2 ** (n - 1)`` before retry ``n``.
    """

    limit: int | None = None
    delay: Duration | DelayFunction | None = None
    backoff: Backoff | None = None


@attrs.frozen
class StepConfig:
    """Per-step configuration. A field left as ``None`` keeps the default.

    Attributes:
        retries: Retry policy.
        timeout: Bound on each attempt; an attempt that exceeds it is a failed attempt.
        sensitive: ``"output"``: the step's result is stored (replay needs it) but shown
            as ``"[redacted]"`` by the HTTP API, the clients, the CLI, the dashboard and
            the logs; ``run()`` gets the real value.
    """

    retries: RetryConfig | None = None
    timeout: Duration | None = None
    sensitive: Sensitivity | None = None


class RetryConfigDict(TypedDict, total=False):
    """The dict form of :class:`RetryConfig`."""

    limit: int
    delay: Duration | DelayFunction
    backoff: Backoff


class StepConfigDict(TypedDict, total=False):
    """The dict form of :class:`StepConfig`:
    ``{"retries": {"limit": 5, "delay": "10 seconds", "backoff": "exponential"},
    "timeout": "10 minutes"}``."""

    retries: RetryConfigDict
    timeout: Duration
    sensitive: Sensitivity


@attrs.frozen
class ResolvedRetryConfig:
    """The ``retries`` of a :class:`ResolvedStepConfig`, every field decided.

    Attributes:
        limit: Retries after the first attempt.
        delay: The base delay, or ``None`` when the delay is a function (as Cloudflare
            omits it).
        backoff: How the delay grows from one retry to the next.
    """

    limit: int = 5
    delay: timedelta | None = timedelta(seconds=10)
    backoff: Backoff = "exponential"


@attrs.frozen
class ResolvedStepConfig:
    """A step config with every default applied, frozen at a step's first attempt: what
    ``ctx.config`` holds. The shape of Cloudflare's ``ResolvedStepConfig``:
    ``{retries: {limit, delay, backoff}, timeout, sensitive}``; durations are
    ``timedelta``s (each a valid ``Duration``).

    Attributes:
        retries: Limit, delay and back-off.
        timeout: The bound on each attempt.
        sensitive: ``"output"`` when the step's result is redacted, else ``None``.
    """

    retries: ResolvedRetryConfig = ResolvedRetryConfig()
    timeout: timedelta = timedelta(minutes=10)
    sensitive: Sensitivity | None = None

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) by the back-off
        (0 when the delay is a function: the engine calls it instead)."""
        retries = self.retries
        delay = 0.0 if retries.delay is None else retries.delay.total_seconds()
        if retries.backoff == "constant":
            return delay
        if retries.backoff == "linear":
            return delay * retry
        return float(delay * 2 ** (retry - 1))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of this config (durations in seconds)."""
        retries = self.retries
        return {
            "retries": {
                "limit": retries.limit,
                "delay": None if retries.delay is None else retries.delay.total_seconds(),
                "backoff": retries.backoff,
            },
            "timeout": self.timeout.total_seconds(),
            "sensitive": self.sensitive,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolvedStepConfig:
        """Read back what :meth:`to_json` wrote (and the flat form stored before it:
        ``{"limit", "delay", "backoff", "timeout"}``)."""
        retries = data.get("retries", data)
        delay = retries.get("delay")
        return cls(
            retries=ResolvedRetryConfig(
                limit=int(retries["limit"]),
                delay=None if delay is None else timedelta(seconds=float(delay)),
                backoff=retries["backoff"],
            ),
            timeout=timedelta(seconds=float(data["timeout"])),
            sensitive=data.get("sensitive"),
        )


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(
            f"unknown key(s) in {where}: {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})"
        )


def _retry_fields(retries: object) -> tuple[object, object, object]:
    if isinstance(retries, RetryConfig):
        return retries.limit, retries.delay, retries.backoff
    if isinstance(retries, Mapping):
        _check_keys(retries, ("limit", "delay", "backoff"), "step config 'retries'")
        return retries.get("limit"), retries.get("delay"), retries.get("backoff")
    raise ValidationError(
        f"step config 'retries' must be a RetryConfig or a dict, not {type(retries).__name__}"
    )


def _merge_retries(base: ResolvedRetryConfig, retries: object) -> ResolvedRetryConfig:
    if retries is None:
        return base
    limit, delay, backoff = _retry_fields(retries)
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValidationError(f"retries 'limit' must be a whole number >= 0, not {limit!r}")
        base = attrs.evolve(base, limit=limit)
    if callable(delay):
        base = attrs.evolve(base, delay=None)
    elif delay is not None:
        seconds = to_seconds(delay, what="retries 'delay'")  # type: ignore[arg-type]
        base = attrs.evolve(base, delay=timedelta(seconds=seconds))
    if backoff is not None:
        if backoff not in _BACKOFFS:
            raise ValidationError(
                f"retries 'backoff' must be one of {', '.join(_BACKOFFS)}, not {backoff!r}"
            )
        base = attrs.evolve(base, backoff=cast(Backoff, backoff))
    return base


def _config_fields(config: object) -> tuple[object, object, object]:
    if isinstance(config, StepConfig):
        return config.retries, config.timeout, config.sensitive
    if isinstance(config, Mapping):
        _check_keys(config, ("retries", "timeout", "sensitive"), "step config")
        return config.get("retries"), config.get("timeout"), config.get("sensitive")
    raise ValidationError(
        f"step config must be a StepConfig or a dict, not {type(config).__name__}"
    )


def delay_function(config: StepConfig | Mapping[str, Any] | None) -> DelayFunction | None:
    """The delay function of a step config (``None`` when its delay is not one).

    A function cannot be stored, so the engine takes it from the live config of each
    execution, as Cloudflare's engine does.
    """
    if config is None:
        return None
    retries = _config_fields(config)[0]
    if retries is None:
        return None
    delay = _retry_fields(retries)[1]
    return delay if callable(delay) else None


def resolve_config(
    config: StepConfig | Mapping[str, Any] | None,
    base: ResolvedStepConfig | None = None,
) -> ResolvedStepConfig:
    """Merge a (partial) step config over ``base`` field by field.

    Args:
        config: An attrs :class:`StepConfig`, its dict form, or ``None``.
        base: The defaults to merge over (the workflow's, else the built-in ones).

    Returns:
        The fully decided config.

    Raises:
        ValidationError: An unknown key, a negative limit, a bad duration or backoff,
            or a zero timeout.
    """
    resolved = base if base is not None else ResolvedStepConfig()
    if config is None:
        return resolved
    retries, timeout, sensitive = _config_fields(config)
    merged = _merge_retries(resolved.retries, retries)
    if merged is not resolved.retries:
        resolved = attrs.evolve(resolved, retries=merged)
    if timeout is not None:
        seconds = to_seconds(timeout, what="step 'timeout'")  # type: ignore[arg-type]
        if seconds <= 0:
            raise ValidationError(f"step 'timeout' must be greater than zero, not {timeout!r}")
        resolved = attrs.evolve(resolved, timeout=timedelta(seconds=seconds))
    if sensitive is not None:
        if sensitive not in _SENSITIVITIES:
            raise ValidationError(
                f"step config 'sensitive' must be {' or '.join(map(repr, _SENSITIVITIES))}, "
                f"not {sensitive!r}"
            )
        resolved = attrs.evolve(resolved, sensitive=cast(Sensitivity, sensitive))
    return resolved
