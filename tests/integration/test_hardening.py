"""A real host under hostile input: cross-site requests, odd bytes, idle floods, bad queries.

Each test is the regression test of one defect found by attacking the host; every
request goes over a real socket to a real ``durableflow serve`` process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import eventually

from .conftest import Api, HostFactory, HostProcess, copy_project

BASE = "/api/workflows"
EVIL = "http://evil.example"


def _configure(project: Path, server: str) -> Path:
    toml = project / "durableflow.toml"
    toml.write_text(toml.read_text() + f"\n[server]\n{server}\n")
    return project


@pytest.fixture(scope="module")
def guarded_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """A host without a token (the loopback default) that lets one other origin in,
    with a short idle timeout and a small connection cap."""
    project = copy_project(tmp_path_factory.mktemp("guarded") / "project")
    _configure(
        project,
        'cors_origins = ["https://app.example.com"]\n'
        'idle_timeout = "1 second"\nmax_connections = 32',
    )
    factory = HostFactory()
    try:
        yield factory.start(project)
    finally:
        factory.close()


@pytest.fixture
async def guarded(guarded_host: HostProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Api(session, guarded_host.url)


def _address(host: HostProcess) -> tuple[str, int]:
    hostport = host.url.removeprefix("http://")
    name, _, port = hostport.rpartition(":")
    return name, int(port)


def _raw(host: HostProcess, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; everything the host answers until it closes."""
    with socket.create_connection(_address(host), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


# --- cross-site request forgery ---------------------------------------------------------
async def test_cross_site_control_is_refused(guarded: Api) -> None:
    """A page on another origin cannot terminate an instance, with or without a body."""
    await guarded.ok("POST", f"{BASE}/waiter/instances", {"id": "csrf-1"}, 201)
    await guarded.wait_status("waiter", "csrf-1", "waiting")
    path = f"{BASE}/waiter/instances/csrf-1/terminate"
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        status, answer = await guarded.call("POST", path, headers=headers)
        assert status == 403, (headers, answer)
        assert answer["error"]["code"] == "forbidden"
        assert "cors_origins" in answer["error"]["message"]
    # a page on this machine's other port is "same-site", not the same origin
    status, _ = await guarded.call("POST", path, headers={"Sec-Fetch-Site": "same-site"})
    assert status == 403
    assert (await guarded.ok("GET", f"{BASE}/waiter/instances/csrf-1"))["status"] == "waiting"
    # the dashboard's own requests (same origin) still work
    own = guarded.base
    status, _ = await guarded.call(
        "POST", path, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}
    )
    assert status == 200


async def test_a_body_must_be_json(guarded: Api) -> None:
    """A text/plain or form body (what a cross-site form or no-cors fetch sends) is 415."""
    body = json.dumps({"id": "csrf-text"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, answer = await guarded.call(
            "POST", f"{BASE}/echo/instances", data=body, headers={"Content-Type": content_type}
        )
        assert status == 415, answer
        assert answer["error"]["code"] == "unsupported_media_type"
    status, _ = await guarded.call("GET", f"{BASE}/echo/instances/csrf-text")
    assert status == 404  # nothing was created
    status, _ = await guarded.call(
        "POST",
        f"{BASE}/echo/instances",
        data=json.dumps({"id": "csrf-json", "params": {"name": "x"}}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert status == 201


async def test_listed_origins_get_cors(guarded: Api) -> None:
    """An origin in [server] cors_origins gets its preflight granted and CORS headers;
    any other origin's preflight is refused."""
    app = "https://app.example.com"
    path = f"{BASE}/echo/instances"
    preflight = {
        "Origin": app,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with guarded.session.options(guarded.base + path, headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == app
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    async with guarded.session.options(
        guarded.base + path, headers={**preflight, "Origin": EVIL}
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    async with guarded.session.post(
        guarded.base + path,
        json={"id": "cors-1", "params": {"name": "y"}},
        headers={"Origin": app, "Sec-Fetch-Site": "cross-site"},
    ) as response:
        assert response.status == 201
        assert response.headers["Access-Control-Allow-Origin"] == app


async def test_a_foreign_host_name_is_refused_without_a_token(guarded: Api) -> None:
    """Without a token, /api answers only requests addressed to this machine (no DNS
    rebinding); /healthz stays open."""
    status, answer = await guarded.call(
        "POST", f"{BASE}/echo/instances", {"id": "rebind"}, headers={"Host": "evil.example"}
    )
    assert status == 403 and "Host" in answer["error"]["message"]
    status, _ = await guarded.call("GET", "/metrics", headers={"Host": "evil.example"})
    assert status == 403  # what the host runs is not for a rebound page to read either
    status, _ = await guarded.call("GET", "/healthz", headers={"Host": "evil.example"})
    assert status == 200


async def test_options_and_head_answer_as_http_says(guarded: Api) -> None:
    """OPTIONS lists a route's methods; HEAD works wherever GET does, without a body."""
    async with guarded.session.options(guarded.base + f"{BASE}/echo/instances") as response:
        assert response.status == 204
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    for path in ("/healthz", BASE, "/api/openapi.json", f"{BASE}/echo/instances"):
        async with guarded.session.head(guarded.base + path) as response:
            assert response.status == 200, path
            assert await response.read() == b""


async def test_batch_is_not_an_instance_id(guarded: Api) -> None:
    """GET .../instances/batch is 405 (POST only), and 'batch' cannot be an instance id."""
    status, answer = await guarded.call("GET", f"{BASE}/echo/instances/batch")
    assert status == 405 and answer["error"]["code"] == "method_not_allowed"
    status, answer = await guarded.call("POST", f"{BASE}/echo/instances", {"id": "batch"})
    assert status == 400 and "reserved" in answer["error"]["message"]


# --- connections ------------------------------------------------------------------------
async def test_idle_connections_are_closed(guarded_host: HostProcess) -> None:
    """A connection that never sends a request, or stops half-way through its headers,
    is closed after [server] idle_timeout."""
    loop = asyncio.get_running_loop()

    def closed_after(data: bytes) -> float:
        start = time.monotonic()
        with socket.create_connection(_address(guarded_host), timeout=20) as sock:
            sock.sendall(data)
            assert sock.recv(1024) == b""  # EOF: the host closed it
        return time.monotonic() - start

    silent, partial = await asyncio.gather(
        loop.run_in_executor(None, closed_after, b""),
        loop.run_in_executor(None, closed_after, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
    )
    assert silent < 10 and partial < 10, (silent, partial)


async def test_an_idle_flood_does_not_stop_healthz(guarded_host: HostProcess) -> None:
    """Far more idle connections than [server] max_connections: /healthz still answers,
    and the host says once that the limit was reached."""
    socks = []
    try:
        for _ in range(300):
            sock = socket.create_connection(_address(guarded_host), timeout=5)
            socks.append(sock)
        answer = _raw(
            guarded_host, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        status, _, body = _split(answer)
        assert status == 200 and json.loads(body) == {"status": "ok"}
    finally:
        for sock in socks:
            sock.close()
    await eventually(
        lambda: "connection limit of 32 reached" in guarded_host.output(),
        message="the connection limit is logged",
    )


# --- bytes that used to reach a 500 -----------------------------------------------------
async def test_protocol_errors_answer_json_and_echo_nothing(guarded_host: HostProcess) -> None:
    """A bad request line, method or path bytes answer the JSON error shape without
    echoing the request."""
    probes = [
        b"GARBAGE<script>\r\n\r\n",
        b"G<E>T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/\x01<script> HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad<script>Header\x7f: 1\r\n\r\n",
    ]
    for probe in probes:
        status, headers, body = _split(_raw(guarded_host, probe))
        assert status == 400, probe
        assert headers["content-type"].startswith("application/json"), probe
        assert json.loads(body)["error"]["code"] == "invalid_request"
        assert b"script" not in body


async def test_a_client_gone_mid_body_is_not_an_error(guarded_host: HostProcess) -> None:
    """A client that disconnects half-way through its body leaves no ERROR and no
    traceback in the host's log."""
    request = (
        f"POST {BASE}/echo/instances HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id": '
    ).encode()
    for _ in range(3):
        with socket.create_connection(_address(guarded_host), timeout=5) as sock:
            sock.sendall(request)
    # a later request shows the host has handled the disconnects
    answer = _raw(guarded_host, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _split(answer)[0] == 200
    await asyncio.sleep(0)  # the log is written by the host process, not this loop
    log = guarded_host.output()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]


async def test_odd_bytes_in_the_token_are_401(tmp_path: Path, hosts: HostFactory) -> None:
    """An Authorization header with invalid UTF-8 is 401 (it was a 500), only the Bearer
    scheme is accepted, and the token never appears in the log."""
    token = "t0ken-Secret-42"
    project = _configure(copy_project(tmp_path / "p"), f'token = "{token}"')
    host = hosts.start(project, "--access-log", token=token)
    for header in (
        b"Bearer \xff\xfe",
        b"Bearer " + token.encode() + b"\xff",
        b"Basic " + token.encode(),
    ):
        answer = _raw(
            host,
            b"GET /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: " + header + b"\r\n\r\n",
        )
        status, _, body = _split(answer)
        assert status == 401, (header, body)
        assert json.loads(body)["error"]["code"] == "unauthorized"
    status, _, _ = _split(
        _raw(
            host,
            b"GET /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: bEaReR " + token.encode() + b"\r\n\r\n",
        )
    )
    assert status == 200
    assert token not in host.output()
    assert "Traceback" not in host.output()


# --- input that used to reach a 500, on both stores --------------------------------------
async def test_cursor_and_integers_are_parsed_strictly(api: Api) -> None:
    """A cursor past 64-bit range reads from the newest (it was a 500); one that is not a
    decimal of at most 19 digits, and integers Python would bend (1_0, ' 5', '٣'), are 400s
    that name the parameter."""
    path = f"{BASE}/echo/instances"
    await api.ok("POST", path, {"id": "cur-1", "params": {"name": "c"}}, 201)
    page = await api.ok("GET", f"{path}?cursor=9999999999999999999&limit=1000")
    assert "cur-1" in [i["id"] for i in page["instances"]]
    for cursor in ("-1", "1e3", "99999999999999999999999", "%D9%A3"):
        status, answer = await api.call("GET", f"{path}?cursor={cursor}")
        assert status == 400, (cursor, answer)
        assert "cursor" in answer["error"]["message"]
    for limit in ("1_0", "%205", "%D9%A3", "10.0"):
        status, answer = await api.call("GET", f"{path}?limit={limit}")
        assert status == 400, (limit, answer)
        assert "'limit'" in answer["error"]["message"]
    status, answer = await api.call("GET", f"{BASE}/echo/instances/x/result?timeout=1_0")
    assert status == 400 and "'timeout'" in answer["error"]["message"]


async def test_deep_json_is_a_400_everywhere(api: Api) -> None:
    """JSON nested from 129 to 1023 levels is a 400 on create, batch and events (it was a
    500 from a RecursionError between 330 and 1023)."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "deep-w"}, 201)
    for depth in (129, 330, 700, 1023):
        deep = "[" * depth + "]" * depth
        for path, body in (
            (f"{BASE}/echo/instances", '{"params": ' + deep + "}"),
            (f"{BASE}/echo/instances/batch", '{"instances": [{"params": ' + deep + "}]}"),
            (f"{BASE}/waiter/instances/deep-w/events/go", deep),
        ):
            status, answer = await api.call("POST", path, data=body)
            assert status == 400, (depth, path, answer)
            assert "nested" in answer["error"]["message"] or "JSON" in answer["error"]["message"]
    detail = await api.ok("GET", f"{BASE}/waiter/instances/deep-w")
    assert detail["status"] in ("queued", "running", "waiting")


async def test_ids_and_types_are_matched_whole(api: Api) -> None:
    """An id or event type ending in a newline is refused (the pattern matched up to a
    final newline), and a null id is not a missing one."""
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {"id": "nl2\n"})
    assert status == 400, answer
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {"id": None})
    assert status == 400 and "'id' must be a string" in answer["error"]["message"]
    status, answer = await api.call(
        "POST", f"{BASE}/echo/instances/batch", {"instances": [{"id": None}]}
    )
    assert status == 400 and "instances[0].id" in answer["error"]["message"]
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "nl-w"}, 201)
    status, answer = await api.call("POST", f"{BASE}/waiter/instances/nl-w/events/approve%0A", {})
    assert status == 400 and "event type" in answer["error"]["message"]
