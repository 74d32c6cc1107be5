"""The middlewares around every request: cross-site checks, errors, auth, the body limit.

See the package docstring for the error codes and why each cross-site rule exists.
"""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from durableflow import (
    InstanceExistsError,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NotFoundError,
    SerializationError,
    StorageFullError,
    StoreUnavailableError,
    ValidationError,
    WorkflowError,
)

from ..metrics import METRICS_PATH  # observe: GET /metrics
from ._base import SETTINGS_KEY, ApiError, Handler, error_response, log


def _from_workflow_error(exc: WorkflowError) -> tuple[int, str]:
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, InstanceExistsError):
        return 409, "instance_exists"
    if isinstance(exc, InvalidTransitionError):
        return 409, "invalid_transition"
    if isinstance(exc, LimitExceededError):
        return 413, "limit_exceeded"
    if isinstance(exc, InvalidParamsError):
        return 400, "invalid_params"
    if isinstance(exc, ValidationError | SerializationError):
        return 400, "invalid_request"
    if isinstance(exc, StorageFullError):
        return 507, "storage_full"
    if isinstance(exc, StoreUnavailableError):
        return 503, "store_unavailable"
    return 500, "internal"


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1", "[::1]"})


def _is_api(request: web.Request) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the JSON error shape; never let a traceback out."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except WorkflowError as exc:
        status, code = _from_workflow_error(exc)
        if status == 500:
            log.error("%s %s: %s", request.method, request.path, exc, exc_info=exc)
            return error_response(500, "internal", "internal error (see the host's log)")
        return error_response(status, code, exc.message)
    except web.HTTPException as exc:
        routing_failed = request.match_info.http_exception is not None
        if exc.status < 400 or not (routing_failed or _is_api(request) or exc.status == 413):
            raise  # a redirect, or a user route's own answer
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            methods = _allowed_methods(request, exc)
            headers = {"Allow": ", ".join(methods)}
            message = (
                f"{request.method} is not allowed on {request.path} (allowed: {', '.join(methods)})"
            )
        elif exc.status == 413:
            limit = request.config_dict[SETTINGS_KEY].max_body_bytes
            message = f"request body is larger than the limit of {limit} bytes"
        else:
            message = exc.text or exc.reason
        return error_response(
            exc.status, _HTTP_CODES.get(exc.status, f"http_{exc.status}"), message, headers
        )
    except ConnectionResetError:
        # the client went away (mid-body, say): nobody is left to answer
        log.debug("%s %s: the client disconnected", request.method, request.path)
        return error_response(400, "invalid_request", "the client disconnected")
    except Exception as exc:
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return error_response(500, "internal", "internal error (see the host's log)")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}".lower()


def _host_is_local(host: str) -> bool:
    name = host.lower()
    if name.startswith("["):
        name = name.partition("]")[0] + "]"
    else:
        name = name.rpartition(":")[0] if name.count(":") == 1 else name
    return name in _LOOPBACK_NAMES or name.startswith("127.")


_RESERVED_PATH = re.compile(r"/api/workflows/[^/]+/instances/(?:batch|actions)")


def _allowed_methods(request: web.Request, failure: web.HTTPException) -> list[str]:
    """The methods a path takes, for ``Allow``.

    The router would also count ``GET`` of ``.../instances/{id}`` for
    ``.../instances/batch``, but that name is a route, not an instance: ``POST`` only.
    """
    if _RESERVED_PATH.fullmatch(request.path):
        return ["POST"]
    return sorted(getattr(failure, "allowed_methods", ()) or ())


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site writes to ``/api``; answer ``OPTIONS`` and CORS preflights.

    See the module docstring for why each rule exists.
    """
    if not _is_api(request) and request.path != METRICS_PATH:
        return await handler(request)
    settings = request.config_dict[SETTINGS_KEY]
    # browsers always send Host; a request without one is not a rebound page
    if settings.local_only and "Host" in request.headers and not _host_is_local(request.host):
        return error_response(
            403,
            "forbidden",
            "this host has no token, so it answers only requests addressed to this machine "
            "(Host: localhost or 127.0.0.1); set [server] token to serve other names",
        )
    origin = request.headers.get("Origin")
    allowed = origin is not None and normalize_origin(origin) in settings.cors_origins
    if request.method == "OPTIONS":
        return _options(request, origin, allowed)
    if request.method not in _SAFE_METHODS and not allowed:
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        foreign = site in ("cross-site", "same-site") or (
            origin is not None and normalize_origin(origin) != _own_origin(request)
        )
        if foreign:
            return error_response(
                403,
                "forbidden",
                "cross-origin write refused: add the page's origin to [server] cors_origins "
                "to allow it",
            )
    has_body = request.method not in _SAFE_METHODS and request.body_exists
    if has_body and request.content_type != "application/json":
        return error_response(
            415,
            "unsupported_media_type",
            "a request body must be JSON, sent with 'Content-Type: application/json'",
        )
    response = await handler(request)
    if allowed and origin is not None and not response.prepared:
        response.headers.update(_cors_headers(origin))
    return response


def _options(request: web.Request, origin: str | None, allowed: bool) -> web.StreamResponse:
    """``OPTIONS``: the route's methods, and CORS grants for ``cors_origins`` only."""
    failure = request.match_info.http_exception
    if isinstance(failure, web.HTTPNotFound) or failure is None:
        return error_response(404, "not_found", f"no route {request.method} {request.path}")
    methods = sorted({*_allowed_methods(request, failure), "OPTIONS"})
    headers = {"Allow": ", ".join(methods)}
    if origin is not None and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return error_response(
                403,
                "forbidden",
                "cross-origin requests are refused: add the page's origin to "
                "[server] cors_origins to allow it",
            )
        headers.update(_cors_headers(origin))
        headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        headers["Access-Control-Max-Age"] = "600"
    return web.Response(status=204, headers=headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on ``/api`` when a token is set."""
    token = request.config_dict[SETTINGS_KEY].token
    if token and (_is_api(request) or request.path == METRICS_PATH):  # observe: /metrics too
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # aiohttp hands undecodable header bytes over as surrogates: compare raw bytes
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token.encode()
        )
        if not ok:
            message = (
                "missing Authorization header: send 'Authorization: Bearer <token>'"
                if not header
                else "invalid token"
            )
            return error_response(
                401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="durableflow"'}
            )
    return await handler(request)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse an announced oversize body before reading any of it."""
    limit = request.config_dict[SETTINGS_KEY].max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(
            413, "payload_too_large", f"request body is larger than the limit of {limit} bytes"
        )
    return await handler(request)
