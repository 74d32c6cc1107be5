from typing import Any, TypeVar, overload

from ._binding import Workflow

__all__ = ["Client"]

_P = TypeVar("_P")

class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None: ...
    @overload
    def workflow(self, name: str, params_type: None = None) -> Workflow[Any]: ...
    @overload
    def workflow(self, name: str, params_type: type[_P]) -> Workflow[_P]: ...
    async def workflows(self) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> Client: ...
    async def __aexit__(self, *exc: object) -> None: ...
