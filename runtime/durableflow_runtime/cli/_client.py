"""The commands that talk to a running host over HTTP: workflows, trigger, instances,
schedules."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click
import orjson

from durableflow import ValidationError, WorkflowError
from durableflow._client import _HttpApi
from durableflow._duration import to_seconds
from durableflow._types import BULK_ACTIONS, STATUSES

from ..config import DEFAULT_CONFIG_NAME, TOKEN_ENV

if TYPE_CHECKING:
    pass

from ._app import (
    CONTROL_ACTIONS,
    DEFAULT_URL,
    FINISHED,
    PRUNE_TIMEOUT,
    URL_ENV,
    T,
    _load,
    fail,
    main,
)
from ._format import _cell, _duration, _error_text, _short_json, _table


class _Target:
    """Where the client commands send requests, and how they print answers."""

    def __init__(self, url: str, token: str | None, as_json: bool) -> None:
        self.url = url
        self.token = token
        self.as_json = as_json

    def run(self, work: Callable[[_HttpApi], Awaitable[T]], timeout: float = 30.0) -> T:
        async def go() -> T:
            api = _HttpApi(self.url, token=self.token, timeout=timeout)
            try:
                return await work(api)
            finally:
                await api.close()

        try:
            return asyncio.run(go())
        except WorkflowError as exc:
            fail(exc.message)
        except TimeoutError as exc:
            fail(str(exc) or f"the host at {self.url} did not answer in time")

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        else:
            human()


def _client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Config file whose [server] gives the default --url and --token.",
    )
    @click.option(
        "--url", default=None, help=f"Host URL (default: config, ${URL_ENV}, {DEFAULT_URL})."
    )
    @click.option("--token", default=None, help=f"Bearer token (default: ${TOKEN_ENV}, config).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
    @functools.wraps(func)
    def wrapper(
        config_path: Path | None, url: str | None, token: str | None, as_json: bool, **kwargs: Any
    ) -> Any:
        if url is None:
            url = os.environ.get(URL_ENV) or None
        has_config = config_path is not None or Path(DEFAULT_CONFIG_NAME).is_file()
        if (url is None or token is None) and has_config:
            config = _load(config_path)
            url = url or config.server.url
            token = token or config.server.token
        token = token or os.environ.get(TOKEN_ENV) or None
        return func(_Target(url or DEFAULT_URL, token, as_json), **kwargs)

    return wrapper


def _json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None


def _path(name: str, *rest: str) -> str:
    from urllib.parse import quote

    return "/".join(["/api/workflows", quote(name, safe=""), *(quote(r, safe="") for r in rest)])


@main.group()
def workflows() -> None:
    """Workflows on the running host."""


@workflows.command("list")
@_client_options
def workflows_list(target: _Target) -> None:
    """List the workflows the host runs."""
    data = target.run(lambda api: api.request("GET", "/api/workflows"))
    target.emit(
        data,
        lambda: _table(
            ["name", "binding", "class", "params"],
            [
                (w["name"], w["binding"], w["class_name"], w.get("params_type"))
                for w in data["workflows"]
            ],
        ),
    )


@workflows.command("describe")
@click.argument("name")
@_client_options
def workflows_describe(target: _Target, name: str) -> None:
    """Show workflow NAME: class, binding, step defaults and instances per status."""
    data = target.run(lambda api: api.request("GET", _path(name)))

    def human() -> None:
        known = (
            "name",
            "binding",
            "class_name",
            "module",
            "params_type",
            "defaults",
            "counts",
            "schedules",
            "version",
            "previous",
            "versions",
        )
        fields = [
            ("workflow", data["name"]),
            ("binding", data["binding"]),
            ("class", f"{data.get('module', '')}.{data['class_name']}".lstrip(".")),
            ("version", data.get("version")),
            ("params", data.get("params_type")),
            ("defaults", _short_json(data.get("defaults"))),
        ]
        for schedule in data.get("schedules") or []:
            upcoming = "paused" if schedule["paused"] else f"next {schedule['next_instance']}"
            fields.append(
                (
                    "schedule",
                    f"{schedule['name']}: {schedule['cron']} ({schedule['timezone']}), {upcoming}",
                )
            )
        # what other parts of the host add to the payload
        fields += [
            (k, _short_json(v)) for k, v in data.items() if k not in (*known, "params_schema")
        ]
        for label, value in fields:
            click.echo(f"{label:<9} {_cell(value)}")
        counts = data.get("counts") or {}
        click.echo()
        if not counts:
            click.echo("no instances")
        else:
            _table(["status", "instances"], sorted(counts.items()))
        versions = data.get("versions") or []
        if versions:  # in flight per version: 0 on an old one means its class can go
            click.echo()
            _table(
                ["version", "class", "current", "code here", "in flight"],
                [
                    (
                        v["version"],
                        v["class_name"],
                        "yes" if v["current"] else "",
                        "yes" if v["code"] else "no",
                        v["in_flight"],
                    )
                    for v in versions
                ],
            )

    target.emit(data, human)


async def _delete_all(api: _HttpApi, name: str) -> int:
    """Delete every stored instance of workflow ``name``, status by status; how many."""
    deleted = 0
    for status in STATUSES:
        while True:
            answer = await api.request(
                "POST",
                _path(name, "instances", "actions"),
                body={"action": "delete", "status": status},
            )
            deleted += answer["applied"]
            if not answer["more"] or not answer["applied"]:
                break
    return deleted


@workflows.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_client_options
def workflows_delete(target: _Target, name: str, yes: bool) -> None:
    """Delete every stored instance of workflow NAME, in any status, with its history.

    The workflow itself stays (it is defined by the config file and code).
    """
    if not yes:
        click.confirm(f"delete every instance of workflow {name!r}?", abort=True, err=True)
    deleted = target.run(lambda api: _delete_all(api, name), timeout=PRUNE_TIMEOUT)
    target.emit({"deleted": deleted}, lambda: click.echo(f"deleted {deleted} instance(s)"))


@main.command()
@click.argument("name")
@click.option("--id", "instance_id", default=None, help="The instance id (default: a UUID).")
@click.option("--params", default=None, callback=_json_option, help="Params as JSON.")
@click.option(
    "--priority",
    type=click.IntRange(0, 100),
    default=None,
    help="0-100: among queued instances, higher starts first (default 0).",
)
@click.option(
    "--concurrency-key",
    default=None,
    help="The key key_concurrency counts it under (default: from the params).",
)
@_client_options
def trigger(
    target: _Target,
    name: str,
    instance_id: str | None,
    params: Any,
    priority: int | None,
    concurrency_key: str | None,
) -> None:
    """Create an instance of workflow NAME and print its id."""
    body: dict[str, Any] = {}
    if instance_id is not None:
        body["id"] = instance_id
    if params is not None:
        body["params"] = params
    if priority is not None:
        body["priority"] = priority
    if concurrency_key is not None:
        body["concurrency_key"] = concurrency_key
    data = target.run(lambda api: api.request("POST", _path(name, "instances"), body=body))
    target.emit(data, lambda: click.echo(data["id"]))


@main.group()
def instances() -> None:
    """Instances of a workflow on the running host."""


@instances.command("list")
@click.argument("name")
@click.option("--status", default=None, help="Only instances with this status.")
@click.option(
    "--version", "version", default=None, help="Only instances created at this code version."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="The next page, as printed by the previous one.")
@click.option("--id-prefix", default=None, help="Only ids that start with this (literally).")
@click.option(
    "--created-after", default=None, help="Only instances created at or after this ISO time."
)
@click.option("--created-before", default=None, help="Only instances created before this ISO time.")
@_client_options
def instances_list(
    target: _Target,
    name: str,
    status: str | None,
    version: str | None,
    limit: int,
    cursor: str | None,
    id_prefix: str | None,
    created_after: str | None,
    created_before: str | None,
) -> None:
    """List instances of workflow NAME, newest first."""
    query = {"limit": str(limit)}
    for key, value in (
        ("status", status),
        ("version", version),
        ("cursor", cursor),
        ("id_prefix", id_prefix),
        ("created_after", created_after),
        ("created_before", created_before),
    ):
        if value:
            query[key] = value
    data = target.run(lambda api: api.request("GET", _path(name, "instances"), query=query))

    def human() -> None:
        _table(
            ["id", "status", "version", "created", "ended", "error"],
            [
                (
                    i["id"],
                    i["status"],
                    i.get("version"),
                    i["created_at"],
                    i["ended_at"],
                    _error_text(i["error"], 60),
                )
                for i in data["instances"]
            ],
        )
        if data.get("next_cursor"):
            click.echo(f"more: --cursor {data['next_cursor']}", err=True)

    target.emit(data, human)


async def _resolve_id(api: _HttpApi, name: str, instance_id: str) -> str:
    if instance_id != "latest":
        return instance_id
    page = await api.request("GET", _path(name, "instances"), query={"limit": "1"})
    if not page["instances"]:
        raise WorkflowError(f"workflow {name!r} has no instances yet")
    latest: str = page["instances"][0]["id"]
    return latest


@instances.command("describe")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@_client_options
def instances_describe(target: _Target, name: str, instance_id: str) -> None:
    """Show an instance of workflow NAME: status, params, output, error and every step."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request("GET", _path(name, "instances", resolved))

    data = target.run(work)

    def human() -> None:
        fields = [
            ("instance", f"{data['id']} ({name})"),
            ("status", data["status"]),
            ("version", data.get("version")),
            ("blocked", data.get("blocked")),
            ("created", data["created_at"]),
            ("started", data["started_at"]),
            ("ended", data["ended_at"]),
            ("duration", _duration(data["started_at"], data["ended_at"])),
            ("params", _short_json(data["params"])),
            ("output", _short_json(data["output"]) if data["output"] is not None else None),
            ("error", _error_text(data["error"], 2000)),
            ("parent", _relative(data.get("parent"))),
        ]
        children = data.get("children") or []
        if children:
            counts: dict[str, int] = {}
            for child in children:
                counts[child["status"]] = counts.get(child["status"], 0) + 1
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            fields.append(("children", f"{len(children)} ({summary})"))
        if data.get("blocked"):
            fields.insert(2, ("blocked", data["blocked"]))
        for label, value in fields:
            if label != "blocked" or value is not None:  # only what holds an instance back
                click.echo(f"{label:<9} {_cell(value)}")
        click.echo()
        steps = data["steps"]
        if not steps:
            click.echo("no steps yet")
            return
        _table(
            ["step", "type", "status", "attempts", "duration", "output", "error", "wake-up"],
            [
                (
                    s["name"] if s.get("count", 1) == 1 else f"{s['name']} #{s['count']}",
                    s["type"],
                    s["status"],
                    s["attempts"],
                    _duration(s["started_at"], s["ended_at"]),
                    # as the host shows it: "[redacted]" for a sensitive step
                    _short_json(s["output"], 40) if s["output"] is not None else None,
                    _error_text(s["error"], 60),
                    s["wake_at"] if s["status"] not in ("complete", "failed") else None,
                )
                for s in steps
            ],
        )
        rollbacks = [s for s in steps if s.get("rollback")]
        if rollbacks:
            click.echo()
            _table(
                ["rollback of", "status", "attempts", "duration", "error", "next attempt"],
                [
                    (
                        s["name"] if s.get("count", 1) == 1 else f"{s['name']} #{s['count']}",
                        r["status"],
                        r["attempts"],
                        _duration(r["started_at"], r["ended_at"]),
                        _error_text(r["error"], 60),
                        r["wake_at"] if r["status"] == "retrying" else None,
                    )
                    for s in rollbacks
                    for r in [s["rollback"]]
                ],
            )

    target.emit(data, human)


def _relative(ref: dict[str, str] | None) -> str | None:
    """A parent or child as ``workflow/id (status)``."""
    return None if ref is None else f"{ref['workflow']}/{ref['id']} ({ref['status']})"


@instances.command("export")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@_client_options
def instances_export(target: _Target, name: str, instance_id: str) -> None:
    """Print the recorded history of an instance of workflow NAME as JSON, for
    ``durableflow.testing.replay`` in a test suite (``... export orders o-1 > o-1.json``)."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request("GET", _path(name, "instances", resolved, "history"))

    data = target.run(work)
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _control_command(action: str) -> None:
    @instances.command(action)
    @click.argument("name")
    @click.argument("instance_id", metavar="ID|latest")
    @_client_options
    def command(target: _Target, name: str, instance_id: str) -> None:
        async def work(api: _HttpApi) -> Any:
            resolved = await _resolve_id(api, name, instance_id)
            return await api.request("POST", _path(name, "instances", resolved, action))

        data = target.run(work)
        target.emit(data, lambda: click.echo(f"{data['id']}: {data['status']}"))

    command.__doc__ = f"{action.capitalize()} an instance of workflow NAME."
    command.help = command.__doc__


for _action in CONTROL_ACTIONS:
    if _action not in ("restart", "terminate"):
        _control_command(_action)


@instances.command("restart")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@click.option(
    "--from-step",
    "from_step",
    default=None,
    help="Restart from this step: keep the history before it, run it and what follows again.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --from-step: which occurrence of that name (default 1).",
)
@click.option(
    "--type",
    "step_type",
    type=click.Choice(["do", "sleep", "wait_for_event"]),
    default=None,
    help="With --from-step: the step's kind (default do).",
)
@_client_options
def instances_restart(
    target: _Target,
    name: str,
    instance_id: str,
    from_step: str | None,
    count: int | None,
    step_type: str | None,
) -> None:
    """Restart an instance of workflow NAME: from the start, or from a step."""
    if from_step is None and (count is not None or step_type is not None):
        raise click.UsageError("--count and --type go with --from-step")
    body: dict[str, Any] | None = None
    if from_step is not None:
        body = {"from": {"name": from_step, "count": count or 1, "type": step_type or "do"}}

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request("POST", _path(name, "instances", resolved, "restart"), body=body)

    data = target.run(work)
    target.emit(data, lambda: click.echo(f"{data['id']}: {data['status']}"))


@instances.command("delete")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@_client_options
def instances_delete(target: _Target, name: str, instance_id: str) -> None:
    """Delete an instance of workflow NAME with everything stored for it."""

    async def work(api: _HttpApi) -> str:
        resolved = await _resolve_id(api, name, instance_id)
        await api.request("DELETE", _path(name, "instances", resolved))
        return resolved

    deleted = target.run(work)
    target.emit({"id": deleted, "deleted": True}, lambda: click.echo(f"deleted {deleted}"))


@instances.command("bulk")
@click.argument("action", type=click.Choice(BULK_ACTIONS))
@click.argument("name")
@click.option("--id", "ids", multiple=True, help="An instance id (repeat it; at most 1000).")
@click.option("--status", default=None, help="Every instance with this status (1000 per call).")
@_client_options
def instances_bulk(
    target: _Target, action: str, name: str, ids: tuple[str, ...], status: str | None
) -> None:
    """Pause, resume, terminate, restart or delete many instances of workflow NAME.

    Give the instances with --id (repeated) or --status; prints what happened to each.
    """
    if bool(ids) == (status is not None):
        raise click.UsageError("give either --id (one or more) or --status")
    body: dict[str, Any] = {"action": action}
    if ids:
        body["ids"] = list(ids)
    else:
        body["status"] = status
    data = target.run(
        lambda api: api.request("POST", _path(name, "instances", "actions"), body=body),
        timeout=PRUNE_TIMEOUT,
    )

    def human() -> None:
        _table(
            ["id", "result", "status", "reason"],
            [(r["id"], r["result"], r["status"], r["reason"]) for r in data["results"]],
        )
        click.echo(f"{data['applied']} applied, {data['skipped']} skipped", err=True)
        if data["more"]:
            click.echo(f"more instances are {status}: run it again", err=True)

    target.emit(data, human)


@instances.command("terminate")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@click.option(
    "--rollback",
    is_flag=True,
    help="Run the rollback handlers of its steps first (status rollingBack).",
)
@click.option(
    "--cascade",
    is_flag=True,
    help="Also terminate its running child workflows (by default they go on running).",
)
@_client_options
def instances_terminate(
    target: _Target, name: str, instance_id: str, rollback: bool, cascade: bool
) -> None:
    """Terminate an instance of workflow NAME."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        path = _path(name, "instances", resolved, "terminate")
        body = {key: True for key, on in (("rollback", rollback), ("cascade", cascade)) if on}
        if body:
            return await api.request("POST", path, body=body, send_body=True)
        return await api.request("POST", path)

    data = target.run(work)
    target.emit(data, lambda: click.echo(f"{data['id']}: {data['status']}"))


@instances.command("send-event")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@click.option("--type", "event_type", required=True, help="The event's type.")
@click.option("--payload", default=None, callback=_json_option, help="The payload as JSON.")
@_client_options
def instances_send_event(
    target: _Target, name: str, instance_id: str, event_type: str, payload: Any
) -> None:
    """Send an event to an instance of workflow NAME."""

    async def work(api: _HttpApi) -> Any:
        resolved = await _resolve_id(api, name, instance_id)
        return await api.request(
            "POST",
            _path(name, "instances", resolved, "events", event_type),
            body=payload,
            send_body=True,
        )

    data = target.run(work)
    target.emit(data, lambda: click.echo(f"sent event {event_type!r} to {data['id']}"))


def _older_than(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return to_seconds(value, what="--older-than")
    except ValidationError as exc:
        raise click.BadParameter(exc.message) from None


@instances.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    callback=_older_than,
    help='Delete instances that ended longer ago than this: "7d", "12 hours", "30m".',
)
@click.option(
    "--status",
    type=click.Choice(FINISHED),
    default=None,
    help="Only instances with this status (default: complete, errored and terminated).",
)
@click.option("--workflow", default=None, help="Only this workflow's instances (default: all).")
@_client_options
def instances_prune(
    target: _Target, older_than: float, status: str | None, workflow: str | None
) -> None:
    """Delete finished instances, with their steps and events, that ended long enough ago.

    Running, waiting, paused and queued instances are never deleted.
    """
    body: dict[str, Any] = {"older_than": older_than * 1000}  # milliseconds
    if status is not None:
        body["status"] = status
    if workflow is not None:
        body["workflow"] = workflow
    data = target.run(
        lambda api: api.request("POST", "/api/instances/prune", body=body),
        timeout=PRUNE_TIMEOUT,
    )
    target.emit(data, lambda: click.echo(f"deleted {data['deleted']} instance(s)"))


@main.group()
def hooks() -> None:
    """Resume hooks: waits registered with a token."""


@hooks.command("resume")
@click.argument("hook_token", metavar="TOKEN")
@click.option("--payload", default=None, callback=_json_option, help="The payload as JSON.")
@_client_options
def hooks_resume(target: _Target, hook_token: str, payload: Any) -> None:
    """Resume the wait that registered TOKEN (wait_for_event(..., token=TOKEN)).

    The waiting instance may be of any workflow; a token nobody waits on is an error.
    """
    from durableflow import _http

    try:
        call = _http.hook_call(hook_token, payload)
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="TOKEN") from None
    data = target.run(lambda api: api.send(call))
    target.emit(
        data,
        lambda: click.echo(f"resumed instance {data['instance_id']} of {data['workflow']}"),
    )


@main.group()
def schedules() -> None:
    """Schedules of the running host: list, pause, resume (for every host)."""


@schedules.command("list")
@_client_options
def schedules_list(target: _Target) -> None:
    """List the schedules, paused or not, with their next instance."""
    data = target.run(lambda api: api.request("GET", "/api/schedules"))
    target.emit(
        data,
        lambda: _table(
            ["name", "workflow", "cron", "timezone", "state", "next instance"],
            [
                (
                    s["name"],
                    s["workflow"],
                    s["cron"],
                    s["timezone"],
                    "paused" if s["paused"] else "active",
                    s["next_instance"],
                )
                for s in data["schedules"]
            ],
        ),
    )


def _schedule_command(action: str, help: str) -> None:
    @schedules.command(action, help=help)
    @click.argument("name")
    @_client_options
    def command(target: _Target, name: str) -> None:
        path = f"/api/schedules/{quote(name, safe='')}/{action}"
        data = target.run(lambda api: api.request("POST", path, body={}))
        state = "paused" if data["paused"] else f"active, next instance {data['next_instance']}"
        target.emit(data, lambda: click.echo(f"{data['name']}: {state}"))


_schedule_command("pause", "Pause schedule NAME: no host starts its ticks until resumed.")
_schedule_command("resume", "Resume schedule NAME from its next tick (missed ones are skipped).")
