"""The dashboard page of a real host: served without a token, self-contained, and in a browser."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Locator, Page, async_playwright, expect

from durableflow_runtime.config import ConfigError, load_config
from durableflow_runtime.dashboard import page as dashboard_page
from durableflow_runtime.dashboard import page_headers
from durableflow_runtime.engine import Engine
from durableflow_runtime.openapi import build_openapi
from durableflow_runtime.server import ApiSettings, build_app
from durableflow_runtime.store.sqlite import SqliteStore
from tests.helpers import eventually, eventually_sync

from .conftest import DURABLEFLOW, Api, HostFactory, HostProcess, copy_project

TOKEN = "dashboard-test-token"

# A project whose one instance shows every kind of timeline row: a step that fails once and
# succeeds on its retry, a durable sleep, and a wait for an event.
TIMELINE_CONFIG = """\
main = "app.py"
app = "app:routes"

[server]
{server}

[[workflows]]
name = "orders"
binding = "ORDERS"
class_name = "OrderWorkflow"
retries = {{ limit = 2, delay = "200 ms", backoff = "constant" }}
"""

TIMELINE_APP = """\
from typing import Any

from aiohttp import web

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class OrderWorkflow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def reserve() -> dict[str, Any]:
            return {"sku": "A-1", "quantity": 2}

        async def charge(ctx: StepContext) -> str:
            if ctx.attempt == 1:
                raise ConnectionError("card network <b>timeout</b>")
            return "ch_1"

        reserved = await step.do("reserve stock", reserve)
        receipt = await step.do("charge card", charge)
        await step.sleep("cool down", "300 ms")
        approval = await step.wait_for_event("wait for approval", "approval", timeout="1 hour")
        return {"reserved": reserved, "receipt": receipt, "approval": approval.payload}


routes = web.RouteTableDef()


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    return web.Response(text="the shop's own home page")
"""


def timeline_project(target: Path, server: str = "") -> Path:
    """A project with the timeline workflow and a user route on ``/``."""
    target.mkdir(parents=True)
    (target / "durableflow.toml").write_text(TIMELINE_CONFIG.format(server=server))
    (target / "app.py").write_text(TIMELINE_APP)
    return target


async def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request without a token, not following redirects: status, headers, body."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, allow_redirects=False) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def inline_script() -> str:
    [script] = re.findall(r"<script>(.*?)</script>", dashboard_page().decode(), re.DOTALL)
    return str(script)


@pytest.fixture(scope="module")
def token_host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A host on the shared test project that requires a token on /api."""
    project = copy_project(tmp_path_factory.mktemp("dashboard") / "project")
    factory = HostFactory()
    try:
        yield factory.start(project, env={"DURABLEFLOW_TOKEN": TOKEN}, token=TOKEN)
    finally:
        factory.close()


async def test_page_is_served_without_a_token(token_host: HostProcess) -> None:
    """GET /dashboard answers the HTML page without a token while /api still demands one."""
    status, headers, body = await fetch(token_host.url + "/dashboard")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == dashboard_page()
    assert b"<title>durableflow</title>" in body
    status, _, _ = await fetch(token_host.url + "/api/workflows")
    assert status == 401
    status, headers, body = await fetch(token_host.url + "/dashboard", method="HEAD")
    assert status == 200 and body == b""


async def test_root_redirects_to_the_page(token_host: HostProcess) -> None:
    """GET / redirects to /dashboard when no user route claims it; other methods stay JSON 404s."""
    status, headers, _ = await fetch(token_host.url + "/")
    assert status == 302 and headers["Location"] == "/dashboard"
    status, headers, body = await fetch(token_host.url + "/dashboard", method="POST")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"


async def test_page_is_self_contained(token_host: HostProcess) -> None:
    """The page names no other origin, and its policy allows only its own inline code and /api."""
    text = dashboard_page().decode()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(//|[a-z][a-z0-9+.-]*:)(?!,)""", text, re.I)
    assert "@import" not in text and "url(" not in text
    _, headers, _ = await fetch(token_host.url + "/dashboard")
    policy = dict(
        part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    digest = base64.b64encode(hashlib.sha256(inline_script().encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert headers == {**headers, **page_headers()}


def test_page_puts_no_data_in_markup() -> None:
    """The script builds its DOM from text nodes: no innerHTML, outerHTML, document.write or eval."""
    script = inline_script()
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in script, forbidden
    assert "new Function" not in script


def test_inline_script_is_valid_javascript(tmp_path: Path) -> None:
    """The page's inline script passes `node --check`."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node binary on PATH to check the script's syntax")
    script = tmp_path / "dashboard.js"
    script.write_text(inline_script())
    result = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_page_is_not_in_the_api_document() -> None:
    """The OpenAPI document describes /api, /healthz and webhook URLs only: the page is
    not API."""
    paths = build_openapi()["paths"]
    assert not [p for p in paths if "dashboard" in p or p == "/"]
    assert all(p in ("/healthz", "/hooks/{token}") or p.startswith("/api/") for p in paths)


def test_config_key(tmp_path: Path) -> None:
    """`[server] dashboard` defaults to true, accepts false, and rejects anything but a boolean."""
    project = timeline_project(tmp_path / "on")
    assert load_config(project).server.dashboard is True
    project = timeline_project(tmp_path / "off", server="dashboard = false")
    assert load_config(project).server.dashboard is False
    project = timeline_project(tmp_path / "bad", server='dashboard = "no"')
    with pytest.raises(ConfigError, match=r"server\.dashboard must be true or false, not 'no'"):
        load_config(project)


@pytest.fixture
async def serve_app(tmp_path: Path) -> AsyncIterator[Any]:
    """Serve ``build_app`` with given settings on a real local port; yields a starter."""
    runners: list[web.AppRunner] = []
    store = SqliteStore(tmp_path / "state.db")

    async def start(settings: ApiSettings) -> str:
        runner = web.AppRunner(build_app(Engine(store, []), settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_switched_off_the_page_is_a_json_404(serve_app: Any) -> None:
    """With the dashboard off, /dashboard and / are the JSON 404 of any unknown route."""
    url = await serve_app(ApiSettings(dashboard=False))
    for path in ("/dashboard", "/"):
        status, headers, body = await fetch(url + path)
        assert status == 404 and headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] == {
            "code": "not_found",
            "message": f"no route GET {path}",
        }
    url = await serve_app(ApiSettings())
    status, _, body = await fetch(url + "/dashboard")
    assert status == 200 and body == dashboard_page()


async def test_config_switches_the_page_off(hosts: HostFactory, tmp_path: Path) -> None:
    """A host started with `[server] dashboard = false` answers /dashboard with a JSON 404."""
    host = hosts.start(timeline_project(tmp_path / "project", server="dashboard = false"))
    assert "/dashboard" not in host.output()
    status, headers, body = await fetch(host.url + "/dashboard")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"


async def test_user_route_on_root_wins(hosts: HostFactory, tmp_path: Path) -> None:
    """A user route on / is served as it is; the page stays at /dashboard."""
    host = hosts.start(timeline_project(tmp_path / "project"))
    status, _, body = await fetch(host.url + "/")
    assert status == 200 and body == b"the shop's own home page"
    status, _, body = await fetch(host.url + "/dashboard")
    assert status == 200 and body == dashboard_page()


@pytest.mark.slow
def test_dev_prints_the_dashboard_url(tmp_path: Path) -> None:
    """`durableflow dev` logs the dashboard's URL at start, and the page is there."""
    project = timeline_project(tmp_path / "project")
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [DURABLEFLOW, "dev", "--port", "0", "--grace", "1"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        match = eventually_sync(
            lambda: re.search(r"dashboard on (http://\S+/dashboard)", log.read_text()),
            timeout=30,
            message="dev to print the dashboard URL",
        )
        with urllib.request.urlopen(match.group(1), timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


# --- in a real browser -----------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="no chromium binary on PATH (install the `chromium` package for the browser check)",
)
"""Outside CI, the browser tests skip without chromium; under CI=true they run, and fail
without it (`.ci/run` installs it), so that CI never passes without a browser check."""


def dump_dom(url: str, profile: Path, budget_ms: int = 6000) -> str:
    """The DOM of ``url`` after headless chromium ran its scripts for ``budget_ms``."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(profile)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Elements(HTMLParser):
    """Every start tag of a document, with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.found if name in a.get("class", "").split()]

    def tags(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.found if t == tag]


@pytest.fixture
async def timeline_instance(hosts: HostFactory, tmp_path: Path) -> AsyncIterator[HostProcess]:
    """A host whose instance ``o-1`` retried a step, slept, and waits for an event."""
    host = hosts.start(timeline_project(tmp_path / "project"))
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "o-1"}, 201)

        async def waits_for_the_event() -> Any:
            detail = await api.ok("GET", "/api/workflows/orders/instances/o-1")
            steps = detail["steps"]
            return detail if len(steps) == 4 and steps[3]["status"] == "waiting" else None

        detail = await eventually(
            waits_for_the_event, timeout=15, message="o-1 waits for its event"
        )
        charge = detail["steps"][1]
        assert charge["attempts"] == 2 and charge["attempt_log"][0]["error"] is not None
    yield host


@needs_chromium
@pytest.mark.slow
async def test_browser_shows_the_timeline(timeline_instance: HostProcess, tmp_path: Path) -> None:
    """In headless chromium the instance page shows one timeline row per step, with attempts."""
    dom = dump_dom(
        timeline_instance.url + "/dashboard#/workflows/orders/instances/o-1", tmp_path / "profile"
    )
    elements = Elements(dom)
    rows = [
        {key: row.get(f"data-{key}") for key in ("step", "type", "status")}
        for row in elements.with_class("tl-row")
    ]
    assert rows == [
        {"step": "reserve stock", "type": "do", "status": "complete"},
        {"step": "charge card", "type": "do", "status": "complete"},
        {"step": "cool down", "type": "sleep", "status": "complete"},
        {"step": "wait for approval", "type": "wait_for_event", "status": "waiting"},
    ]
    # the failed first attempt of "charge card" is marked, its error (as text) on hover
    [failed] = elements.with_class("fail")
    assert failed["data-attempt"] == "1"
    assert "failed, ConnectionError: card network <b>timeout</b>" in failed["title"]
    assert not elements.tags("b")  # the error's markup stayed text
    succeeded = [a for a in elements.with_class("seg") if a.get("class") == "seg"]
    assert [a["data-attempt"] for a in succeeded] == ["1", "2"]  # "reserve stock", "charge card"
    assert any("times out" in a.get("title", "") for a in elements.with_class("beyond"))
    assert "2 attempts" in dom


@needs_chromium
@pytest.mark.slow
async def test_browser_lists_instances(timeline_instance: HostProcess, tmp_path: Path) -> None:
    """In headless chromium the workflow page lists its instances, newest first."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, timeline_instance.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "o-2"}, 201)
    dom = dump_dom(timeline_instance.url + "/dashboard#/workflows/orders", tmp_path / "profile")
    ids = [a["data-id"] for a in Elements(dom).with_class("clickable") if "data-id" in a]
    assert ids == ["o-2", "o-1"], dom[-3000:]


# --- driven by Playwright: clicks, typing, forms -----------------------------------------
# Playwright drives the system chromium (no browser of its own is downloaded).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).parents[2] / "docs"


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page of a headless chromium with a fresh profile, closed at the end of the test."""
    assert CHROMIUM is not None, "no chromium binary on PATH: CI=true requires the browser tests"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            env={**os.environ, "HOME": str(tmp_path)},
        )
        try:
            opened = context.pages[0] if context.pages else await context.new_page()
            opened.set_default_timeout(15_000)
            yield opened
        finally:
            await context.close()


async def screenshot(target: Page | Locator, name: str, tmp_path: Path) -> Path:
    """A PNG of ``target``; with DURABLEFLOW_DOCS_SCREENSHOTS=1 it also goes to docs/."""
    shot = tmp_path / name
    if isinstance(target, Locator):
        # a viewport tall enough for the whole element, so the sticky header covers none of it
        height = await target.evaluate("el => el.getBoundingClientRect().height")
        await target.page.set_viewport_size({"width": 1280, "height": int(height) + 200})
        await target.page.evaluate("window.scrollTo(0, 0)")
    await target.screenshot(path=shot)
    assert shot.stat().st_size > 1000
    if os.environ.get("DURABLEFLOW_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS / name)
    return shot


DASH_CONFIG = """\
main = "app.py"

[[workflows]]
name = "shipments"
binding = "SHIPMENTS"
class_name = "ShipmentWorkflow"

[[workflows]]
name = "long"
binding = "LONG"
class_name = "LongWorkflow"

[[workflows]]
name = "markup"
binding = "MARKUP"
class_name = "MarkupWorkflow"
retries = { limit = 0, delay = "10 ms", backoff = "constant" }
"""

DASH_APP = """\
from __future__ import annotations

import asyncio
import datetime
import enum
from typing import Any

import attrs

from durableflow import NonRetryableError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Speed(enum.Enum):
    STANDARD = "standard"
    EXPRESS = "express"


@attrs.frozen
class Address:
    city: str
    zip: str | None = None


@attrs.frozen
class Shipment:
    item: str
    quantity: int = 1
    speed: Speed = Speed.STANDARD
    tags: list[str] = attrs.field(factory=list)
    address: Address | None = None
    gift: bool = False
    ship_after: datetime.datetime | None = None


class ShipmentWorkflow(WorkflowEntrypoint[Any, Shipment]):
    async def run(self, event: WorkflowEvent[Shipment], step: WorkflowStep) -> Any:
        async def pack() -> str:
            return f"{event.payload.quantity} x {event.payload.item}"

        return await step.do("pack", pack)


class LongWorkflow(WorkflowEntrypoint[Any, Any]):
    \"\"\"n quick steps around a sleep of nap_ms, then a wait for an event.\"\"\"

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        n = event.payload["n"]

        async def quick() -> int:
            await asyncio.sleep(event.payload.get("work_ms", 0) / 1000)
            return 1

        for i in range(n // 2):
            await step.do(f"prepare {i}", quick)
        await step.sleep("nap", event.payload["nap_ms"])
        for i in range(n - n // 2):
            await step.do(f"finish {i}", quick)
        await step.wait_for_event("wait for go", "go", timeout="1 hour")


class MarkupWorkflow(WorkflowEntrypoint[Any, Any]):
    \"\"\"Puts its params' label into a step name, a step error, its output or its error.\"\"\"

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        label = event.payload["label"]

        async def echo() -> str:
            return label

        async def fail() -> None:
            raise NonRetryableError(f"step failed: {label}")

        out = await step.do(f"echo {label}", echo)
        try:
            await step.do(f"fail {label}", fail)
        except Exception:
            pass
        if event.payload.get("error"):
            raise RuntimeError(f"run failed: {label}")
        return {"out": out}
"""

MARKUP = '<img src=x onerror="window.__xss=1"><b>bold</b><script>window.__xss=2</script>'


def dash_project(target: Path) -> Path:
    """A project with a typed params form, a long instance and one that echoes markup."""
    target.mkdir(parents=True)
    (target / "durableflow.toml").write_text(DASH_CONFIG)
    (target / "app.py").write_text(DASH_APP)
    return target


@pytest.fixture
def dash_host(hosts: HostFactory, tmp_path: Path) -> HostProcess:
    """A host on the dashboard project."""
    return hosts.start(dash_project(tmp_path / "project"))


def rows_of(page: Page) -> Locator:
    return page.locator("#instances tbody tr[data-id]")


async def ids_of(page: Page) -> list[str]:
    return [str(i) for i in await rows_of(page).evaluate_all("rows => rows.map(r => r.dataset.id)")]


@needs_chromium
@pytest.mark.slow
async def test_browser_lists_and_filters_instances(
    timeline_instance: HostProcess, page: Page
) -> None:
    """The list filters by id prefix, status and created range; the address keeps the filter."""
    host = timeline_instance
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        batch = {"instances": [{"id": i} for i in ("ab_1", "ab-2", "abc", "AB_3", "zz")]}
        await api.ok("POST", "/api/workflows/orders/instances/batch", batch, 201)
        await api.wait_status("orders", "zz", "waiting")
    await page.goto(host.url + "/dashboard#/workflows/orders")
    await expect(rows_of(page)).to_have_count(6)
    assert await ids_of(page) == ["zz", "AB_3", "abc", "ab-2", "ab_1", "o-1"]

    # an id prefix is literal (the _ is no wildcard) and case-sensitive; the URL follows
    await page.fill("#filter-id", "ab_")
    await expect(rows_of(page)).to_have_count(1)
    assert await ids_of(page) == ["ab_1"]
    assert page.url.endswith("#/workflows/orders?id_prefix=ab_")
    await page.fill("#filter-id", "ab")
    await expect(rows_of(page)).to_have_count(3)
    await page.select_option("#filter-status", "waiting")
    await expect(page).to_have_url(re.compile(r"\?status=waiting&id_prefix=ab$"))

    # a created range after now matches nothing; a shared link restores filter and list
    await page.fill("#filter-after", "2099-01-01T00:00")
    await expect(page.locator("#instances tbody")).to_have_text(
        "No instance matches these filters."
    )
    assert "created_after=2099-01-01T" in page.url
    await page.fill("#filter-after", "")
    await page.fill("#filter-before", "2099-01-01T00:00")
    await expect(rows_of(page)).to_have_count(3)
    shared = page.url
    await page.goto("about:blank")
    await page.goto(shared)
    await expect(rows_of(page)).to_have_count(3)
    assert await page.input_value("#filter-id") == "ab"
    assert await page.input_value("#filter-status") == "waiting"
    assert await page.input_value("#filter-before") == "2099-01-01T00:00"
    await page.click("#filter-clear")
    await expect(rows_of(page)).to_have_count(6)
    await expect(page).to_have_url(re.compile(r"#/workflows/orders$"))


@needs_chromium
@pytest.mark.slow
async def test_browser_pages_through_instances(
    hosts: HostFactory, tmp_path: Path, page: Page
) -> None:
    """The list shows 50 instances, loads the rest on demand, and keeps them on refresh."""
    host = hosts.start(timeline_project(tmp_path / "project"))
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        batch = {"instances": [{"id": f"i-{n:03d}"} for n in range(60)]}
        await api.ok("POST", "/api/workflows/orders/instances/batch", batch, 201)
    await page.goto(host.url + "/dashboard#/workflows/orders")
    await expect(rows_of(page)).to_have_count(50)
    assert await ids_of(page) == [f"i-{n:03d}" for n in range(59, 9, -1)]
    await expect(page.locator(".more")).to_have_text("Load more50 shown, more available")
    await page.click(".more button")
    await expect(rows_of(page)).to_have_count(60)
    assert await ids_of(page) == [f"i-{n:03d}" for n in range(59, -1, -1)]
    await expect(page.locator(".more button")).to_be_hidden()
    # the next refresh (every 2 s) keeps all 60
    seen = await page.text_content("#conn")
    await expect(page.locator("#conn")).not_to_have_text(seen or "", timeout=10_000)
    await expect(rows_of(page)).to_have_count(60)


@needs_chromium
@pytest.mark.slow
async def test_browser_new_instance_form_from_the_params_type(
    dash_host: HostProcess, page: Page, tmp_path: Path
) -> None:
    """The New instance form is generated from params_schema: client hints first, then the
    host's 400 beside the field it names, then a valid instance."""
    await page.goto(dash_host.url + "/dashboard#/workflows/shipments")
    await page.click("#new-instance")
    form = page.locator("#create form")

    def field(path: str) -> Locator:
        return form.locator(f'.field[data-path="{path}"]')

    # fields, types, defaults, enums as selects, optional nested classes, lists
    await expect(field("item").locator("input")).to_have_value("")
    await expect(field("quantity").locator("input[type=number]")).to_have_value("1")
    assert await field("speed").locator("option").all_text_contents() == [
        "(default)",
        "standard",
        "express",
    ]
    await expect(field("speed").locator("select")).to_have_value('"standard"')
    await expect(field("item").locator(".field-label")).to_have_text("item *")
    await expect(field("quantity")).to_contain_text("whole number · default 1")
    await expect(field("address").locator("input[name='address.city']")).to_be_hidden()

    # client-side: a missing required field and a bad number are named beside them, nothing sent
    await field("quantity").locator("input").fill("1.5")
    await form.locator("button[type=submit]").click()
    await expect(field("item").locator(".field-error")).to_have_text("required")
    await expect(field("quantity").locator(".field-error")).to_have_text(
        "a whole number is expected"
    )
    await field("address").locator("legend input").check()
    await form.locator("button[type=submit]").click()
    await expect(field("address.city").locator(".field-error")).to_have_text("required")
    async with aiohttp.ClientSession() as session:
        listed = await Api(session, dash_host.url).ok("GET", "/api/workflows/shipments/instances")
    assert listed["instances"] == []

    # the host's 400 goes beside the field it names (a time the browser reads, cattrs does not)
    await field("item").locator("input").fill("book")
    await field("quantity").locator("input").fill("2")
    await field("address.city").locator("input").fill("Lyon")
    await field("ship_after").locator("input").fill("March 1, 2026")
    await form.locator("button[type=submit]").click()
    await expect(field("ship_after").locator(".field-error")).to_have_text(
        "invalid value for type, expected datetime.datetime | None"
    )
    await expect(field("item").locator(".field-error")).to_be_hidden()
    await screenshot(form, "dashboard-form.png", tmp_path)

    # fixed, with an enum, a list and a nested class: the instance is created with those params
    await field("ship_after").locator("input").fill("2026-03-01T12:00:00Z")
    await field("speed").locator("select").select_option('"express"')
    await field("tags").get_by_role("button", name="+ add tags").click()
    await field("tags").get_by_role("button", name="+ add tags").click()
    await field("tags[0]").locator("input").fill("fragile")
    await field("tags[1]").locator("input").fill("gift-wrap")
    await field("gift").locator("input").check()
    await form.locator("input[name=id]").fill("ship-1")
    await form.locator("button[type=submit]").click()
    await expect(page).to_have_url(re.compile(r"#/workflows/shipments/instances/ship-1$"))
    await expect(page.locator(".title-row .badge")).to_have_text("complete")
    params = json.loads(await page.text_content("#params") or "null")
    assert params == {
        "item": "book",
        "quantity": 2,
        "speed": "express",
        "tags": ["fragile", "gift-wrap"],
        "address": {"city": "Lyon"},
        "gift": True,
        "ship_after": "2026-03-01T12:00:00Z",
    }
    await expect(page.locator("#output")).to_have_text('"2 x book"')


@needs_chromium
@pytest.mark.slow
async def test_browser_edits_params_as_json(dash_host: HostProcess, page: Page) -> None:
    """The form switches to JSON and back with the same values; a taken id shows the host's 409."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, dash_host.url)
        body = {"id": "taken", "params": {"item": "x"}}
        await api.ok("POST", "/api/workflows/shipments/instances", body, 201)
    await page.goto(dash_host.url + "/dashboard#/workflows/shipments")
    await page.click("#new-instance")
    form = page.locator("#create form")
    await form.locator("input[name=item]").fill("lamp")
    await page.click("#params-as-json")
    raw = json.loads(await form.locator("textarea[name=params]").input_value())
    assert raw == {"item": "lamp", "quantity": 1, "speed": "standard", "gift": False}
    await form.locator("textarea[name=params]").fill('{"item": "desk", "quantity": 3}')
    await page.click("#params-as-json")
    await expect(form.locator("input[name=item]")).to_have_value("desk")
    await expect(form.locator("input[name=quantity]")).to_have_value("3")
    await form.locator("input[name=id]").fill("taken")
    await form.locator("button[type=submit]").click()
    await expect(form.locator('.field[data-path="id"] .field-error')).to_have_text(
        "instance 'taken' of workflow 'shipments' already exists"
    )


@needs_chromium
@pytest.mark.slow
async def test_browser_actions_follow_the_state(
    timeline_instance: HostProcess, page: Page, tmp_path: Path
) -> None:
    """Buttons and the event form are enabled as the detail's actions say; a refusal shows
    the host's message."""
    await page.goto(timeline_instance.url + "/dashboard#/workflows/orders/instances/o-1")

    def button(action: str) -> Locator:
        return page.locator(f"[data-action={action}]")

    event_form = page.locator("#event-form")

    async def enabled() -> list[str]:
        return [a for a in ACTIONS if await button(a).is_enabled()]

    await expect(page.locator(".title-row .badge")).to_have_text("waiting")
    await expect(button("pause")).to_be_enabled()
    assert await enabled() == ["pause", "terminate", "restart"]
    await expect(event_form.locator("input[name=type]")).to_have_value("approval")
    await expect(event_form.locator("#event-hint")).to_have_text(
        "Step “wait for approval” waits for an event of type “approval” (any JSON payload)."
    )
    await page.locator('.tl-row[data-step="charge card"] .seg.fail').click()
    await expect(page.locator(".tl-detail")).to_have_count(1)
    await screenshot(page, "dashboard.png", tmp_path)

    await button("pause").click()
    await expect(page.locator(".title-row .badge")).to_have_text("paused")
    await expect(page.locator("#action-message")).to_have_text("pause: now paused")
    assert await enabled() == ["resume", "terminate", "restart"]
    await button("resume").click()
    await expect(button("pause")).to_be_enabled()
    await expect(button("resume")).to_be_disabled()

    # the event form: bad JSON stays in the page; a good payload completes the instance
    await event_form.locator("textarea").fill("{not json")
    await event_form.locator("button[type=submit]").click()
    await expect(event_form.locator(".msg")).to_contain_text("payload is not valid JSON")
    await event_form.locator("textarea").fill('{"by": "ada"}')
    await event_form.locator("button[type=submit]").click()
    await expect(page.locator(".title-row .badge")).to_have_text("complete")
    assert await enabled() == ["restart"]
    await expect(event_form.locator("button[type=submit]")).to_be_disabled()
    await expect(event_form.locator("input[name=type]")).to_be_disabled()
    await expect(event_form.locator("#event-hint")).to_have_text(
        "This instance is complete: it takes no more events."
    )

    # a restart; then, with the page's view gone stale, the host's refusal is shown
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await button("restart").click()
    await expect(page.locator(".title-row .badge")).to_have_text("waiting")
    await page.uncheck("#auto")
    async with aiohttp.ClientSession() as session:
        api = Api(session, timeline_instance.url)
        await api.ok("POST", "/api/workflows/orders/instances/o-1/terminate")
    await button("terminate").click()
    await expect(page.locator("#action-message")).to_have_text(
        "terminate refused: cannot terminate instance 'o-1': it is terminated"
    )
    await expect(page.locator(".title-row .badge")).to_have_text("terminated")
    assert await enabled() == ["restart"]


ACTIONS = ["pause", "resume", "terminate", "restart"]


@needs_chromium
@pytest.mark.slow
async def test_browser_restarts_from_a_step_and_deletes(
    timeline_instance: HostProcess, page: Page
) -> None:
    """A step's detail restarts the instance from that step (the steps before it stay); the
    Delete button deletes the instance and goes back to the list."""
    host = timeline_instance
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    async with aiohttp.ClientSession() as session:
        before = await Api(session, host.url).ok("GET", "/api/workflows/orders/instances/o-1")
    await page.goto(host.url + "/dashboard#/workflows/orders/instances/o-1")
    await expect(page.locator(".title-row .badge")).to_have_text("waiting")
    await page.locator('.tl-row[data-step="cool down"]').click()
    await page.locator('[data-restart-from] >> text="Restart from this step"').click()
    await expect(page.locator("#action-message")).to_have_text(
        "restart from “cool down”: now queued"
    )
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        names = ["reserve stock", "charge card", "cool down", "wait for approval"]

        async def waits_again() -> Any:
            detail = await api.ok("GET", "/api/workflows/orders/instances/o-1")
            return detail if [s["name"] for s in detail["steps"]] == names else None

        detail = await eventually(waits_again, message="o-1 slept again and waits")
        assert detail["steps"][:2] == before["steps"][:2]  # kept, not run again
        assert detail["steps"][2]["started_at"] > before["steps"][2]["started_at"]
    await page.click("#delete-instance")
    await expect(page).to_have_url(re.compile(r"#/workflows/orders$"))
    await expect(page.locator("#instances tbody")).to_have_text(
        "No instance yet: create one with “New instance”."
    )


@needs_chromium
@pytest.mark.slow
async def test_browser_bulk_actions_on_ticked_instances(
    timeline_instance: HostProcess, page: Page
) -> None:
    """Ticking instances shows the action bar; a bulk pause, terminate and delete answer per
    instance, skipped ones with the host's reason, and the list follows."""
    host = timeline_instance
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        batch = {"instances": [{"id": i} for i in ("b-1", "b-2", "b-3")]}
        await api.ok("POST", "/api/workflows/orders/instances/batch", batch, 201)
        await api.wait_status("orders", "b-3", "waiting")
        await api.ok("POST", "/api/workflows/orders/instances/b-3/terminate")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(host.url + "/dashboard#/workflows/orders")
    await expect(rows_of(page)).to_have_count(4)
    bar = page.locator("#bulk-bar")
    await expect(bar).to_be_hidden()

    def tick(id: str) -> Locator:
        return page.locator(f'#instances tr[data-id="{id}"] input.pick')

    await tick("b-1").check()
    await tick("b-2").check()
    await expect(bar).to_be_visible()
    await expect(page.locator("#bulk-count")).to_have_text("2 selected")
    assert page.url.endswith("#/workflows/orders")  # ticking a row does not open it
    await bar.locator("[data-bulk=pause]").click()
    await expect(page.locator("#bulk-message")).to_have_text("pause: 2 applied, 0 skipped")
    await expect(page.locator('#instances tr[data-id="b-1"] .badge')).to_have_text("paused")
    await expect(page.locator('#instances tr[data-id="b-2"] .badge')).to_have_text("paused")
    await expect(bar).to_be_hidden()  # what was applied is let go

    await tick("b-2").check()
    await tick("b-3").check()
    await bar.locator("[data-bulk=terminate]").click()
    await expect(page.locator("#bulk-message")).to_have_text(
        "terminate: 1 applied, 1 skipped (b-3: cannot terminate instance 'b-3': it is terminated)"
    )
    await expect(page.locator("#bulk-count")).to_have_text("1 selected")  # b-3 stays ticked

    await page.check("#select-all")
    await expect(page.locator("#bulk-count")).to_have_text("4 selected")
    await tick("o-1").uncheck()
    await expect(page.locator("#bulk-count")).to_have_text("3 selected")
    await bar.locator("[data-bulk=delete]").click()
    await expect(page.locator("#bulk-message")).to_have_text("delete: 3 applied, 0 skipped")
    await expect(rows_of(page)).to_have_count(1)
    assert await ids_of(page) == ["o-1"]
    await expect(bar).to_be_hidden()


@needs_chromium
@pytest.mark.slow
async def test_browser_asks_for_the_token(hosts: HostFactory, tmp_path: Path, page: Page) -> None:
    """On a host with a token the page asks for it, again when refused, then shows the data."""
    host = hosts.start(timeline_project(tmp_path / "project", server=f'token = "{TOKEN}"'))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        api = Api(session, host.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "o-1"}, 201)
        await api.wait_status("orders", "o-1", "waiting")
    await page.goto(host.url + "/dashboard#/workflows/orders/instances/o-1")
    await expect(page.locator("#token-dialog")).to_be_visible()
    await expect(page.locator("#token-message")).to_have_text(
        "This host requires a token for its API."
    )
    await page.fill("#token-input", "wrong")
    await page.click("#token-form button")
    await expect(page.locator("#token-message")).to_contain_text("refused the token: invalid token")
    await page.fill("#token-input", TOKEN)
    await page.click("#token-form button")
    await expect(page.locator(".tl-row")).to_have_count(4)
    assert await page.evaluate("sessionStorage.getItem('durableflow.token')") == TOKEN
    await expect(page.locator("[data-action=pause]")).to_be_enabled()


@needs_chromium
@pytest.mark.slow
async def test_browser_timeline_zooms_and_shortens_idle_gaps(
    dash_host: HostProcess, page: Page, tmp_path: Path
) -> None:
    """A 500-step instance with a sleep among its steps: the gap is a break in the axis,
    zoom and pan change the range in view, and hovering names the exact time."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, dash_host.url)
        body = {"id": "big", "params": {"n": 500, "nap_ms": 1500}}
        await api.ok("POST", "/api/workflows/long/instances", body, 201)
        await api.wait_status("long", "big", "waiting", timeout=60)

        async def waits_for_go() -> Any:
            detail = await api.ok("GET", "/api/workflows/long/instances/big")
            return len(detail["steps"]) == 502 and detail["steps"][-1]["type"] == "wait_for_event"

        await eventually(waits_for_go, timeout=60, message="big waits for its event")
    await page.goto(dash_host.url + "/dashboard#/workflows/long/instances/big")
    await expect(page.locator(".tl-row")).to_have_count(502, timeout=30_000)
    timeline = page.locator("#timeline")
    await expect(timeline).to_have_class(re.compile(r"\bcompact\b"))
    # the sleep (and the open wait) are idle gaps: breaks in the axis, not most of the width
    await expect(timeline.locator(".axis .break").first).to_be_visible()
    steps_range = page.locator(".title-row.tight .muted")
    await expect(steps_range).to_contain_text("shortened")
    assert "in view" not in (await steps_range.text_content() or "")
    lefts = """[...document.querySelectorAll('.tl-row')].filter(r => r.querySelector('.seg'))
        .map(r => [r.dataset.step, r.querySelector('.seg').getBoundingClientRect().left])"""

    await page.uncheck("#auto")  # the scale of a live instance grows with time: hold it still
    before = dict(await page.evaluate(lefts))

    # zoom in and out with the buttons; ctrl + wheel zooms where the pointer is
    await page.click("button[aria-label='zoom in']")
    await expect(steps_range).to_contain_text("in view")
    await page.click("button[aria-label='show everything']")
    await expect(steps_range).not_to_contain_text("in view")
    track = timeline.locator('.tl-row[data-step="prepare 0"] .track')
    box = await track.bounding_box()
    assert box is not None
    # around the middle of the steps before the sleep
    middle = (before["prepare 0"] + before["prepare 249"]) / 2

    async def spread_out() -> bool:
        # the steps still in view moved apart: at least 2.5 times their distance before
        after = dict(await page.evaluate(lefts))
        shown = sorted((n for n in after if n.startswith("prepare ")), key=lambda n: after[n])
        if len(shown) < 2:
            return False
        was = before[shown[-1]] - before[shown[0]]
        return bool(after[shown[-1]] - after[shown[0]] > max(2.5 * was, 20))

    # a busy machine may coalesce synthesized wheel input: the gesture is repeated (up to
    # three times) until the view has zoomed, which is what is asserted
    for attempt in range(3):
        await page.mouse.move(middle, box["y"] + box["height"] / 2)
        await page.keyboard.down("Control")
        for _ in range(8):
            await page.mouse.wheel(0, -100)
        await page.keyboard.up("Control")
        try:
            await eventually(
                spread_out, timeout=5, message="the first steps spread out when zoomed"
            )
            break
        except AssertionError:
            if attempt == 2:
                raise
    # hovering a track names the time there, to the millisecond; a segment its exact times
    await page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2)
    await expect(page.locator("#tl-hover")).to_have_text(re.compile(r"\d\d:\d\d:\d\d\.\d{3} \(\+"))
    title = await timeline.locator('.tl-row[data-step^="prepare"] .seg').first.get_attribute(
        "title"
    )
    assert title is not None and re.search(r"\d\d:\d\d:\d\d\.\d{3} → \d\d:\d\d:\d\d\.\d{3}", title)
    # dragging pans: the range in view moves; a double-click fits everything again
    zoomed = await steps_range.text_content()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] / 4, box["y"] + box["height"] / 2, steps=5)
    await page.mouse.up()
    await expect(steps_range).not_to_have_text(zoomed or "")
    await expect(page.locator(".tl-detail")).to_have_count(0)  # a drag opens no step
    await page.dblclick('.tl-row[data-step="prepare 3"] .track')
    await expect(steps_range).not_to_contain_text("in view")


@needs_chromium
@pytest.mark.slow
async def test_browser_timeline_screenshot(
    dash_host: HostProcess, page: Page, tmp_path: Path
) -> None:
    """A few steps around a sleep, zoomed on the first ones, with the time under the pointer."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, dash_host.url)
        body = {"id": "small", "params": {"n": 6, "nap_ms": 1500, "work_ms": 40}}
        await api.ok("POST", "/api/workflows/long/instances", body, 201)

        async def waits_for_go() -> Any:
            detail = await api.ok("GET", "/api/workflows/long/instances/small")
            return len(detail["steps"]) == 8 and detail["status"] == "waiting"

        await eventually(waits_for_go, timeout=30, message="small waits for its event")
    await page.goto(dash_host.url + "/dashboard#/workflows/long/instances/small")
    await expect(page.locator(".tl-row")).to_have_count(8)
    await page.uncheck("#auto")  # a still picture
    await expect(page.locator("#timeline .axis .break").first).to_be_visible()
    await page.locator('.tl-row[data-step="nap"]').click()
    track = await page.locator('.tl-row[data-step="prepare 0"] .track').bounding_box()
    assert track is not None
    await page.mouse.move(track["x"] + track["width"] * 0.3, track["y"] + 10)
    await page.keyboard.down("Control")
    await page.mouse.wheel(0, -150)
    await page.keyboard.up("Control")
    await expect(page.locator(".title-row.tight .muted")).to_contain_text("in view")
    await page.mouse.move(track["x"] + track["width"] * 0.4, track["y"] + 30)
    await expect(page.locator("#tl-hover")).not_to_be_empty()
    await screenshot(page.locator("#timeline").locator(".."), "dashboard-timeline.png", tmp_path)


@needs_chromium
@pytest.mark.slow
async def test_browser_renders_user_strings_as_text(dash_host: HostProcess, page: Page) -> None:
    """Markup in params, step names, outputs and errors is shown as text, never as elements."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, dash_host.url)
        body = {
            "instances": [
                {"id": "ok", "params": {"label": MARKUP}},
                {"id": "bad", "params": {"label": MARKUP, "error": True}},
            ]
        }
        await api.ok("POST", "/api/workflows/markup/instances/batch", body, 201)
        await api.wait_status("markup", "ok", "complete")
        await api.wait_status("markup", "bad", "errored")
    markup_elements = "document.querySelectorAll('main img, main b, main script').length"
    await page.goto(dash_host.url + "/dashboard#/workflows/markup")
    await expect(rows_of(page)).to_have_count(2)
    await expect(page.locator('#instances tr[data-id="bad"] td.err')).to_have_text(
        f"RuntimeError: run failed: {MARKUP}"
    )
    for id in ("ok", "bad"):
        await page.goto(dash_host.url + f"/dashboard#/workflows/markup/instances/{id}")
        await expect(page.locator(".tl-row")).to_have_count(2)
        names = await page.locator(".tl-row .n").all_text_contents()
        assert names == [f"echo {MARKUP}", f"fail {MARKUP}"]
        await page.locator('.tl-row[data-type="do"]').nth(1).click()
        await expect(page.locator(".tl-detail .error-box")).to_have_text(
            f"NonRetryableError: step failed: {MARKUP}"
        )
        assert json.loads(await page.text_content("#params") or "") == {
            "label": MARKUP,
            **({"error": True} if id == "bad" else {}),
        }
        assert await page.evaluate(markup_elements) == 0
    await expect(page.locator("#instance-error")).to_have_text(
        f"RuntimeError: run failed: {MARKUP}"
    )
    await page.goto(dash_host.url + "/dashboard#/workflows/markup/instances/ok")
    await expect(page.locator("#output")).to_contain_text('"out": ')
    output = await page.text_content("#output")
    assert json.loads(output or "null") == {"out": MARKUP}
    assert await page.evaluate(markup_elements) == 0
    assert await page.evaluate("window.__xss === undefined")


@needs_chromium
@pytest.mark.slow
async def test_browser_shows_versions_and_why_an_instance_is_blocked(
    hosts: HostFactory, tmp_path: Path, page: Page
) -> None:
    """The list shows each instance's version and filters by it; the detail of an instance
    whose version has no code on the host says so."""
    project = copy_project(tmp_path / "project", Path(__file__).with_name("versions_project"))
    config = project / "durableflow.toml"
    host = hosts.start(project)
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "old"}, 201)
        await api.wait_status("orders", "old", "waiting")
    assert host.stop() == 0
    config.write_text(config.read_text().replace('"OrdersV1"', '"OrdersV2"'))
    host = hosts.start(project)
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "new"}, 201)
        await api.wait_status("orders", "new", "waiting")

    await page.goto(host.url + "/dashboard#/workflows/orders")
    await expect(rows_of(page)).to_have_count(2)
    await expect(page.locator('#instances tr[data-id="old"] td.version')).to_have_text("v1")
    await expect(page.locator('#instances tr[data-id="new"] td.version')).to_have_text("v2")
    await page.fill("#filter-version", "v1")
    await expect(rows_of(page)).to_have_count(1)
    assert await ids_of(page) == ["old"]
    assert page.url.endswith("#/workflows/orders?version=v1")

    await page.goto(host.url + "/dashboard#/workflows/orders/instances/old")
    await expect(page.locator("#instance-version")).to_have_text("v1")
    await expect(page.locator("#blocked")).to_have_text("no code for version 'v1' on this host")
