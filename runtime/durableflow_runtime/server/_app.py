"""The host's application: the API routes and middlewares, and the user's app beside them."""

from __future__ import annotations

import inspect
from typing import Any

from aiohttp import web

from durableflow import ValidationError
from durableflow.web import ENV_KEY

from ..engine import Engine
from ..metrics import add_metrics_route  # observe: GET /metrics
from ._base import ENGINE_KEY, SETTINGS_KEY, ApiSettings
from ._dashboard import dashboard_middleware
from ._handlers import API_ROUTES, workflow_info
from ._middlewares import (
    auth_middleware,
    body_limit_middleware,
    errors_middleware,
    origin_middleware,
)


def build_app(
    engine: Engine, settings: ApiSettings, *, app: web.Application | None = None
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
