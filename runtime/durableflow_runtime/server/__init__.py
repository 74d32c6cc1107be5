"""The host's aiohttp application: the binding API over HTTP, and the user's routes.

One module per job: ``_base`` (settings, app keys, JSON answers), ``_middlewares``
(cross-site checks, errors, auth, body limit), ``_requests`` (reading bodies and query
parameters), ``_models`` (the JSON of instances), ``_handlers`` (one per route, and the route table), ``_dashboard`` (the page)
and ``_app`` (assembling the application, mounting the user's).

Every answer is JSON. Errors are ``{"error": {"code", "message"}}`` with a status that
says what kind of mistake it was; no HTML page or traceback ever reaches a client (the
one HTML page is the dashboard, served where no route matches: see ``_dashboard.py``):

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

Webhook URLs (``/hooks/{token}``) are outside ``/api`` on purpose, and none of those
rules applies to them: providers call them from other sites, with their own content types
and no bearer token. The random token in the URL (and, when set, a signature) is what
authorizes a call, and the answer has no body, so nothing sent is reflected.
"""

from ._app import build_app, mount_user_app
from ._base import ENGINE_KEY, SETTINGS_KEY, ApiError, ApiSettings, Handler, error_response
from ._handlers import (
    API_ROUTES,
    CONTROL_ACTIONS,
    DEFAULT_RESULT_WAIT,
    MAX_RESULT_WAIT,
    REMOTE_POLL_INTERVAL,
    workflow_info,
)
from ._middlewares import _from_workflow_error, normalize_origin
from ._models import Attempt, InstanceDetail, InstanceList, InstanceSummary, Rollback, Step, iso
from ._requests import MAX_JSON_DEPTH, check_json_depth

__all__ = [
    "API_ROUTES",
    "CONTROL_ACTIONS",
    "DEFAULT_RESULT_WAIT",
    "ENGINE_KEY",
    "MAX_JSON_DEPTH",
    "MAX_RESULT_WAIT",
    "REMOTE_POLL_INTERVAL",
    "SETTINGS_KEY",
    "ApiError",
    "ApiSettings",
    "Attempt",
    "Handler",
    "InstanceDetail",
    "InstanceList",
    "InstanceSummary",
    "Rollback",
    "Step",
    "_from_workflow_error",
    "build_app",
    "check_json_depth",
    "error_response",
    "iso",
    "mount_user_app",
    "normalize_origin",
    "workflow_info",
]
