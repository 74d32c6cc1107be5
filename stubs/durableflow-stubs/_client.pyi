from typing import Any, TypeVar, overload

from ._binding import Workflow, WorkflowInstance

__all__ = ["Client"]

_P = TypeVar("_P")
_O = TypeVar("_O")

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
    def workflow(
        self, name: str, params_type: None = None, output_type: None = None
    ) -> Workflow[Any, Any]: ...
    @overload
    def workflow(
        self, name: str, params_type: type[_P], output_type: None = None
    ) -> Workflow[_P, Any]: ...
    @overload
    def workflow(
        self, name: str, params_type: type[_P], output_type: type[_O]
    ) -> Workflow[_P, _O]: ...
    @overload
    def workflow(
        self, name: str, params_type: None = None, *, output_type: type[_O]
    ) -> Workflow[Any, _O]: ...
    async def resume_hook(self, token: str, payload: Any = None) -> WorkflowInstance[Any]: ...
    async def workflows(self) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> Client: ...
    async def __aexit__(self, *exc: object) -> None: ...
