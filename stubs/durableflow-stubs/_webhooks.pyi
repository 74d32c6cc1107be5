from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._duration import Duration
from ._step import WorkflowStep

__all__ = ["HmacSignature", "Webhook", "WebhookRequest"]

@attrs.frozen(order=False)
class WebhookRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    def text(self, encoding: str = "utf-8") -> str: ...
    def json(self) -> Any: ...
    def to_json(self) -> dict[str, Any]: ...
    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookRequest: ...

# attrs-made at runtime; written out here because mypy's attrs plugin would name the
# private fields' parameters without their underscore (attrs keeps it, by alias)
class Webhook:
    __attrs_attrs__: Any
    __match_args__ = ("token", "url", "_step", "_name")
    @property
    def token(self) -> str: ...
    @property
    def url(self) -> str: ...
    def __init__(
        self, token: str, url: str, _step: WorkflowStep | None = None, _name: str = ""
    ) -> None: ...
    async def wait(self, *, timeout: Duration = "24 hours") -> WebhookRequest: ...

@attrs.frozen(order=False)
class HmacSignature:
    secret: str | bytes
    header: str
    prefix: str = ""
    algorithm: str = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    scheme: Literal["plain", "stripe"] = "plain"
    tolerance: Duration = "5 minutes"
    def __attrs_post_init__(self) -> None: ...
    @classmethod
    def github(cls, secret: str | bytes) -> HmacSignature: ...
    @classmethod
    def stripe(cls, secret: str | bytes, *, tolerance: Duration = "5 minutes") -> HmacSignature: ...
    def describe(self) -> dict[str, Any]: ...
    def sign(self, body: bytes, *, timestamp: float | None = None) -> str: ...
    def verify(self, request: WebhookRequest, *, now: float | None = None) -> bool: ...
