"""The dashboard: one self-contained HTML page that drives the host's public JSON API.

The page (``index.html`` beside this module) holds no data and makes no request beyond
the host's own ``/api``; its scripts and styles are inline and nothing is fetched from
elsewhere. It is served with a Content-Security-Policy that allows exactly its own inline
script and style (by hash) and requests to the host, and nothing else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

__all__ = ["DASHBOARD_PATH", "page", "page_headers"]

#: Where the host serves the page; ``/`` redirects here.
DASHBOARD_PATH = "/dashboard"

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


@functools.cache
def page() -> bytes:
    """The page's HTML, read once from the package."""
    return resources.files(__name__).joinpath("index.html").read_bytes()


def _hashes(kind: bytes) -> str:
    digests = [
        hashlib.sha256(body).digest() for tag, body in _INLINE.findall(page()) if tag == kind
    ]
    return " ".join(f"'sha256-{base64.b64encode(d).decode()}'" for d in digests) or "'none'"


@functools.cache
def page_headers() -> dict[str, str]:
    """The headers the page is served with: its content type and a strict CSP."""
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hashes(b'script')}",
            f"style-src {_hashes(b'style')}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": policy,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
