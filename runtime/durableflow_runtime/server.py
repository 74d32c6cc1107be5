"""The host's aiohttp application: the binding API over HTTP, and the user's routes.

Every answer is JSON. Errors are ``{"error": {"code", "message"}}`` with a status that
says what kind of mistake it was; no HTML page or traceback ever reaches a client (the
one HTML page is the dashboard, served where no route matches: see its section below):

=====  ======================================================================
400    ``invalid_json``, ``invalid_request``, ``invalid_params``, ``limit_exceeded``
401    ``unauthorized`` (``/api`` needs ``Authorization: Bearer <token>`` when set)
403    ``forbidden`` (a cross-site write, or a foreign ``Host`` on an open host)
404    ``not_found`` (unknown route, workflow or instance)
405    ``method_not_allowed``
409    ``instance_exists``, ``invalid_transition``
413    ``payload_too_large`` (request body), ``limit_exceeded`` (params, payload)
415    ``unsupported_media_type`` (a body that is not ``application/json``)
500    ``internal`` (logged on the host with its traceback)
503    ``store_unavailable`` (the store is away, read-only or its file was deleted)
507    ``storage_full`` (the store's disk is full; reads keep working)
=====  ======================================================================

Cross-site request forgery: a browser on another origin can send a "simple" request
(``text/plain`` body, or none) without asking first. So a write to ``/api`` whose
``Origin`` or ``Sec-Fetch-Site`` shows another site is refused unless ``[server]
cors_origins`` lists the origin, and a write with a body must say ``application/json``
(which a browser only sends cross-origin after a preflight this host grants only to
``cors_origins``). Without a token, the ``Host`` header must name this machine, so a page
that rebinds its own DNS name to 127.0.0.1 cannot reach the API either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import orjson
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
from durableflow._duration import to_seconds
from durableflow._types import check_id
from durableflow.web import ENV_KEY

from .dashboard import DASHBOARD_PATH, page, page_headers
from .engine import RESERVED_INSTANCE_IDS, Engine
from .metrics import METRICS_PATH, add_metrics_route  # observe: GET /metrics
from .openapi import build_openapi
from .schema import json_schema
from .store.base import FINAL_STATUSES

__all__ = [
    "ENGINE_KEY",
    "SETTINGS_KEY",
    "ApiError",
    "ApiSettings",
    "build_app",
    "mount_user_app",
]

log = logging.getLogger("durableflow.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Longest wait a client may ask of ``GET .../result?timeout=`` (seconds).
MAX_RESULT_WAIT = 300.0
DEFAULT_RESULT_WAIT = 30.0
CONTROL_ACTIONS = ("pause", "resume", "terminate", "restart")


@attrs.define
class ApiSettings:
    """What the HTTP layer needs besides the engine.

    Attributes:
        token: Bearer token required on ``/api`` (``None``: open).
        max_body_bytes: Largest request body accepted.
        workflows: What ``GET /api/workflows`` lists, one dict per workflow.
        stopping: Set when the host shuts down: long polls answer at once.
        dashboard: Serve the dashboard page at ``/dashboard`` (``/`` redirects to it).
        cors_origins: Other origins (``scheme://host[:port]``) allowed to call ``/api``
            from a browser.
        local_only: Answer ``/api`` only for requests whose ``Host`` names this machine
            (set for a host on loopback without a token: no DNS rebinding).
    """

    token: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    workflows: list[dict[str, Any]] = attrs.field(factory=list)
    stopping: asyncio.Event = attrs.field(factory=asyncio.Event)
    dashboard: bool = True
    cors_origins: frozenset[str] = frozenset()
    local_only: bool = False


ENGINE_KEY: web.AppKey[Engine] = web.AppKey("durableflow.engine", Engine)
SETTINGS_KEY: web.AppKey[ApiSettings] = web.AppKey("durableflow.settings", ApiSettings)


class ApiError(Exception):
    """An error answer: HTTP status, a machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON error answer ``{"error": {"code", "message"}}``."""
    return _json({"error": {"code": code, "message": message}}, status, headers)


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

#: Deepest nesting of arrays and objects accepted in a JSON body.
MAX_JSON_DEPTH = 128
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1", "[::1]"})
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_SECONDS = re.compile(r"(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][-+]?[0-9]{1,3})?")


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
    if not _is_api(request):
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


# --- request helpers ------------------------------------------------------------------
_ABSENT: Any = object()


async def _body(request: web.Request) -> Any:
    """The parsed JSON body, or ``_ABSENT`` when there is none."""
    raw = await request.read()
    if not raw.strip():
        return _ABSENT
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    check_json_depth(value)
    return value


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse arrays and objects nested deeper than ``limit``, without recursing.

    Raises:
        ApiError: 400 ``invalid_json`` naming the limit.
    """
    level: list[Any] = [value]
    depth = 0
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return
        depth += 1
        if depth > limit:
            raise ApiError(
                400,
                "invalid_json",
                f"request body is nested more than {limit} levels deep",
            )
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]


async def _object_body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    body = await _body(request)
    if body is _ABSENT:
        return {}
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_request",
            f"request body must be a JSON object, not {_json_type(body)}",
        )
    _check_keys(body, allowed, "request body")
    return body


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"unknown key(s) in {where}: {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})",
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _instance_id(value: Any, where: str) -> str | None:
    if value is _ABSENT:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f"{where} must be a string, not {_json_type(value)}")
    return check_id(value)


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):  # int() would also take "1_0", " 5" and other digits
        raise ApiError(
            400, "invalid_request", f"query parameter {name!r} must be an integer, not {raw!r}"
        )
    return int(raw)


def _query_seconds(request: web.Request, name: str, default: float, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = float(raw) if _SECONDS.fullmatch(raw) else math.nan
    if not 0 <= value <= maximum:
        raise ApiError(
            400,
            "invalid_request",
            f"query parameter {name!r} must be a number of seconds from 0 to {maximum:g}, "
            f"not {raw!r}",
        )
    return value


def _engine(request: web.Request) -> Engine:
    return request.config_dict[ENGINE_KEY]


def _workflow(request: web.Request) -> str:
    name = request.match_info["name"]
    _engine(request).spec(name)  # NotFoundError -> 404
    return name


# --- handlers -------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the host is up (no auth)."""
    return _json({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``: the API's OpenAPI 3.1 document."""
    return _json(build_openapi())


async def list_workflows(request: web.Request) -> web.Response:
    """``GET /api/workflows``."""
    return _json({"workflows": request.config_dict[SETTINGS_KEY].workflows})


async def describe_workflow(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}``: one workflow, with the JSON Schema of its params."""
    name = _workflow(request)
    [info] = [w for w in request.config_dict[SETTINGS_KEY].workflows if w["name"] == name]
    return _json(info)


async def create_instance(request: web.Request) -> web.Response:
    """``POST /api/workflows/{name}/instances`` -> 201 ``{"id", "status"}``."""
    name = _workflow(request)
    body = await _object_body(request, ("id", "params"))
    instance_id = _instance_id(body.get("id", _ABSENT), "'id'")
    [created] = await _engine(request).create(name, [(instance_id, body.get("params"))])
    _engine(request).observer.created(name, created, request.headers.get("traceparent"))  # observe:
    return _json({"id": created, "status": "queued"}, 201)


async def create_batch(request: web.Request) -> web.Response:
    """``POST /api/workflows/{name}/instances/batch``: all or nothing."""
    name = _workflow(request)
    engine = _engine(request)
    body = await _object_body(request, ("instances",))
    entries = body.get("instances")
    if not isinstance(entries, list):
        raise ApiError(
            400,
            "invalid_request",
            f"'instances' must be an array of {{id?, params?}}, not {_json_type(entries)}",
        )
    if not entries:
        raise ApiError(400, "invalid_request", "'instances' is empty: give at least one instance")
    if len(entries) > engine.limits.max_batch:
        raise ApiError(
            400,
            "limit_exceeded",
            f"a batch holds at most {engine.limits.max_batch} instances, not {len(entries)}",
        )
    items: list[tuple[str | None, Any]] = []
    for index, entry in enumerate(entries):
        where = f"instances[{index}]"
        if not isinstance(entry, dict):
            raise ApiError(
                400, "invalid_request", f"{where} must be an object, not {_json_type(entry)}"
            )
        _check_keys(entry, ("id", "params"), where)
        try:
            items.append(
                (_instance_id(entry.get("id", _ABSENT), f"{where}.id"), entry.get("params"))
            )
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.message}") from None
    try:
        ids = await engine.create(name, items)
    except (InvalidParamsError, LimitExceededError) as exc:
        raise type(exc)(f"{_failing_entry(engine, name, items)}{exc.message}") from None
    return _json({"instances": [{"id": i, "status": "queued"} for i in ids]}, 201)


def _failing_entry(engine: Engine, name: str, items: list[tuple[str | None, Any]]) -> str:
    """``"instances[i]: "`` for the first entry that does not validate on its own."""
    for index, (id, params) in enumerate(items):
        try:
            engine.prepare(name, id, params)
        except ValidationError:
            return f"instances[{index}]: "
    return ""


async def list_instances(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}/instances?status=&limit=&cursor=&id_prefix=&created_after=&created_before=``,
    newest first."""
    name = _workflow(request)
    items, next_cursor = await _engine(request).list_instances(
        name,
        status=request.query.get("status"),
        limit=_query_int(request, "limit", 50),
        cursor=request.query.get("cursor"),
        id_prefix=request.query.get("id_prefix"),
        created_after=request.query.get("created_after"),
        created_before=request.query.get("created_before"),
    )
    return _json({"instances": items, "next_cursor": next_cursor})


async def describe_instance(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}/instances/{id}``: the detail, with every step."""
    name = _workflow(request)
    id = request.match_info["id"]
    if id in RESERVED_INSTANCE_IDS:  # ".../instances/batch" is the batch route, POST only
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    return _json(await _engine(request).describe(name, id))


async def _status_body(engine: Engine, name: str, id: str) -> dict[str, Any]:
    st = await engine.status(name, id)
    return {
        "id": id,
        "status": st.status,
        "error": attrs.asdict(st.error) if st.error is not None else None,
        "output": st.output,
    }


async def instance_status(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}/instances/{id}/status``: status, error, output."""
    name = _workflow(request)
    return _json(await _status_body(_engine(request), name, request.match_info["id"]))


async def instance_result(request: web.Request) -> web.Response:
    """``GET .../instances/{id}/result?timeout=S``: wait up to S seconds for the end.

    Answers as soon as the instance is ``complete``, ``errored`` or ``terminated``
    (``"done": true``), or when the wait runs out (``"done": false``, the status then).
    """
    name = _workflow(request)
    engine = _engine(request)
    id = request.match_info["id"]
    timeout = _query_seconds(request, "timeout", DEFAULT_RESULT_WAIT, MAX_RESULT_WAIT)
    body = await _status_body(engine, name, id)
    if body["status"] not in FINAL_STATUSES and timeout > 0:
        await _wait_until_ended(
            engine, name, id, timeout, request.config_dict[SETTINGS_KEY].stopping
        )
        body = await _status_body(engine, name, id)
    body["done"] = body["status"] in FINAL_STATUSES
    return _json(body)


#: How often a long poll re-reads the status when the store has other hosts, whose
#: progress this engine is not told about.
REMOTE_POLL_INTERVAL = 1.0


async def _wait_until_ended(
    engine: Engine, name: str, id: str, timeout: float, stopping: asyncio.Event
) -> None:
    """Return when the instance has ended, ``timeout`` has passed, or the host stops."""

    async def ended() -> bool:
        return (await engine.status(name, id)).status in FINAL_STATUSES

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    poll = None if engine.store.single_host else REMOTE_POLL_INTERVAL
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        while (remaining := deadline - loop.time()) > 0 and not stopping.is_set():
            chunk = remaining if poll is None else min(poll, remaining)
            waiter = asyncio.ensure_future(engine.wait(name, id, ended, chunk))
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await waiter
            if waiter.cancelled():
                continue  # the host is stopping
            error = waiter.exception()
            if error is None:
                return  # the instance ended
            if not isinstance(error, TimeoutError):
                raise error
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper


def _control(action: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        name = _workflow(request)
        id = request.match_info["id"]
        status = await _engine(request).control(name, id, action)  # type: ignore[arg-type]
        return _json({"id": id, "status": status})

    handler.__name__ = f"{action}_instance"
    handler.__doc__ = f"``POST /api/workflows/{{name}}/instances/{{id}}/{action}``."
    return handler


async def send_event(request: web.Request) -> web.Response:
    """``POST .../instances/{id}/events/{type}``: the body is the payload -> 202."""
    name = _workflow(request)
    id = request.match_info["id"]
    event_type = check_id(request.match_info["type"], what="event type")
    payload = await _body(request)
    await _engine(request).send_event(name, id, event_type, None if payload is _ABSENT else payload)
    return _json({"id": id, "type": event_type}, 202)


async def prune_instances(request: web.Request) -> web.Response:
    """``POST /api/instances/prune`` body ``{"older_than", "status"?, "workflow"?}``.

    Deletes finished instances that ended more than ``older_than`` ago -> 200
    ``{"deleted": n}``.
    """
    body = await _object_body(request, ("older_than", "status", "workflow"))
    older_than = body.get("older_than")
    if older_than is None or isinstance(older_than, bool | list | dict):
        given = f"is {_json_type(older_than)}" if "older_than" in body else "is missing"
        raise ApiError(
            400,
            "invalid_request",
            "'older_than' must be a duration such as \"7 days\" or a number of "
            f"milliseconds; it {given}",
        )
    # any finite age is a question with an answer ("older than a million years": none)
    seconds = to_seconds(older_than, what="older_than", maximum=math.inf)
    filters: dict[str, str] = {}
    for key in ("status", "workflow"):
        value = body.get(key, _ABSENT)
        if value is _ABSENT:
            continue
        if not isinstance(value, str):
            raise ApiError(
                400, "invalid_request", f"'{key}' must be a string, not {_json_type(value)}"
            )
        filters[key] = value
    deleted = await _engine(request).prune(seconds, **filters)
    return _json({"deleted": deleted})


API_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/healthz", healthz),
    ("GET", "/api/openapi.json", openapi),
    ("GET", "/api/workflows", list_workflows),
    ("GET", "/api/workflows/{name}", describe_workflow),
    ("POST", "/api/workflows/{name}/instances", create_instance),
    ("GET", "/api/workflows/{name}/instances", list_instances),
    ("POST", "/api/workflows/{name}/instances/batch", create_batch),
    ("GET", "/api/workflows/{name}/instances/{id}", describe_instance),
    ("GET", "/api/workflows/{name}/instances/{id}/status", instance_status),
    ("GET", "/api/workflows/{name}/instances/{id}/result", instance_result),
    *[
        ("POST", f"/api/workflows/{{name}}/instances/{{id}}/{action}", _control(action))
        for action in CONTROL_ACTIONS
    ],
    ("POST", "/api/workflows/{name}/instances/{id}/events/{type}", send_event),
    ("POST", "/api/instances/prune", prune_instances),
]
"""Every route the host serves besides the user's, as (method, path, handler)."""


def _params_schema(name: str, ptype: Any) -> dict[str, Any] | None:
    """The JSON Schema of a workflow's params; a type it cannot describe is logged, and
    the workflow is listed without one (the host still validates params with cattrs)."""
    try:
        return json_schema(ptype)
    except Exception as exc:
        log.warning("no params_schema for workflow %r: %s: %s", name, type(exc).__name__, exc)
        return None


def workflow_info(
    engine: Engine, class_names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """What ``GET /api/workflows`` says about each workflow of an engine."""
    result = []
    for spec in engine.workflows.values():
        ptype = spec.params_type
        result.append(
            {
                "name": spec.name,
                "binding": spec.binding or spec.name,
                "class_name": (class_names or {}).get(spec.name, spec.cls.__name__),
                "module": spec.cls.__module__,
                "params_type": None if ptype is Any else getattr(ptype, "__name__", str(ptype)),
                "params_schema": _params_schema(spec.name, ptype),
                "defaults": spec.defaults.to_json(),
            }
        )
    return result


def build_app(
    engine: Engine,
    settings: ApiSettings,
    *,
    app: web.Application | None = None,
) -> web.Application:
    """The host's application: the API routes and middlewares on ``app`` (or a new one).

    Args:
        engine: The engine the API drives.
        settings: Token, body limit, workflow list.
        app: A user application to add the API to (from an app factory), if any.
    """
    if app is None:
        app = web.Application(client_max_size=settings.max_body_bytes)
    else:
        app._client_max_size = settings.max_body_bytes
    if not settings.workflows:
        settings.workflows = workflow_info(engine)
    app[ENGINE_KEY] = engine
    app[SETTINGS_KEY] = settings
    app[ENV_KEY] = engine.env
    # outermost first: cross-site checks (their refusals and CORS headers wrap every
    # answer), then errors, then auth, then the body limit
    chain = (origin_middleware, errors_middleware, auth_middleware, body_limit_middleware)
    for index, middleware in enumerate(chain):
        app.middlewares.insert(index, middleware)
    for method, path, handler in API_ROUTES:
        route = app.router.add_route(method, path, handler)
        if method == "GET":  # HEAD wherever GET is, as HTTP says
            route.resource.add_route("HEAD", handler)  # type: ignore[union-attr]
    add_metrics_route(app, engine)  # observe: GET /metrics when the engine has metrics
    if settings.dashboard:
        app.middlewares.append(dashboard_middleware)
    return app


# --- dashboard ------------------------------------------------------------------------
# The page is not API: it is served without a token (it holds no data; its requests to
# /api carry the token) and only when no route matches, so a user route on "/" or
# "/dashboard" wins and the router (and the OpenAPI document) stays about the API.
@web.middleware
async def dashboard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve ``GET /dashboard`` and redirect ``GET /`` to it where no route matches."""
    if request.method in ("GET", "HEAD") and isinstance(
        request.match_info.http_exception, web.HTTPNotFound
    ):
        if request.path in (DASHBOARD_PATH, DASHBOARD_PATH + "/"):
            return web.Response(body=page(), headers=page_headers())
        if request.path == "/":
            raise web.HTTPFound(DASHBOARD_PATH)
    return await handler(request)


async def mount_user_app(target: Any, env: Any) -> tuple[web.Application | None, Any]:
    """Resolve the user's ``app`` setting.

    Args:
        target: What ``app = "module:attribute"`` names: an aiohttp ``RouteTableDef``
            (or any iterable of route definitions) or an app factory, called with no
            argument or with ``env``, sync or async, returning a ``web.Application``.
        env: The bindings, passed to a factory that takes one argument.

    Returns:
        ``(application, None)`` for a factory (the API is added to it), or
        ``(None, routes)`` for route definitions (added to the host's application).

    Raises:
        ValidationError: ``target`` is neither, or the factory returned something else.
    """
    if isinstance(target, web.RouteTableDef):
        return None, target
    if callable(target) and not isinstance(target, type):
        try:
            params = [
                p
                for p in inspect.signature(target).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            params = []
        result = target(env) if len(params) == 1 else target()
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, web.Application):
            raise ValidationError(
                f"the app factory returned {type(result).__name__}, not an aiohttp web.Application"
            )
        return result, None
    if isinstance(target, list | tuple) and all(
        isinstance(r, web.AbstractRouteDef) for r in target
    ):
        return None, target
    raise ValidationError(
        f"app must name an aiohttp RouteTableDef or an app factory, not {type(target).__name__}"
    )
