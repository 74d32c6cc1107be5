"""The dashboard's instance page shows the instance's streams live, and its log."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from .conftest import HostFactory, copy_project
from .test_dashboard import needs_chromium, page  # noqa: F401 (the page fixture)
from .test_streams import STREAMS_PROJECT


@needs_chromium
@pytest.mark.slow
async def test_browser_shows_streams_live_and_the_log(
    hosts: HostFactory,
    tmp_path: Path,
    page: Page,  # noqa: F811 (the page fixture)
) -> None:
    """The instance page follows each stream as chunks are written and lists the log."""
    host = hosts.start(copy_project(tmp_path / "p", STREAMS_PROJECT))
    path = "/api/workflows/talker/instances"
    async with aiohttp.ClientSession(base_url=host.url) as session:
        async with session.post(path, json={"id": "t-1", "params": {"first": 2, "then": 2}}):
            pass
        await page.goto(host.url + "/dashboard#/workflows/talker/instances/t-1")
        tokens = page.locator('#streams pre[data-stream="tokens"]')
        await expect(tokens).to_contain_text('{"i":1}')
        log = page.locator("#instance-log")
        await expect(log).to_contain_text("[run()] waiting for go")
        await expect(log).to_contain_text("[speak #1] spoke chunks=2")
        async with session.post(f"{path}/t-1/events/go", json={}) as sent:
            assert sent.status == 202
        await expect(tokens).to_contain_text('{"i":3}')
        await expect(page.locator('#streams pre[data-stream="default"]')).to_contain_text(
            "plain text"
        )
        await expect(log).to_contain_text("WARNING [run()] got go")
        await expect(log).to_contain_text("[run()] done")
