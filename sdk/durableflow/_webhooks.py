"""Webhooks: a URL an outside service calls to resume an instance, and how its requests
are verified.

``step.create_webhook(name)`` returns a :class:`Webhook` (its token and URL, the same on
every replay); ``await webhook.wait(timeout=...)`` suspends the instance until a request
arrives and returns it as a :class:`WebhookRequest`. :class:`HmacSignature` checks the
signature a provider puts in a header (GitHub's and Stripe's schemes are presets).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import orjson

from ._duration import Duration, to_seconds
from ._errors import ValidationError

if TYPE_CHECKING:
    from ._step import WorkflowStep

__all__ = ["HmacSignature", "Webhook", "WebhookRequest"]


@attrs.frozen
class WebhookRequest:
    """A request an outside service sent to a webhook's URL.

    Attributes:
        method: ``POST``, ``PUT`` or ``PATCH``.
        path: The path it was sent to (``/hooks/<token>``).
        query: The query string's parameters (the last value of a repeated one).
        headers: Its headers, with lower-case names.
        body: The body, byte for byte as sent.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text.

        Raises:
            UnicodeDecodeError: It is not valid in ``encoding``.
        """
        return self.body.decode(encoding)

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValidationError: It is not valid JSON.
        """
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"the webhook request's body is not valid JSON: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The request as stored: the body in base64."""
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "body": base64.b64encode(self.body).decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookRequest:
        """The request :meth:`to_json` stored."""
        return cls(
            method=data["method"],
            path=data["path"],
            query=dict(data["query"]),
            headers=dict(data["headers"]),
            body=base64.b64decode(data["body"]),
        )


@attrs.frozen
class Webhook:
    """A webhook made by ``step.create_webhook``: give ``url`` to the service that calls it.

    Attributes:
        token: The 128-bit random token in its URL: whoever knows it can call it.
        url: ``<public_url>/hooks/<token>``.
    """

    token: str
    url: str
    _step: WorkflowStep | None = attrs.field(default=None, eq=False, repr=False, alias="_step")
    _name: str = attrs.field(default="", eq=False, repr=False, alias="_name")

    async def wait(self, *, timeout: Duration = "24 hours") -> WebhookRequest:
        """Wait durably for the request (the instance is suspended meanwhile).

        A webhook takes one request; a request that arrived before this wait is kept for
        it.

        Raises:
            EventTimeoutError: No request arrived within ``timeout``.
        """
        if self._step is None:
            raise ValidationError("this Webhook was not made by step.create_webhook()")
        return await self._step._wait_webhook(self, timeout)


_Scheme = Literal["plain", "stripe"]


@attrs.frozen
class HmacSignature:
    """Verify a webhook request by the HMAC of its body, sent in a header.

    The plain scheme compares ``header`` with ``prefix + HMAC(secret, body)`` in hex (or
    base64); :meth:`github` and :meth:`stripe` are presets. The secret is never stored: it
    lives in the code (read it from the environment there). Making one with a bad value
    raises ``ValidationError`` (an empty secret or header, an unknown algorithm, encoding
    or scheme).

    Attributes:
        secret: The shared secret.
        header: The header that carries the signature (any case).
        prefix: What precedes the signature in the header (``"sha256="`` for GitHub).
        algorithm: A ``hashlib`` name: ``sha256`` (default), ``sha1``, ``sha512``...
        encoding: ``hex`` or ``base64`` signatures.
        scheme: ``plain``, or ``stripe`` (``t=<unix time>,v1=<hex>`` over ``"<t>.<body>"``).
        tolerance: For ``stripe``: how far the signed time may be from now.
    """

    secret: str | bytes = attrs.field(repr=False)
    header: str
    prefix: str = ""
    algorithm: str = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    scheme: _Scheme = "plain"
    tolerance: Duration = "5 minutes"

    def __attrs_post_init__(self) -> None:
        secret: object = self.secret  # untyped callers may pass anything
        if not isinstance(secret, str | bytes) or not secret:
            raise ValidationError("HmacSignature needs a non-empty secret (str or bytes)")
        header: object = self.header
        if not isinstance(header, str) or not header:
            raise ValidationError("HmacSignature needs the name of the header to check")
        if self.algorithm not in hashlib.algorithms_available:
            raise ValidationError(f"unknown HMAC algorithm {self.algorithm!r}")
        if self.encoding not in ("hex", "base64"):
            raise ValidationError(f"encoding must be 'hex' or 'base64', not {self.encoding!r}")
        if self.scheme not in ("plain", "stripe"):
            raise ValidationError(f"scheme must be 'plain' or 'stripe', not {self.scheme!r}")
        to_seconds(self.tolerance, what="tolerance of HmacSignature")

    @classmethod
    def github(cls, secret: str | bytes) -> HmacSignature:
        """GitHub's ``X-Hub-Signature-256: sha256=<hex>``."""
        return cls(secret=secret, header="X-Hub-Signature-256", prefix="sha256=")

    @classmethod
    def stripe(cls, secret: str | bytes, *, tolerance: Duration = "5 minutes") -> HmacSignature:
        """Stripe's ``Stripe-Signature: t=<time>,v1=<hex>``, refused when ``t`` is more
        than ``tolerance`` away from now (replayed requests)."""
        return cls(secret=secret, header="Stripe-Signature", scheme="stripe", tolerance=tolerance)

    def describe(self) -> dict[str, Any]:
        """What may be shown and stored about it: everything but the secret."""
        return {
            "scheme": self.scheme,
            "header": self.header,
            "algorithm": self.algorithm,
        }

    def sign(self, body: bytes, *, timestamp: float | None = None) -> str:
        """The header value that verifies ``body`` (for tests and for senders)."""
        if self.scheme == "stripe":
            t = int(time.time() if timestamp is None else timestamp)
            return f"t={t},v1={self._digest(f'{t}.'.encode() + body)}"
        return self.prefix + self._digest(body)

    def verify(self, request: WebhookRequest, *, now: float | None = None) -> bool:
        """Whether ``request`` carries a valid signature."""
        value = request.headers.get(self.header.lower())
        if value is None:
            return False
        if self.scheme == "stripe":
            return self._verify_stripe(value, request.body, time.time() if now is None else now)
        if not value.startswith(self.prefix):
            return False
        return self._matches(value[len(self.prefix) :].strip(), request.body)

    def _verify_stripe(self, value: str, body: bytes, now: float) -> bool:
        stamp: int | None = None
        signatures: list[str] = []
        for part in value.split(","):
            key, _, item = part.strip().partition("=")
            if key == "t" and item.isdigit():
                stamp = int(item)
            elif key == "v1":
                signatures.append(item)
        if stamp is None or abs(now - stamp) > to_seconds(self.tolerance, what="tolerance"):
            return False
        signed = f"{stamp}.".encode() + body
        return any(self._matches(s, signed) for s in signatures)

    def _key(self) -> bytes:
        return self.secret.encode() if isinstance(self.secret, str) else self.secret

    def _digest(self, data: bytes) -> str:
        mac = hmac.new(self._key(), data, self.algorithm).digest()
        return mac.hex() if self.encoding == "hex" else base64.b64encode(mac).decode()

    def _matches(self, given: str, data: bytes) -> bool:
        expected = hmac.new(self._key(), data, self.algorithm).digest()
        try:
            raw = bytes.fromhex(given) if self.encoding == "hex" else base64.b64decode(given)
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(raw, expected)
