from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypedDict

import attrs

from ._duration import Duration

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
Sensitivity: TypeAlias = Literal["output"]
DelayFunction: TypeAlias = Callable[[int, BaseException], Duration | Awaitable[Duration]]

@attrs.frozen(order=False)
class RetryConfig:
    limit: int | None = None
    delay: Duration | DelayFunction | None = None
    backoff: Backoff | None = None

@attrs.frozen(order=False)
class StepConfig:
    retries: RetryConfig | None = None
    timeout: Duration | None = None
    sensitive: Sensitivity | None = None

class RetryConfigDict(TypedDict, total=False):
    limit: int
    delay: Duration | DelayFunction
    backoff: Backoff

class StepConfigDict(TypedDict, total=False):
    retries: RetryConfigDict
    timeout: Duration
    sensitive: Sensitivity

@attrs.frozen(order=False)
class ResolvedRetryConfig:
    limit: int = 5
    delay: timedelta | None = ...
    backoff: Backoff = "exponential"

@attrs.frozen(order=False)
class ResolvedStepConfig:
    retries: ResolvedRetryConfig = ...
    timeout: timedelta = ...
    sensitive: Sensitivity | None = None
    def delay_before_retry(self, retry: int) -> float: ...
    def to_json(self) -> dict[str, Any]: ...
    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolvedStepConfig: ...

def delay_function(config: StepConfig | Mapping[str, Any] | None) -> DelayFunction | None: ...
def resolve_config(
    config: StepConfig | Mapping[str, Any] | None,
    base: ResolvedStepConfig | None = None,
) -> ResolvedStepConfig: ...
