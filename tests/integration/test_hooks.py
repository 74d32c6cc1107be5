"""Hooks (waits resumed by a token) and webhooks (URLs outside services call), through
real hosts over HTTP, on SQLite and on PostgreSQL, across a kill -9 and across hosts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from durableflow import Client, HmacSignature, NotFoundError, SyncClient, ValidationError
from tests.helpers import eventually

from .conftest import PG_DSN, HostFactory, HostProcess, _pg, copy_project, require_postgres, run_cli

PROJECT = Path(__file__).with_name("hooks_project")
GITHUB = HmacSignature.github("gh-secret")
STRIPE = HmacSignature.stripe("whsec_test")

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The ``serve`` arguments of a fresh store: a SQLite file in the project, or a new
    PostgreSQL schema."""
    if request.param == "sqlite":
        yield []
        return
    require_postgres(_pg("SELECT 1"))
    schema = f"hooks_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in PG_DSN else "?"
    try:
        yield ["--storage", f"{PG_DSN}{separator}schema={schema}"]
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project", PROJECT)


class Caller:
    """HTTP to one host: JSON for /api, raw requests for webhooks."""

    def __init__(self, session: aiohttp.ClientSession, host: HostProcess) -> None:
        self.session = session
        self.url = host.url

    async def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        async with self.session.request(method, self.url + path, **kwargs) as response:
            raw = await response.read()
            assert response.content_type == "application/json", raw[:200]
            return response.status, await response.json()

    async def create(self, workflow: str, id: str, params: Any) -> None:
        status, body = await self.json(
            "POST", f"/api/workflows/{workflow}/instances", {"id": id, "params": params}
        )
        assert status == 201, body

    async def detail(self, workflow: str, id: str) -> Any:
        status, body = await self.json("GET", f"/api/workflows/{workflow}/instances/{id}")
        assert status == 200, body
        return body

    async def step(self, workflow: str, id: str, name: str, status: str) -> Any:
        """Wait until the instance's step ``name`` has ``status``; the step."""

        async def reached() -> Any:
            steps = (await self.detail(workflow, id))["steps"]
            found = [s for s in steps if s["name"] == name and s["status"] == status]
            return found[0] if found else None

        return await eventually(reached, timeout=20, message=f"{id}: {name} is {status}")

    async def ended(self, workflow: str, id: str) -> Any:
        """Wait until the instance is complete; its output."""

        async def done() -> Any:
            detail = await self.detail(workflow, id)
            assert detail["status"] not in ("errored", "terminated"), detail
            return detail if detail["status"] == "complete" else None

        return (await eventually(done, timeout=20, message=f"{id} completes"))["output"]

    async def webhook_url(self, id: str, workflow: str = "payment") -> str:
        """The URL the instance ``id`` (of ``payment`` by default) announced."""
        url: str = (await self.step(workflow, id, "announce", "complete"))["output"]
        return url

    async def call_webhook(
        self, url: str, body: bytes, headers: dict[str, str], method: str = "POST"
    ) -> tuple[int, bytes]:
        """Send raw bytes to a webhook's URL on this host, as a provider would."""
        token = url.rsplit("/", 1)[1]
        async with self.session.request(
            method, f"{self.url}/hooks/{token}?source=test", data=body, headers=headers
        ) as response:
            return response.status, await response.read()


async def _caller(host: HostProcess) -> tuple[aiohttp.ClientSession, Caller]:
    session = aiohttp.ClientSession()
    return session, Caller(session, host)


async def test_a_hook_is_resumed_by_its_token_and_its_payload_is_typed(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """POST /api/hooks/{token} resumes the wait that registered the token: a payload that
    does not fit the wait's payload_type is refused with 400 naming the field, a token
    nobody waits on (yet, or any more) is 404, and a live token cannot be taken twice."""
    host = hosts.start(project, *storage)
    session, api = await _caller(host)
    async with session:
        status, body = await api.json("POST", "/api/hooks/approval:1", {"approved": True})
        assert status == 404, body  # not registered yet: refused, not kept
        await api.create("approval", "o-1", {"order": 1})
        wait = await api.step("approval", "o-1", "decision", "waiting")
        assert wait["hook_token"] == "approval:1" and wait["event_type"] == "decision"
        schema = wait["payload_schema"]["$defs"]["Decision"]
        assert set(schema["required"]) == {"approved", "by"}, wait

        await api.create("approval", "o-1-again", {"order": 1})
        assert await api.ended("approval", "o-1-again") == {"failed": "TokenInUseError"}

        status, body = await api.json("POST", "/api/hooks/approval:1", {"approved": True})
        assert status == 400, body
        assert "payload.by" in body["error"]["message"]
        status, body = await api.json("POST", "/api/hooks/bad token!", {})
        assert status in (400, 404), body
        status, body = await api.json(
            "POST", "/api/hooks/approval:1", {"approved": True, "by": "ann"}
        )
        assert (status, body) == (202, {"workflow": "approval", "instance_id": "o-1"})
        assert await api.ended("approval", "o-1") == {"approved": True, "by": "ann"}
        status, body = await api.json("POST", "/api/hooks/approval:1", {"approved": True})
        assert status == 404, body  # resumed already

        # in-process, any binding resumes any hook (a user route of the host)
        await api.create("approval", "o-4", {"order": 4})
        await api.step("approval", "o-4", "decision", "waiting")
        async with session.post(
            f"{host.url}/decide/4", json={"approved": True, "by": "gus"}
        ) as response:
            assert response.status == 200, await response.text()
            assert await response.json() == {
                "id": "o-4",
                "output": {"approved": True, "by": "gus"},
            }

        # the token is free again once its wait is over
        await api.create("approval", "o-1-later", {"order": 1})
        await api.step("approval", "o-1-later", "decision", "waiting")
        async with Client(host.url) as client:
            instance = await client.resume_hook("approval:1", {"approved": False, "by": "bo"})
            assert instance.id == "o-1-later"
            assert await instance.result(timeout=20) == {"approved": False, "by": "bo"}
            with pytest.raises(NotFoundError):
                await client.resume_hook("approval:1", {"approved": False, "by": "bo"})


def test_hooks_are_resumed_by_the_sync_client_and_the_cli(
    hosts: HostFactory, project: Path
) -> None:
    """SyncClient.resume_hook and ``durableflow hooks resume TOKEN --payload`` resume hooks;
    a bad payload is a ValidationError / a failing command naming the field."""
    host = hosts.start(project)
    with SyncClient(host.url) as client:
        for order in (2, 3):
            client.workflow("approval").create(id=f"o-{order}", params={"order": order})

        def waiting(id: str) -> bool:
            steps = client.workflow("approval").get(id).describe()["steps"]
            return any(s["name"] == "decision" and s["status"] == "waiting" for s in steps)

        deadline = time.monotonic() + 20
        while not (waiting("o-2") and waiting("o-3")):
            assert time.monotonic() < deadline, "the hooks were not registered"
            time.sleep(0.05)
        with pytest.raises(ValidationError, match=r"payload\.approved"):
            client.resume_hook("approval:2", {"by": "cy"})
        instance = client.resume_hook("approval:2", {"approved": True, "by": "cy"})
        assert instance.result(timeout=20) == {"approved": True, "by": "cy"}

        bad = run_cli("hooks", "resume", "approval:3", "--payload", "{}", "--url", host.url)
        assert bad.returncode != 0 and "payload" in bad.stderr, bad
        done = run_cli(
            "hooks",
            "resume",
            "approval:3",
            "--payload",
            '{"approved": true, "by": "di"}',
            "--url",
            host.url,
        )
        assert done.returncode == 0, done
        assert "resumed instance o-3 of approval" in done.stdout
        assert client.workflow("approval").get("o-3").result(timeout=20) == {
            "approved": True,
            "by": "di",
        }


async def test_a_typed_event_is_checked_when_sent_or_when_taken(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """An event sent to a registered typed wait that does not fit is refused (400); one
    buffered before the wait existed fails the step with ValidationError when taken."""
    host = hosts.start(project, *storage)
    session, api = await _caller(host)
    async with session:
        await api.create("typed", "early", {"sleep_ms": 1500})
        status, body = await api.json(
            "POST", "/api/workflows/typed/instances/early/events/decision", {"approved": "no"}
        )
        assert status == 202, body  # buffered: no wait is registered yet
        output = await api.ended("typed", "early")
        assert "payload" in output["invalid"], output
        step = await api.step("typed", "early", "decision", "failed")
        assert step["error"]["name"] == "ValidationError"

        await api.create("typed", "late", {})
        await api.step("typed", "late", "decision", "waiting")
        path = "/api/workflows/typed/instances/late/events/decision"
        status, body = await api.json("POST", path, {"approved": True})
        assert status == 400 and "payload.by" in body["error"]["message"], body
        status, body = await api.json("POST", path, {"approved": True, "by": "ed"})
        assert status == 202, body
        assert await api.ended("typed", "late") == {"approved": True, "by": "ed"}


async def test_a_webhook_takes_a_raw_request_of_any_type_once(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """A webhook's URL (under [server] public_url) takes one POST/PUT/PATCH of any content
    type, cross-site and without a bearer token, answers with empty bodies, and hands the
    request to the instance byte for byte."""
    host = hosts.start(project, *storage, token="api-token")
    session, _ = await _caller(host)
    async with session:
        api = Caller(aiohttp.ClientSession(headers=host.headers()), host)
        async with api.session:
            await api.create("payment", "p-raw", {})
            url = await api.webhook_url("p-raw")
            assert url.startswith("https://flows.example.com/base/hooks/")
            hook = Caller(session, host)  # no bearer token
            status, _ = await hook.call_webhook(url, b"", {}, method="GET")
            assert status == 405
            raw = b"amount=12&currency=eur&note=caf%C3%A9 <script>"
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://provider.example",
                "Sec-Fetch-Site": "cross-site",
            }
            big = b"x" * (800 * 1024)  # base64 in the stored request: over the 1 MiB payload
            assert await hook.call_webhook(url, big, headers) == (413, b"")
            assert await hook.call_webhook(url, raw, headers, method="PUT") == (202, b"")
            assert await hook.call_webhook(url, raw, headers) == (410, b"")
            unknown = url.rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAAAAAAAA"
            assert await hook.call_webhook(unknown, raw, headers) == (404, b"")
            output = await api.ended("payment", "p-raw")
            assert output == {
                "method": "PUT",
                "query": {"source": "test"},
                "content_type": "application/x-www-form-urlencoded",
                "text": raw.decode(),
            }


async def test_webhook_signatures_of_github_and_stripe_are_verified(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """A request whose GitHub or Stripe signature does not verify gets 401 and leaves the
    instance waiting; a valid one resumes it. The secrets are not in the store."""
    host = hosts.start(project, *storage)
    session, api = await _caller(host)
    async with session:
        await api.create("payment", "gh", {"verify": "github"})
        await api.create("payment", "st", {"verify": "stripe"})
        gh_url = await api.webhook_url("gh")
        st_url = await api.webhook_url("st")
        await api.step("payment", "gh", "provider", "waiting")
        body = b'{"action": "opened", "number": 7}'
        json_type = {"Content-Type": "application/json"}

        forged = HmacSignature.github("not-the-secret").sign(body)
        for headers in ({}, {"X-Hub-Signature-256": forged}, {"X-Hub-Signature-256": "x"}):
            assert await api.call_webhook(gh_url, body, {**json_type, **headers}) == (401, b"")
        tampered = GITHUB.sign(body)
        assert await api.call_webhook(
            gh_url, body + b" ", {**json_type, "X-Hub-Signature-256": tampered}
        ) == (401, b"")
        assert (await api.detail("payment", "gh"))["status"] == "waiting"
        good = {**json_type, "X-Hub-Signature-256": GITHUB.sign(body)}
        assert await api.call_webhook(gh_url, body, good) == (202, b"")
        assert (await api.ended("payment", "gh"))["text"] == body.decode()

        stale = STRIPE.sign(body, timestamp=time.time() - 3600)
        wrong = HmacSignature.stripe("whsec_other").sign(body)
        for value in (stale, wrong, "t=1,v1=00"):
            assert await api.call_webhook(st_url, body, {"Stripe-Signature": value}) == (401, b"")
        assert (await api.detail("payment", "st"))["status"] == "waiting"
        assert await api.call_webhook(st_url, body, {"Stripe-Signature": STRIPE.sign(body)}) == (
            202,
            b"",
        )
        assert (await api.ended("payment", "st"))["text"] == body.decode()
    if not storage:  # the SQLite file holds no secret
        database = project / ".durableflow" / "state.db"
        for path in database.parent.iterdir():
            data = path.read_bytes()
            assert b"gh-secret" not in data and b"whsec_test" not in data, path


async def test_hooks_and_webhooks_survive_a_kill_9(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """An instance waiting on a hook or a webhook is resumed by its token after the host
    that ran it was killed with SIGKILL; a new host re-derives the webhook's verifier."""
    first = hosts.start(project, *storage)
    session, api = await _caller(first)
    async with session:
        await api.create("approval", "k-1", {"order": 42})
        await api.create("payment", "k-2", {"verify": "github"})
        await api.step("approval", "k-1", "decision", "waiting")
        url = await api.webhook_url("k-2")
        await api.step("payment", "k-2", "provider", "waiting")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = hosts.start(project, *storage)
    session, api = await _caller(second)
    async with session:
        status, body = await api.json("POST", "/api/hooks/approval:42", {"approved": True})
        assert status == 400, body  # still typed after the restart
        status, body = await api.json(
            "POST", "/api/hooks/approval:42", {"approved": True, "by": "fay"}
        )
        assert status == 202, body
        body_bytes = b"paid"
        assert await api.call_webhook(url, body_bytes, {"X-Hub-Signature-256": "sha256=00"}) == (
            401,
            b"",
        )
        signed = {"X-Hub-Signature-256": GITHUB.sign(body_bytes)}
        assert await api.call_webhook(url, body_bytes, signed) == (202, b"")
        assert await api.ended("approval", "k-1") == {"approved": True, "by": "fay"}
        assert (await api.ended("payment", "k-2"))["text"] == "paid"
        # the webhook's step is the same on replay: the URL did not change
        assert await api.webhook_url("k-2") == url


@pytest.fixture
def pg_storage() -> Iterator[list[str]]:
    """The ``serve`` arguments of a new PostgreSQL schema."""
    require_postgres(_pg("SELECT 1"))
    schema = f"hooks2_{os.getpid()}_{time.monotonic_ns()}"
    try:
        yield ["--storage", f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"]
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_hooks_across_two_hosts_on_postgres(
    hosts: HostFactory, tmp_path: Path, pg_storage: list[str]
) -> None:
    """On one PostgreSQL, a hook registered by an instance on one host is resumed through
    the other; a token is unique across both; a webhook is verified by either."""
    storage = pg_storage
    one = hosts.start(copy_project(tmp_path / "one", PROJECT), *storage)
    two = hosts.start(copy_project(tmp_path / "two", PROJECT), *storage)
    session, a = await _caller(one)
    async with session:
        b = Caller(session, two)
        await a.create("approval", "x-1", {"order": 7})
        await a.step("approval", "x-1", "decision", "waiting")
        await b.create("approval", "x-2", {"order": 7})
        assert await b.ended("approval", "x-2") == {"failed": "TokenInUseError"}
        await b.create("payment", "x-3", {"verify": "github"})
        url = await a.webhook_url("x-3")
        await a.step("payment", "x-3", "provider", "waiting")

        # two deliveries at once through the two hosts: one takes the hook
        payloads = [{"approved": True, "by": "one"}, {"approved": True, "by": "two"}]
        answers = await asyncio.gather(
            a.json("POST", "/api/hooks/approval:7", payloads[0]),
            b.json("POST", "/api/hooks/approval:7", payloads[1]),
        )
        assert sorted(status for status, _ in answers) == [202, 404], answers
        winner = payloads[[status for status, _ in answers].index(202)]
        assert await b.ended("approval", "x-1") == winner

        signed = {"X-Hub-Signature-256": GITHUB.sign(b"{}")}
        assert await a.call_webhook(url, b"{}", signed) == (202, b"")
        assert await b.call_webhook(url, b"{}", signed) == (410, b"")
        assert (await a.ended("payment", "x-3"))["text"] == "{}"


async def test_restart_and_terminate_release_tokens(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """A restarted instance registers its hook again (its old registration and payloads
    are gone); a terminated instance's hook is 404 and its webhook 410."""
    host = hosts.start(project, *storage)
    session, api = await _caller(host)
    async with session:
        await api.create("approval", "r-1", {"order": 11})
        await api.step("approval", "r-1", "decision", "waiting")
        status, body = await api.json("POST", "/api/workflows/approval/instances/r-1/restart")
        assert status == 200, body
        await api.step("approval", "r-1", "decision", "waiting")
        status, body = await api.json(
            "POST", "/api/hooks/approval:11", {"approved": True, "by": "hal"}
        )
        assert status == 202, body
        assert await api.ended("approval", "r-1") == {"approved": True, "by": "hal"}

        await api.create("approval", "r-2", {"order": 12})
        await api.create("payment", "r-3", {})
        await api.step("approval", "r-2", "decision", "waiting")
        url = await api.webhook_url("r-3")
        for workflow, id in (("approval", "r-2"), ("payment", "r-3")):
            path = f"/api/workflows/{workflow}/instances/{id}/terminate"
            assert (await api.json("POST", path))[0] == 200
        status, body = await api.json("POST", "/api/hooks/approval:12", {})
        assert status == 404, body
        assert await api.call_webhook(url, b"late", {}) == (410, b"")


async def test_delete_and_restart_from_a_step_release_and_reopen_tokens(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """Deleting an instance frees its hook's token; a restart from a hook's wait registers
    it again, and one from a webhook's wait lets the webhook (made before the restart
    point, so the same URL) take a new request."""
    host = hosts.start(project, *storage)
    session, api = await _caller(host)
    async with session:
        await api.create("approval", "d-1", {"order": 13})
        await api.step("approval", "d-1", "decision", "waiting")
        async with session.delete(f"{host.url}/api/workflows/approval/instances/d-1") as r:
            assert r.status == 204, await r.text()
        status, body = await api.json("POST", "/api/hooks/approval:13", {})
        assert status == 404, body
        await api.create("approval", "d-2", {"order": 13})
        await api.step("approval", "d-2", "decision", "waiting")  # the token was free

        await api.create("approval", "f-1", {"order": 14})
        await api.step("approval", "f-1", "decision", "waiting")
        decision = {"approved": True, "by": "ida"}
        assert (await api.json("POST", "/api/hooks/approval:14", decision))[0] == 202
        await api.ended("approval", "f-1")
        restart = "/api/workflows/{}/instances/{}/restart"
        wait_ref = {"from": {"name": "decision", "type": "wait_for_event"}}
        status, body = await api.json("POST", restart.format("approval", "f-1"), wait_ref)
        assert status == 200, body
        await api.step("approval", "f-1", "decision", "waiting")
        again = {"approved": False, "by": "jo"}
        assert (await api.json("POST", "/api/hooks/approval:14", again))[0] == 202
        assert await api.ended("approval", "f-1") == again

        await api.create("payment", "f-2", {})
        url = await api.webhook_url("f-2")
        assert await api.call_webhook(url, b"one", {}) == (202, b"")
        assert (await api.ended("payment", "f-2"))["text"] == "one"
        wait_ref = {"from": {"name": "provider", "type": "wait_for_event"}}
        status, body = await api.json("POST", restart.format("payment", "f-2"), wait_ref)
        assert status == 200, body
        await api.step("payment", "f-2", "provider", "waiting")
        assert await api.webhook_url("f-2") == url
        assert await api.call_webhook(url, b"two", {}) == (202, b"")
        assert (await api.ended("payment", "f-2"))["text"] == "two"


async def test_children_hold_hooks_and_a_probe_replays_child_steps(
    hosts: HostFactory, project: Path, storage: list[str]
) -> None:
    """A webhook made after start_workflow and run_workflow is verified by a new host
    after a kill -9 (its probe replays the child steps from the history). A child's hook
    token is released when the child is terminated by a cascade or deleted."""
    first = hosts.start(project, *storage)
    session, api = await _caller(first)
    async with session:
        children = {}
        for id, order in (("p-1", 21), ("p-2", 22)):
            await api.create("parent", id, {"order": order})
            url = await api.webhook_url(id, "parent")
            approver = await api.step("parent", id, "approver", "complete")
            children[id] = approver["child"]["id"]
            await api.step("approval", children[id], "decision", "waiting")
        await api.step("parent", "p-1", "provider", "waiting")
        url = await api.webhook_url("p-1", "parent")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = hosts.start(project, *storage)
    session, api = await _caller(second)
    async with session:
        body = b'{"ok": true}'
        forged = {"X-Hub-Signature-256": HmacSignature.github("nope").sign(body)}
        assert await api.call_webhook(url, body, forged) == (401, b"")
        signed = {"X-Hub-Signature-256": GITHUB.sign(body)}
        assert await api.call_webhook(url, body, signed) == (202, b"")
        assert await api.ended("parent", "p-1") == {
            "child": children["p-1"],
            "echoed": {"n": 21},
            "text": body.decode(),
        }

        # terminate(cascade=True) ends the child: its token is free for another wait
        path = "/api/workflows/parent/instances/p-2/terminate"
        status, body_json = await api.json("POST", path, {"cascade": True})
        assert status == 200, body_json
        child = await api.detail("approval", children["p-2"])
        assert child["status"] == "terminated", child
        assert (await api.json("POST", "/api/hooks/approval:22", {}))[0] == 404
        await api.create("approval", "again-22", {"order": 22})
        await api.step("approval", "again-22", "decision", "waiting")
        decision = {"approved": True, "by": "kim"}
        assert (await api.json("POST", "/api/hooks/approval:22", decision))[0] == 202
        assert await api.ended("approval", "again-22") == decision

        # deleting a waiting child frees its token too
        child_url = f"{second.url}/api/workflows/approval/instances/{children['p-1']}"
        async with session.delete(child_url) as r:
            assert r.status == 204, await r.text()
        assert (await api.json("POST", "/api/hooks/approval:21", decision))[0] == 404
        await api.create("approval", "again-21", {"order": 21})
        await api.step("approval", "again-21", "decision", "waiting")
