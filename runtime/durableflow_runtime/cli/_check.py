"""``durableflow check``: replay the in-flight instances against the code on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson

from durableflow import StoreUnavailableError, ValidationError

from ..config import DEFAULT_CONFIG_NAME
from ._app import _load, fail, main

#: The exit status when the check could not run at all (a bad config, an unreadable
#: store), apart from 1: instances that would not replay.
CANNOT_CHECK = 2


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=True),
    default=None,
    help=f"The config file (default: ./{DEFAULT_CONFIG_NAME}).",
)
@click.option("--storage", default=None, help="Storage URL (default: config).")
@click.option("--workflow", default=None, help="Only this workflow's instances.")
@click.option(
    "--include-finished",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also replay the last N finished instances of each workflow.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per instance.")
def check(
    config_path: Path | None,
    storage: str | None,
    workflow: str | None,
    include_finished: int,
    as_json: bool,
) -> None:
    """Replay every in-flight instance's history against the code on disk, without
    running any step: exit 0 when all replay, 1 when one diverges, fails or has no code.

    Reads the store read-only and takes no host lock: run it beside a serving host, in
    CI, before a deploy.
    """
    from ..check import check_store, describe, summary
    from ..config import ConfigError, build_specs

    config = _load(config_path)
    try:
        specs = build_specs(config)
        results = asyncio.run(
            check_store(
                specs,
                storage or config.storage_url,
                workflow=workflow,
                include_finished=include_finished,
            )
        )
    except (ConfigError, ValidationError, StoreUnavailableError) as exc:
        fail(exc.message, CANNOT_CHECK)
    bad = [r for r in results if r.status != "ok"]
    if as_json:
        for result in results:
            click.echo(orjson.dumps(result.to_json()).decode())
    else:
        for result in bad:
            click.echo(describe(result))
        click.echo(summary(results))
    raise SystemExit(1 if bad else 0)
