"""The API's handlers, one per route, and the route table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web

from durableflow import (
    InvalidParamsError,
    LimitExceededError,
    StepRef,
    ValidationError,
    WebhookRequest,
)
from durableflow._duration import to_seconds
from durableflow._types import check_id, check_token

from ..engine import RESERVED_INSTANCE_IDS, Engine
from ..openapi import build_openapi
from ..schema import json_schema
from ..store.base import FINAL_STATUSES, ControlAction
from ._base import SETTINGS_KEY, ApiError, Handler, _json
from ._models import InstanceDetail, InstanceList
from ._output import OUTPUT_ROUTES
from ._requests import (
    _ABSENT,
    _body,
    _check_keys,
    _engine,
    _instance_id,
    _json_type,
    _object_body,
    _query_int,
    _query_seconds,
    _workflow,
)

log = logging.getLogger("durableflow.server")

#: Any finite age is a question with an answer ("older than a million years": none); the
#: bound is the OpenAPI document's (1e300 milliseconds), so what it accepts, this does.
MAX_PRUNE_AGE = 1.000001e297  # a hair above, for the rounding of 1e300 ms to seconds

#: Longest wait a client may ask of ``GET .../result?timeout=`` (seconds).
MAX_RESULT_WAIT = 300.0
DEFAULT_RESULT_WAIT = 30.0
CONTROL_ACTIONS = ("pause", "resume", "terminate", "restart")


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the host is up (no auth)."""
    return _json({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``: the API's OpenAPI 3.1 document."""
    return _json(build_openapi())


async def list_workflows(request: web.Request) -> web.Response:
    """``GET /api/workflows``."""
    workflows = request.config_dict[SETTINGS_KEY].workflows
    schedules = await _schedules_by_workflow(request)
    return _json({"workflows": [{**w, "schedules": schedules[w["name"]]} for w in workflows]})


async def describe_workflow(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}``: one workflow, with the JSON Schema of its params and
    how many instances it has in each status."""
    name = _workflow(request)
    [info] = [w for w in request.config_dict[SETTINGS_KEY].workflows if w["name"] == name]
    engine = _engine(request)
    return _json(
        {
            **info,
            "counts": await engine.counts(name),
            "schedules": (await _schedules_by_workflow(request))[name],
            "versions": await engine.versions(name),
        }
    )


async def _schedules_by_workflow(request: web.Request) -> dict[str, list[dict[str, Any]]]:
    """Each workflow's schedules as ``GET /api/workflows`` lists them (Cloudflare's
    ``{cron, timezone, next_instance}``, with the schedule's ``name`` and ``paused``)."""
    engine = _engine(request)
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in engine.workflows}
    for schedule in await engine.schedules.describe():
        found[schedule["workflow"]].append(
            {key: schedule[key] for key in ("name", "cron", "timezone", "next_instance", "paused")}
        )
    return found


async def list_schedules(request: web.Request) -> web.Response:
    """``GET /api/schedules``: every schedule of the config, with its shared state."""
    return _json({"schedules": await _engine(request).schedules.describe()})


def _schedule_action(paused: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        """``POST /api/schedules/{name}/pause|resume``: for every host sharing the store."""
        name = request.match_info["name"]
        return _json(await _engine(request).schedules.set_paused(name, paused))

    return handler


async def create_instance(request: web.Request) -> web.Response:
    """``POST /api/workflows/{name}/instances`` -> 201 ``{"id", "status"}``."""
    name = _workflow(request)
    body = await _object_body(request, ("id", "params", "priority", "concurrency_key"))
    instance_id = _instance_id(body.get("id", _ABSENT), "'id'")
    key = body.get("concurrency_key")
    if key is not None and not isinstance(key, str):
        raise ApiError(
            400, "invalid_request", f"'concurrency_key' must be a string, not {_json_type(key)}"
        )
    [created] = await _engine(request).create(
        name,
        [(instance_id, body.get("params"))],
        traceparent=request.headers.get("traceparent"),  # observe: the creator's trace
        priority=body.get("priority"),
        concurrency_key=key,
    )
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
        ids = await engine.create(name, items, traceparent=request.headers.get("traceparent"))
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
    """``GET /api/workflows/{name}/instances?status=&version=&limit=&cursor=&id_prefix=&created_after=&created_before=``,
    newest first."""
    name = _workflow(request)
    rows, next_cursor = await _engine(request).list_instances(
        name,
        status=request.query.get("status"),
        limit=_query_int(request, "limit", 50),
        cursor=request.query.get("cursor"),
        id_prefix=request.query.get("id_prefix"),
        created_after=request.query.get("created_after"),
        created_before=request.query.get("created_before"),
        version=request.query.get("version"),
    )
    return _json(InstanceList.from_rows(rows, next_cursor).to_json())


async def describe_instance(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}/instances/{id}``: the detail, with every step."""
    name = _workflow(request)
    id = request.match_info["id"]
    if id in RESERVED_INSTANCE_IDS:  # ".../instances/batch" is the batch route, POST only
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    record = await _engine(request).describe(name, id)
    return _json(InstanceDetail.from_record(record).to_json())


async def instance_history(request: web.Request) -> web.Response:
    """``GET /api/workflows/{name}/instances/{id}/history``: the history to replay."""
    name = _workflow(request)
    return _json(await _engine(request).history(name, request.match_info["id"]))


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


async def restart_instance(request: web.Request) -> web.Response:
    """``POST .../instances/{id}/restart`` body ``{"from"?: {"name", "count"?, "type"?}}``:
    from the start, or from a step of the history."""
    name = _workflow(request)
    id = request.match_info["id"]
    body = await _object_body(request, ("from",))
    from_step = None
    if body.get("from") is not None:
        from_step = StepRef.parse(body["from"], where="'from'")
    status = await _engine(request).control(name, id, "restart", from_step=from_step)
    return _json({"id": id, "status": status})


async def delete_instance(request: web.Request) -> web.Response:
    """``DELETE /api/workflows/{name}/instances/{id}`` -> 204; 404 unknown."""
    name = _workflow(request)
    await _engine(request).delete(name, request.match_info["id"])
    return web.Response(status=204)


async def bulk_action(request: web.Request) -> web.Response:
    """``POST /api/workflows/{name}/instances/actions`` body ``{"action", "ids"}`` or
    ``{"action", "status"}`` -> 200 with one result per instance."""
    name = _workflow(request)
    body = await _object_body(request, ("action", "ids", "status"))
    if "action" not in body:
        raise ApiError(400, "invalid_request", "'action' is missing")
    for key in ("ids", "status"):
        if key in body and body[key] is None:
            raise ApiError(400, "invalid_request", f"'{key}' must not be null (leave it out)")
    results, more = await _engine(request).bulk(
        name, body["action"], ids=body.get("ids"), status=body.get("status")
    )
    applied = sum(1 for r in results if r.result == "applied")
    return _json(
        {
            "action": body["action"],
            "results": [r.to_json() for r in results],
            "applied": applied,
            "skipped": len(results) - applied,
            "more": more,
        }
    )


async def terminate_instance(request: web.Request) -> web.Response:
    """``POST .../instances/{id}/terminate`` body ``{"rollback"?: bool, "cascade"?: bool}``:
    with ``rollback`` its rollback handlers run first; with ``cascade`` its running
    children (and theirs) are terminated too (by default they go on)."""
    name = _workflow(request)
    id = request.match_info["id"]
    body = await _object_body(request, ("rollback", "cascade"))
    flags = {key: body.get(key, False) for key in ("rollback", "cascade")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ValidationError(f"'{key}' must be true or false, not {_json_type(value)}")
    action: ControlAction = "terminate_rollback" if flags["rollback"] else "terminate"
    status = await _engine(request).control(name, id, action, cascade=flags["cascade"])
    return _json({"id": id, "status": status})


async def send_event(request: web.Request) -> web.Response:
    """``POST .../instances/{id}/events/{type}``: the body is the payload -> 202."""
    name = _workflow(request)
    id = request.match_info["id"]
    event_type = check_id(request.match_info["type"], what="event type")
    payload = await _body(request)
    await _engine(request).send_event(name, id, event_type, None if payload is _ABSENT else payload)
    return _json({"id": id, "type": event_type}, 202)


async def resume_hook(request: web.Request) -> web.Response:
    """``POST /api/hooks/{token}``: the body is the payload -> 202 ``{"workflow",
    "instance_id"}`` of the instance whose wait took it; 404 when no wait holds the token."""
    token = check_token(request.match_info["token"])
    payload = await _body(request)
    workflow, id = await _engine(request).resume_hook(
        token, None if payload is _ABSENT else payload
    )
    return _json({"workflow": workflow, "instance_id": id}, 202)


#: The methods a webhook URL takes.
WEBHOOK_METHODS = ("POST", "PUT", "PATCH")


async def call_webhook(request: web.Request) -> web.Response:
    """``POST|PUT|PATCH /hooks/{token}``: an outside service calls a webhook.

    No bearer token (the URL's random token is the secret) and any content type. The
    answer is an empty 202 (taken), 401 (signature), 404 (unknown), 410 (already called,
    or its instance ended) or 413 (too large): it never reflects what was sent.
    """
    body = await request.read()
    call = WebhookRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query.items()),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
    )
    status = await _engine(request).call_webhook(request.match_info["token"], call)
    return web.Response(status=status)


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
    seconds = to_seconds(older_than, what="older_than", maximum=MAX_PRUNE_AGE)
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
    ("GET", "/api/workflows/{name}/instances/{id}/history", instance_history),
    *[
        ("POST", f"/api/workflows/{{name}}/instances/{{id}}/{action}", _control(action))
        for action in CONTROL_ACTIONS
        if action not in ("restart", "terminate")  # these take a body: their own handlers
    ],
    ("POST", "/api/workflows/{name}/instances/{id}/restart", restart_instance),
    ("POST", "/api/workflows/{name}/instances/{id}/terminate", terminate_instance),
    ("DELETE", "/api/workflows/{name}/instances/{id}", delete_instance),
    ("POST", "/api/workflows/{name}/instances/actions", bulk_action),
    ("POST", "/api/workflows/{name}/instances/{id}/events/{type}", send_event),
    *OUTPUT_ROUTES,
    ("POST", "/api/instances/prune", prune_instances),
    ("POST", "/api/hooks/{token}", resume_hook),
    *[(method, "/hooks/{token}", call_webhook) for method in WEBHOOK_METHODS],
    ("GET", "/api/schedules", list_schedules),
    ("POST", "/api/schedules/{name}/pause", _schedule_action(True)),
    ("POST", "/api/schedules/{name}/resume", _schedule_action(False)),
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
                "version": spec.version,
                "previous": [
                    {"version": version, "class_name": cls.__name__}
                    for version, cls in spec.classes.items()
                    if cls is not spec.cls
                ],
            }
        )
    return result
