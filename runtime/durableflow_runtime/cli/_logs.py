"""``durableflow instances logs NAME ID [--follow]``: an instance's log."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import orjson

from durableflow._client import _HttpApi

from ._app import FINISHED
from ._client import _client_options, _path, _resolve_id, _Target, instances

#: Seconds between two looks at the log while following it.
FOLLOW_INTERVAL = 0.5


def _line(entry: dict[str, Any]) -> str:
    """One entry for people: time, level, where, message and its fields."""
    where = "run()" if entry["step"] is None else f"{entry['step']} #{entry['attempt']}"
    fields = " ".join(
        f"{key}={orjson.dumps(value).decode()}" for key, value in (entry["fields"] or {}).items()
    )
    text = f"{entry['time']} {entry['level'].upper():<7} [{where}] {entry['message']}"
    return f"{text} {fields}" if fields else text


@instances.command("logs")
@click.argument("name")
@click.argument("instance_id", metavar="ID|latest")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new entries until the instance ends."
)
@_client_options
def instances_logs(target: _Target, name: str, instance_id: str, follow: bool) -> None:
    """Print the log of an instance of workflow NAME (``ctx.log`` and ``step.log``).

    With --json, each entry is one JSON object per line.
    """

    def show(entry: dict[str, Any]) -> None:
        click.echo(orjson.dumps(entry).decode() if target.as_json else _line(entry))

    async def work(api: _HttpApi) -> None:
        resolved = await _resolve_id(api, name, instance_id)
        path = _path(name, "instances", resolved)
        after = 0
        while True:
            # read the status first: entries logged before the end are then all in the pages
            status = (await api.request("GET", path + "/status"))["status"]
            while True:
                page = await api.request(
                    "GET", path + "/logs", query={"after": str(after), "limit": "1000"}
                )
                for entry in page["logs"]:
                    show(entry)
                    after = entry["seq"]
                if page["next_after"] is None:
                    break
            if not follow or status in FINISHED:
                return
            await asyncio.sleep(FOLLOW_INTERVAL)

    target.run(work)
