"""The dashboard page of a real host: served without a token, self-contained, and in a browser."""

from __future__ import annotations

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

from durableflow_runtime.config import ConfigError, load_config
from durableflow_runtime.dashboard import page, page_headers
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
    [script] = re.findall(r"<script>(.*?)</script>", page().decode(), re.DOTALL)
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
    assert body == page()
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
    text = page().decode()
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
    """The OpenAPI document describes /api and /healthz only: the page is not API."""
    paths = build_openapi()["paths"]
    assert not [p for p in paths if "dashboard" in p or p == "/"]
    assert all(p == "/healthz" or p.startswith("/api/") for p in paths)


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
    assert status == 200 and body == page()


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
    assert status == 200 and body == page()


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


class Browser:
    """Headless chromium driven over the DevTools protocol: evaluate script in the page."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        self.profile = profile
        self.log = (profile.parent / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(profile)},
        )
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.calls = 0

    async def open(self, url: str) -> None:
        """Connect to the browser's page and load ``url``."""
        active = self.profile / "DevToolsActivePort"
        port = await eventually(
            lambda: active.exists() and active.read_text().split("\n")[0].strip(),
            timeout=30,
            message="chromium to open its DevTools port",
        )
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        [page_target] = [t for t in targets if t["type"] == "page"]
        self.ws = await self.session.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.navigate", url=url)
        await self.until(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"chromium to load {url}",
        )

    async def call(self, method: str, **params: Any) -> Any:
        assert self.ws is not None
        self.calls += 1
        await self.ws.send_json({"id": self.calls, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == self.calls:
                assert "error" not in message, message
                return message["result"]

    async def js(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def until(self, expression: str, message: str, timeout: float = 15.0) -> Any:
        """Wait until ``expression`` is truthy in the page (an exception counts as not yet)."""

        async def check() -> Any:
            result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            return None if "exceptionDetails" in result else result["result"].get("value")

        return await eventually(check, timeout=timeout, interval=0.05, message=message)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless chromium, closed at the end of the test."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    driven = Browser(profile)
    try:
        yield driven
    finally:
        await driven.close()


def text_of(selector: str) -> str:
    """Script for the text of the first element matching ``selector`` ("" when none)."""
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).textContent || '')"


def click(selector: str) -> str:
    """Script that clicks the first element matching ``selector``."""
    return f"document.querySelector({json.dumps(selector)}).click(), true"


def fill(selector: str, value: str) -> str:
    """Script that sets the value of the first element matching ``selector``."""
    return f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}, true"


@needs_chromium
@pytest.mark.slow
async def test_browser_token_controls_and_events(
    hosts: HostFactory, tmp_path: Path, browser: Browser
) -> None:
    """In chromium the page asks for the token, steers the instance, and shows refusals."""
    host = hosts.start(timeline_project(tmp_path / "project", server=f'token = "{TOKEN}"'))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        api = Api(session, host.url)
        await api.ok("POST", "/api/workflows/orders/instances", {"id": "o-1"}, 201)
        await api.wait_status("orders", "o-1", "waiting")
    await browser.open(host.url + "/dashboard#/workflows/orders/instances/o-1")

    # the API answers 401: the page asks for the token, and again when it is refused
    await browser.until("!document.getElementById('token-dialog').hidden", "the token dialog")
    assert await browser.js(text_of("#token-message")) == "This host requires a token for its API."
    await browser.js(fill("#token-input", "wrong") + ";" + click("#token-form button"))
    await browser.until(
        text_of("#token-message") + ".includes('refused the token: invalid token')",
        "the refusal of a wrong token",
    )
    await browser.js(fill("#token-input", TOKEN) + ";" + click("#token-form button"))
    await browser.until(
        "document.querySelectorAll('.tl-row').length === 4", "the timeline, with the token"
    )
    assert await browser.js(f"sessionStorage.getItem('durableflow.token') === '{TOKEN}'")

    # controls: a pause, a resume, then a resume the host refuses, with its message
    status_message = text_of(".title-row + .msg")
    await browser.js(click("[data-action=pause]"))
    await browser.until(text_of(".title-row .badge") + " === 'paused'", "the paused badge")
    assert await browser.js(status_message) == "pause: now paused"
    await browser.js(click("[data-action=resume]"))
    await browser.until(f"{status_message}.startsWith('resume: now')", "the resume")
    await browser.js(click("[data-action=resume]"))
    refused = await browser.until(
        f"{status_message}.startsWith('resume refused') && {status_message}", "the refused resume"
    )
    assert refused.startswith("resume refused: cannot resume instance 'o-1'")
    assert refused.endswith("not paused")

    # an event: bad JSON stays in the page; a good one completes the instance
    event_form = "form.panel.inline"
    await browser.js(fill(f"{event_form} input", "approval"))
    await browser.js(fill(f"{event_form} textarea", "{not json"))
    await browser.js(click(f"{event_form} button[type=submit]"))
    assert (await browser.js(text_of(f"{event_form} .msg"))).startswith("payload is not valid JSON")
    await browser.js(fill(f"{event_form} textarea", '{"by": "ada"}'))
    await browser.js(click(f"{event_form} button[type=submit]"))
    await browser.until(text_of(".title-row .badge") + " === 'complete'", "the instance completes")
    await browser.until(text_of("#output") + ".includes('\"approval\": {')", "the output")
    rows = await browser.js(
        "[...document.querySelectorAll('.tl-row')].map(r => r.dataset.status).join(',')"
    )
    assert rows == "complete,complete,complete,complete"

    # terminate asks first; the host refuses to terminate a complete instance
    await browser.js("window.confirm = () => true, true")
    await browser.js(click("[data-action=terminate]"))
    await browser.until(
        text_of(".title-row + .msg") + ".startsWith('terminate refused')", "the refused terminate"
    )


@needs_chromium
@pytest.mark.slow
async def test_browser_pages_and_filters_instances(
    hosts: HostFactory, tmp_path: Path, browser: Browser
) -> None:
    """In chromium the list shows 50 instances, loads the rest on demand, and filters by status."""
    host = hosts.start(timeline_project(tmp_path / "project"))
    async with aiohttp.ClientSession() as session:
        api = Api(session, host.url)
        batch = {"instances": [{"id": f"i-{n:03d}"} for n in range(60)]}
        await api.ok("POST", "/api/workflows/orders/instances/batch", batch, 201)
    await browser.open(host.url + "/dashboard#/workflows/orders")
    rows = "[...document.querySelectorAll('#instances tbody tr')].map(r => r.dataset.id)"
    first = await browser.until(f"{rows}.length === 50 && {rows}", "the first page")
    assert first == [f"i-{n:03d}" for n in range(59, 9, -1)]
    assert await browser.js(text_of(".more")) == "Load more50 shown, more available"
    await browser.js(click(".more button"))
    everything = await browser.until(f"{rows}.length === 60 && {rows}", "the second page")
    assert everything == [f"i-{n:03d}" for n in range(59, -1, -1)]
    assert await browser.js("document.querySelector('.more button').hidden")
    # the next refresh (every 2 s) keeps all 60, and a filter narrows the list
    seen = await browser.js(text_of("#conn"))
    await browser.until(f"{text_of('#conn')} !== {json.dumps(seen)}", "a refresh", timeout=10)
    assert len(await browser.js(rows)) == 60
    await browser.js("location.hash = '#/workflows/orders?status=complete', true")
    await browser.until(text_of("#instances tbody") + " === 'No complete instance.'", "filtered")
