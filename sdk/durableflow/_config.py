"""Step configuration: retries and timeout, as attrs classes or Cloudflare-shaped dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, TypedDict

import attrs

from ._duration import Duration, to_seconds
from ._errors import ValidationError

__all__ = [
    "Backoff",
    "ResolvedStepConfig",
    "RetryConfig",
    "RetryConfigDict",
    "StepConfig",
    "StepConfigDict",
    "resolve_config",
]

Backoff: TypeAlias = Literal["constant", "linear", "exponential"]
_BACKOFFS = ("constant", "linear", "exponential")


@attrs.frozen
class RetryConfig:
    """How a failing step is retried. A field left as ``None`` keeps the default.

    Attributes:
        limit: Retries after the first attempt (a step runs at most ``limit + 1`` times).
        delay: Base delay before a retry.
        backoff: ``constant`` waits ``delay``; ``linear`` waits ``delay * n``;
            ``exponential`` waits ``delay * 2 ** (n - 1)`` before retry ``n``.
    """

    limit: int | None = None
    delay: Duration | None = None
    backoff: Backoff | None = None


@attrs.frozen
class StepConfig:
    """Per-step configuration. A field left as ``None`` keeps the default.

    Attributes:
        retries: Retry policy.
        timeout: Bound on each attempt; an attempt that exceeds it is a failed attempt.
    """

    retries: RetryConfig | None = None
    timeout: Duration | None = None


class RetryConfigDict(TypedDict, total=False):
    """The dict form of :class:`RetryConfig`."""

    limit: int
    delay: Duration
    backoff: Backoff


class StepConfigDict(TypedDict, total=False):
    """The dict form of :class:`StepConfig`:
    ``{"retries": {"limit": 5, "delay": "10 seconds", "backoff": "exponential"},
    "timeout": "10 minutes"}``."""

    retries: RetryConfigDict
    timeout: Duration


@attrs.frozen
class ResolvedStepConfig:
    """A step config with every field decided, in seconds; frozen at a step's first attempt."""

    limit: int = 5
    delay: float = 10.0
    backoff: Backoff = "exponential"
    timeout: float = 600.0

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if self.backoff == "constant":
            return self.delay
        if self.backoff == "linear":
            return self.delay * retry
        return float(self.delay * 2 ** (retry - 1))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of this config."""
        return {
            "limit": self.limit,
            "delay": self.delay,
            "backoff": self.backoff,
            "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolvedStepConfig:
        """Read back what :meth:`to_json` wrote."""
        return cls(
            limit=int(data["limit"]),
            delay=float(data["delay"]),
            backoff=data["backoff"],
            timeout=float(data["timeout"]),
        )


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(
            f"unknown key(s) in {where}: {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})"
        )


def _merge_retries(base: ResolvedStepConfig, retries: object) -> ResolvedStepConfig:
    if retries is None:
        return base
    if isinstance(retries, RetryConfig):
        limit, delay, backoff = retries.limit, retries.delay, retries.backoff
    elif isinstance(retries, Mapping):
        _check_keys(retries, ("limit", "delay", "backoff"), "step config 'retries'")
        limit, delay, backoff = retries.get("limit"), retries.get("delay"), retries.get("backoff")
    else:
        raise ValidationError(
            f"step config 'retries' must be a RetryConfig or a dict, not {type(retries).__name__}"
        )
    limit_value: object = limit
    if limit_value is not None:
        if not isinstance(limit_value, int) or isinstance(limit_value, bool) or limit_value < 0:
            raise ValidationError(f"retries 'limit' must be a whole number >= 0, not {limit!r}")
        base = attrs.evolve(base, limit=limit_value)
    if delay is not None:
        base = attrs.evolve(base, delay=to_seconds(delay, what="retries 'delay'"))
    if backoff is not None:
        if backoff not in _BACKOFFS:
            raise ValidationError(
                f"retries 'backoff' must be one of {', '.join(_BACKOFFS)}, not {backoff!r}"
            )
        base = attrs.evolve(base, backoff=backoff)
    return base


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
    if isinstance(config, StepConfig):
        retries: object = config.retries
        timeout: object = config.timeout
    elif isinstance(config, Mapping):
        _check_keys(config, ("retries", "timeout"), "step config")
        retries, timeout = config.get("retries"), config.get("timeout")
    else:
        raise ValidationError(
            f"step config must be a StepConfig or a dict, not {type(config).__name__}"
        )
    resolved = _merge_retries(resolved, retries)
    if timeout is not None:
        seconds = to_seconds(timeout, what="step 'timeout'")  # type: ignore[arg-type]
        if seconds <= 0:
            raise ValidationError(f"step 'timeout' must be greater than zero, not {timeout!r}")
        resolved = attrs.evolve(resolved, timeout=seconds)
    return resolved
