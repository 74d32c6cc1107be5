from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, TypedDict

import attrs

from ._duration import Duration

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

@attrs.frozen(order=False)
class RetryConfig:
    limit: int | None = None
    delay: Duration | None = None
    backoff: Backoff | None = None

@attrs.frozen(order=False)
class StepConfig:
    retries: RetryConfig | None = None
    timeout: Duration | None = None

class RetryConfigDict(TypedDict, total=False):
    limit: int
    delay: Duration
    backoff: Backoff

class StepConfigDict(TypedDict, total=False):
    retries: RetryConfigDict
    timeout: Duration

@attrs.frozen(order=False)
class ResolvedStepConfig:
    limit: int = 5
    delay: float = 10.0
    backoff: Backoff = "exponential"
    timeout: float = 600.0
    def delay_before_retry(self, retry: int) -> float: ...
    def to_json(self) -> dict[str, Any]: ...
    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolvedStepConfig: ...

def resolve_config(
    config: StepConfig | Mapping[str, Any] | None,
    base: ResolvedStepConfig | None = None,
) -> ResolvedStepConfig: ...
