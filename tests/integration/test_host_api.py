"""The HTTP API of a real ``durableflow serve`` process: every route, every error status."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import aiohttp

from durableflow_runtime.engine import Engine
from durableflow_runtime.metrics import Metrics
from durableflow_runtime.openapi import build_openapi
from durableflow_runtime.server import ApiSettings, build_app
from durableflow_runtime.store.sqlite import SqliteStore

from .conftest import Api, HostProcess

BASE = "/api/workflows"


async def test_healthz_answers_json(api: Api) -> None:
    """GET /healthz answers 200 {"status": "ok"}."""
    assert await api.ok("GET", "/healthz") == {"status": "ok"}


async def test_workflows_lists_the_config(api: Api) -> None:
    """GET /api/workflows lists each configured workflow with its binding, class and defaults."""
    data = await api.ok("GET", BASE)
    by_name = {w["name"]: w for w in data["workflows"]}
    assert list(by_name) == ["echo", "waiter", "sleeper", "gate", "flaky"]
    assert by_name["echo"]["binding"] == "ECHO"
    assert by_name["echo"]["class_name"] == "EchoWorkflow"
    assert by_name["echo"]["params_type"] == "Greeting"
    assert by_name["gate"]["defaults"]["timeout"] == 120.0
    assert by_name["flaky"]["defaults"] == {
        "retries": {"limit": 1, "delay": 0.05, "backoff": "constant"},
        "timeout": 600.0,
        "sensitive": None,
    }


GREETING_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/Greeting",
    "$defs": {
        "Greeting": {
            "title": "Greeting",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "times": {"type": "integer", "default": 1},
            },
            "required": ["name"],
        }
    },
}


async def test_workflows_serve_the_params_schema(api: Api) -> None:
    """Each workflow carries the JSON Schema of its params type (null without one), and
    GET /api/workflows/{name} answers the same item with its instance counts and versions,
    or 404."""
    listed = {w["name"]: w for w in (await api.ok("GET", BASE))["workflows"]}
    assert listed["echo"]["params_schema"] == GREETING_SCHEMA
    assert listed["waiter"]["params_schema"] is None
    one = await api.ok("GET", f"{BASE}/echo")
    counts = one.pop("counts")
    [version] = one.pop("versions")
    assert isinstance(version.pop("in_flight"), int)  # other tests' instances may be running
    assert version == {"version": None, "class_name": "EchoWorkflow", "current": True, "code": True}
    assert one == listed["echo"]
    await api.ok("POST", f"{BASE}/echo/instances", {"params": {"name": "n"}}, status=201)
    after = (await api.ok("GET", f"{BASE}/echo"))["counts"]
    assert sum(after.values()) == sum(counts.values()) + 1
    status, answer = await api.call("GET", f"{BASE}/nope")
    assert status == 404 and answer["error"]["code"] == "not_found"


async def test_detail_lists_the_actions_its_status_allows(api: Api) -> None:
    """The detail's actions follow the state rules, and a wait names its event type."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "act-1"}, 201)
    detail = await api.wait_status("waiter", "act-1", "waiting")
    assert detail["actions"] == [
        "pause",
        "terminate",
        "restart",
        "terminate_rollback",
        "send_event",
    ]
    [wait] = detail["steps"]
    assert (wait["event_type"], wait["payload_schema"]) == ("go", None)
    await api.ok("POST", f"{BASE}/waiter/instances/act-1/pause")
    detail = await api.wait_status("waiter", "act-1", "paused")
    assert detail["actions"] == [
        "resume",
        "terminate",
        "restart",
        "terminate_rollback",
        "send_event",
    ]
    await api.ok("POST", f"{BASE}/waiter/instances/act-1/resume")
    await api.ok("POST", f"{BASE}/waiter/instances/act-1/events/go", {"ok": True}, 202)
    detail = await api.wait_status("waiter", "act-1", "complete")
    assert detail["actions"] == ["restart"]


async def test_list_filters_by_id_prefix_and_created_range(api: Api) -> None:
    """The list takes id_prefix (literal) and an ISO created range; bad values are 400s."""
    body = {"instances": [{"id": i, "params": {"name": "f"}} for i in ("flt_a", "flt_b", "fltXc")]}
    await api.ok("POST", f"{BASE}/echo/instances/batch", body, 201)
    path = f"{BASE}/echo/instances"
    found = await api.ok("GET", f"{path}?id_prefix=flt_")
    assert [i["id"] for i in found["instances"]] == ["flt_b", "flt_a"]
    created = found["instances"][0]["created_at"]  # flt_b's, as shown
    found = await api.ok("GET", f"{path}?id_prefix=flt&created_after={created}")
    assert [i["id"] for i in found["instances"]] == ["fltXc", "flt_b"]
    found = await api.ok("GET", f"{path}?id_prefix=flt&created_before={created}")
    assert [i["id"] for i in found["instances"]] == ["flt_a"]
    found = await api.ok("GET", f"{path}?id_prefix=flt&created_before=2000-01-01T00:00:00")
    assert found == {"instances": [], "next_cursor": None}
    found = await api.ok("GET", f"{path}?id_prefix=flt&limit=1&created_after=2000-01-01T00:00Z")
    assert len(found["instances"]) == 1 and found["next_cursor"] is not None
    # a prefix no id can start with (a NUL byte, a space) finds nothing, on both stores
    for prefix in ("%00flt", "flt%20a", "%C3%B1"):
        found = await api.ok("GET", f"{path}?id_prefix={prefix}")
        assert found == {"instances": [], "next_cursor": None}, prefix
    for query in ("created_after=yesterday", "created_before=", "id_prefix="):
        status, answer = await api.call("GET", f"{path}?{query}")
        assert status == 400 and answer["error"]["code"] == "invalid_request", query


async def test_create_then_describe_until_complete(api: Api) -> None:
    """POST .../instances answers 201 {id, status}; the detail shows params, steps and output."""
    created = await api.ok(
        "POST", f"{BASE}/echo/instances", {"id": "e-1", "params": {"name": "ada"}}, 201
    )
    assert created == {"id": "e-1", "status": "queued"}
    detail = await api.wait_status("echo", "e-1", "complete")
    assert detail["output"] == {"greeting": "hello ada", "id": "e-1"}
    assert detail["params"] == {"name": "ada"}
    assert detail["error"] is None
    assert detail["created_at"].endswith("Z") and detail["ended_at"].endswith("Z")
    [step] = detail["steps"]
    assert step["name"] == "greet" and step["type"] == "do" and step["status"] == "complete"
    assert step["attempts"] == 1 and len(step["attempt_log"]) == 1
    assert step["output"] == "hello ada"
    assert {"started_at", "ended_at", "error", "wake_at"} <= set(step)


async def test_create_without_id_generates_a_uuid(api: Api) -> None:
    """Without an id the host generates a UUID4 string."""
    created = await api.ok("POST", f"{BASE}/echo/instances", {"params": {"name": "x"}}, 201)
    assert len(created["id"]) == 36 and created["id"].count("-") == 4


async def test_status_endpoint(api: Api) -> None:
    """GET .../{id}/status answers status, error and output without the steps."""
    await api.ok("POST", f"{BASE}/echo/instances", {"id": "st-1", "params": {"name": "b"}}, 201)
    await api.wait_status("echo", "st-1", "complete")
    assert await api.ok("GET", f"{BASE}/echo/instances/st-1/status") == {
        "id": "st-1",
        "status": "complete",
        "error": None,
        "output": {"greeting": "hello b", "id": "st-1"},
    }


async def test_batch_creates_all(api: Api) -> None:
    """POST .../instances/batch creates every instance and answers their ids in order."""
    body = {"instances": [{"id": f"b-{i}", "params": {"name": str(i)}} for i in range(5)]}
    created = await api.ok("POST", f"{BASE}/echo/instances/batch", body, 201)
    assert created == {"instances": [{"id": f"b-{i}", "status": "queued"} for i in range(5)]}
    await api.wait_status("echo", "b-4", "complete")


async def test_batch_is_all_or_nothing(api: Api) -> None:
    """A batch with one bad entry creates nothing and names the bad entry."""
    body = {
        "instances": [
            {"id": "bn-1", "params": {"name": "ok"}},
            {"id": "bn-2", "params": {"name": 5, "times": "many"}},
        ]
    }
    status, answer = await api.call("POST", f"{BASE}/echo/instances/batch", body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_params"
    assert answer["error"]["message"].startswith("instances[1]: invalid params")
    assert "params.times" in answer["error"]["message"]
    status, _ = await api.call("GET", f"{BASE}/echo/instances/bn-1")
    assert status == 404
    await api.ok("POST", f"{BASE}/echo/instances", {"id": "bn-x", "params": {"name": "x"}}, 201)
    status, answer = await api.call(
        "POST",
        f"{BASE}/echo/instances/batch",
        {
            "instances": [
                {"id": "bn-y", "params": {"name": "y"}},
                {"id": "bn-x", "params": {"name": "z"}},
            ]
        },
    )
    assert status == 409 and answer["error"]["code"] == "instance_exists"
    status, _ = await api.call("GET", f"{BASE}/echo/instances/bn-y")
    assert status == 404


async def test_batch_shape_errors(api: Api) -> None:
    """A batch that is empty, not an array, too long or has a bad entry is a 400."""
    cases: list[tuple[Any, str]] = [
        ({"instances": []}, "empty"),
        ({"instances": {"id": "x"}}, "must be an array"),
        ({"instances": [5]}, "instances[0] must be an object"),
        ({"instances": [{"id": "ok"}, {"id": "-bad"}]}, "instances[1]"),
        ({"instances": [{"idd": "x"}]}, "unknown key(s) in instances[0]: 'idd'"),
        ({"instances": [{}] * 101}, "at most 100"),
        ({}, "'instances' must be an array"),
    ]
    for body, fragment in cases:
        status, answer = await api.call("POST", f"{BASE}/echo/instances/batch", body)
        assert status == 400, (body, answer)
        assert fragment in answer["error"]["message"], (fragment, answer)


async def test_list_is_newest_first_with_cursor_and_status_filter(api: Api) -> None:
    """GET .../instances pages newest first with next_cursor, and filters by status."""
    ids = [f"l-{i}" for i in range(5)]
    for id in ids:
        await api.ok("POST", f"{BASE}/waiter/instances", {"id": id}, 201)
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await api.ok("GET", f"{BASE}/waiter/instances{query}")
        assert len(page["instances"]) <= 2
        seen += [i["id"] for i in page["instances"] if i["id"].startswith("l-")]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    first = (await api.ok("GET", f"{BASE}/waiter/instances?limit=1"))["instances"][0]
    assert set(first) >= {"id", "status", "error", "created_at", "started_at", "ended_at"}
    await api.ok("POST", f"{BASE}/waiter/instances/l-0/terminate")
    page = await api.ok("GET", f"{BASE}/waiter/instances?status=terminated")
    assert [i["id"] for i in page["instances"]] == ["l-0"]


async def test_events_reach_a_waiting_instance(api: Api) -> None:
    """POST .../events/{type} answers 202 and the waiting instance completes with the payload."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "w-1"}, 201)
    await api.wait_status("waiter", "w-1", "waiting")
    answer = await api.ok("POST", f"{BASE}/waiter/instances/w-1/events/go", {"n": 1}, 202)
    assert answer == {"id": "w-1", "type": "go"}
    detail = await api.wait_status("waiter", "w-1", "complete")
    assert detail["output"] == {"got": {"n": 1}}
    wait_step = detail["steps"][0]
    assert wait_step["type"] == "wait_for_event" and wait_step["status"] == "complete"


async def test_event_without_body_has_null_payload(api: Api) -> None:
    """An event sent with an empty body is delivered with payload null."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "w-empty"}, 201)
    await api.ok("POST", f"{BASE}/waiter/instances/w-empty/events/go", None, 202)
    detail = await api.wait_status("waiter", "w-empty", "complete")
    assert detail["output"] == {"got": None}


async def test_event_to_ended_instance_is_409(api: Api) -> None:
    """An event to an instance that has ended is refused with 409."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "w-done"}, 201)
    await api.ok("POST", f"{BASE}/waiter/instances/w-done/terminate")
    status, answer = await api.call("POST", f"{BASE}/waiter/instances/w-done/events/go", {})
    assert status == 409 and answer["error"]["code"] == "invalid_transition"


async def test_pause_resume_terminate_restart(api: Api) -> None:
    """Control actions answer 200 {id, status} and 409 when the state forbids them."""
    path = f"{BASE}/waiter/instances/c-1"
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "c-1"}, 201)
    await api.wait_status("waiter", "c-1", "waiting")
    assert await api.ok("POST", f"{path}/pause") == {"id": "c-1", "status": "paused"}
    assert await api.ok("POST", f"{path}/pause") == {"id": "c-1", "status": "paused"}
    resumed = await api.ok("POST", f"{path}/resume")
    assert resumed["id"] == "c-1" and resumed["status"] in ("queued", "waiting", "running")
    status, answer = await api.call("POST", f"{path}/resume")
    assert status == 409 and "not paused" in answer["error"]["message"]
    assert await api.ok("POST", f"{path}/terminate") == {"id": "c-1", "status": "terminated"}
    status, answer = await api.call("POST", f"{path}/terminate")
    assert status == 409
    status, answer = await api.call("POST", f"{path}/pause")
    assert status == 409
    restarted = await api.ok("POST", f"{path}/restart")
    assert restarted["status"] in ("queued", "running", "waiting")
    await api.wait_status("waiter", "c-1", "waiting")
    await api.ok("POST", f"{path}/events/go", "again", 202)
    detail = await api.wait_status("waiter", "c-1", "complete")
    assert detail["output"] == {"got": "again"}


async def test_errored_instance_reports_error(api: Api) -> None:
    """An instance whose step fails for good ends errored with {name, message}."""
    await api.ok("POST", f"{BASE}/flaky/instances", {"id": "f-1"}, 201)
    detail = await api.wait_status("flaky", "f-1", "errored")
    assert detail["error"] == {"name": "RuntimeError", "message": "always fails"}
    [step] = detail["steps"]
    assert step["status"] == "failed" and step["attempts"] == 2
    assert [a["error"]["message"] for a in step["attempt_log"]] == ["always fails"] * 2


async def test_result_long_poll(api: Api) -> None:
    """GET .../result?timeout= holds the request until the instance ends, then answers done."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "r-1"}, 201)
    quick = await api.ok("GET", f"{BASE}/waiter/instances/r-1/result?timeout=0.2")
    assert quick["done"] is False and quick["status"] in ("queued", "running", "waiting")
    poll = asyncio.ensure_future(api.ok("GET", f"{BASE}/waiter/instances/r-1/result?timeout=20"))
    await api.wait_status("waiter", "r-1", "waiting")
    assert not poll.done()
    await api.ok("POST", f"{BASE}/waiter/instances/r-1/events/go", 7, 202)
    answer = await asyncio.wait_for(poll, 10)
    assert answer == {
        "id": "r-1",
        "status": "complete",
        "error": None,
        "output": {"got": 7},
        "done": True,
    }
    status, answer = await api.call("GET", f"{BASE}/waiter/instances/r-1/result?timeout=-1")
    assert status == 400 and "timeout" in answer["error"]["message"]
    status, _ = await api.call("GET", f"{BASE}/waiter/instances/nope/result?timeout=1")
    assert status == 404


# --- errors ----------------------------------------------------------------------------
async def test_bad_id_is_400(api: Api) -> None:
    """An invalid or non-string instance id is a 400 naming the id."""
    for bad in ["-starts-with-dash", "has space", "x" * 101, ""]:
        status, answer = await api.call("POST", f"{BASE}/echo/instances", {"id": bad})
        assert status == 400, bad
        assert "invalid instance id" in answer["error"]["message"]
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {"id": 42})
    assert status == 400 and "'id' must be a string" in answer["error"]["message"]


async def test_bad_params_name_the_field(api: Api) -> None:
    """Params that do not structure into the params type are a 400 naming the field."""
    status, answer = await api.call(
        "POST", f"{BASE}/echo/instances", {"id": "p-1", "params": {"name": "a", "times": "x"}}
    )
    assert status == 400
    assert answer["error"]["code"] == "invalid_params"
    assert "params.times" in answer["error"]["message"]
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {"params": {"times": 1}})
    assert status == 400 and "params.name" in answer["error"]["message"]
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {})
    assert status == 400 and "params are required" in answer["error"]["message"]
    status, _ = await api.call("GET", f"{BASE}/echo/instances/p-1")
    assert status == 404


async def test_malformed_json_and_wrong_types_are_400(api: Api) -> None:
    """Malformed JSON, a non-object body and unknown keys are 400s saying what was wrong."""
    cases: list[tuple[str, str, str]] = [
        ("{not json", "invalid_json", "not valid JSON"),
        ("[1, 2]", "invalid_request", "must be a JSON object, not an array"),
        ('"text"', "invalid_request", "not a string"),
        ('{"id": "x", "parms": {}}', "invalid_request", "unknown key(s) in request body: 'parms'"),
    ]
    for data, code, fragment in cases:
        status, answer = await api.call("POST", f"{BASE}/echo/instances", data=data)
        assert status == 400, data
        assert answer["error"]["code"] == code, answer
        assert fragment in answer["error"]["message"], answer
    status, answer = await api.call("POST", f"{BASE}/waiter/instances/x/events/go", data="{oops")
    assert status == 400 and answer["error"]["code"] == "invalid_json"


async def test_bad_query_is_400(api: Api) -> None:
    """A bad limit, status or cursor on the list is a 400."""
    for query, fragment in [
        ("limit=abc", "'limit' must be an integer"),
        ("limit=0", "limit must be between 1 and 1000"),
        ("status=sleeping", "unknown status 'sleeping'"),
        ("cursor=zz", "invalid cursor"),
    ]:
        status, answer = await api.call("GET", f"{BASE}/echo/instances?{query}")
        assert status == 400, query
        assert fragment in answer["error"]["message"], answer


async def test_bad_event_type_is_400(api: Api) -> None:
    """An invalid event type in the path is a 400."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "ev-bad"}, 201)
    status, answer = await api.call("POST", f"{BASE}/waiter/instances/ev-bad/events/-x", {})
    assert status == 400 and "invalid event type" in answer["error"]["message"]


async def test_unknown_workflow_instance_and_route_are_404(api: Api) -> None:
    """Unknown workflows, instances and routes are JSON 404s."""
    for method, path, fragment in [
        ("POST", f"{BASE}/nope/instances", "no workflow named 'nope'"),
        ("GET", f"{BASE}/nope/instances", "no workflow named 'nope'"),
        ("GET", f"{BASE}/echo/instances/missing", "no instance 'missing'"),
        ("POST", f"{BASE}/echo/instances/missing/pause", "no instance 'missing'"),
        ("POST", f"{BASE}/waiter/instances/missing/events/go", "no instance 'missing'"),
        ("GET", "/api/nothing-here", "no route GET /api/nothing-here"),
        ("GET", "/not-a-page", "no route GET /not-a-page"),
    ]:
        status, answer = await api.call(method, path, {} if method == "POST" else None)
        assert status == 404, path
        assert answer["error"]["code"] == "not_found"
        assert fragment in answer["error"]["message"], answer


async def test_wrong_method_is_405(api: Api) -> None:
    """A known path with a wrong method is a JSON 405 listing the allowed methods."""
    status, answer = await api.call("DELETE", f"{BASE}/echo/instances")
    assert status == 405
    assert answer["error"]["code"] == "method_not_allowed"
    assert "GET" in answer["error"]["message"] and "POST" in answer["error"]["message"]
    status, answer = await api.call("GET", f"{BASE}/echo/instances/x/pause")
    assert status == 405


async def test_duplicate_id_is_409(api: Api) -> None:
    """Creating an instance with a taken id is a 409 naming the id."""
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "dup-1"}, 201)
    status, answer = await api.call("POST", f"{BASE}/waiter/instances", {"id": "dup-1"})
    assert status == 409
    assert answer["error"]["code"] == "instance_exists"
    assert "dup-1" in answer["error"]["message"]


async def test_oversize_bodies_are_413(api: Api) -> None:
    """A body over the host's limit, or params over the 1 MiB limit, is a JSON 413."""
    big = io.BytesIO(b"x" * (17 * 1024 * 1024))
    status, answer = await api.call("POST", f"{BASE}/echo/instances", data=big)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"
    params = {"name": "y" * (1024 * 1024 + 10)}
    status, answer = await api.call("POST", f"{BASE}/echo/instances", {"params": params})
    assert status == 413 and answer["error"]["code"] == "limit_exceeded"
    assert "over the limit" in answer["error"]["message"]
    await api.ok("POST", f"{BASE}/waiter/instances", {"id": "big-ev"}, 201)
    status, answer = await api.call(
        "POST", f"{BASE}/waiter/instances/big-ev/events/go", "z" * (1024 * 1024 + 10)
    )
    assert status == 413 and "event payload" in answer["error"]["message"]


async def test_user_route_creates_an_instance(api: Api) -> None:
    """A user route mounted from `app = "app:routes"` creates instances through the env."""
    answer = await api.ok("POST", "/greet", {"id": "u-1", "params": {"name": "bob"}}, 201)
    assert answer == {"id": "u-1"}
    detail = await api.wait_status("echo", "u-1", "complete")
    assert detail["output"]["greeting"] == "hello bob"
    status, answer = await api.call("POST", "/greet", {"id": "u-2", "params": {"times": 2}})
    assert status == 400 and answer["error"]["code"] == "invalid_params"


async def test_user_route_errors_hide_tracebacks(api: Api, shared_host: HostProcess) -> None:
    """A crashing user route answers a JSON 500 without internals; its own errors pass through."""
    status, answer = await api.call("GET", "/broken")
    assert status == 500
    assert answer == {
        "error": {"code": "internal", "message": "internal error (see the host's log)"}
    }
    assert "secret internals" in shared_host.output()  # logged on the host only
    async with api.session.get(api.base + "/teapot") as response:
        assert response.status == 409
        assert await response.text() == "user says no"


async def test_openapi_matches_the_routes(api: Api, tmp_path: Path) -> None:
    """Every route the server registers is in /api/openapi.json, and every documented one exists."""
    served = await api.ok("GET", "/api/openapi.json")
    assert served == build_openapi()
    assert served["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path) for path, item in served["paths"].items() for method in item
    }
    engine = Engine(SqliteStore(tmp_path / "unused.db"), [])
    engine.observer = Metrics(engine)  # as the host does: GET /metrics is routed
    app = build_app(engine, ApiSettings())
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    # /metrics answers Prometheus text, not JSON: it is documented in docs/operations.md,
    # not in the OpenAPI document of the JSON API
    routed.discard(("GET", "/metrics"))
    assert routed == documented
    for path, item in served["paths"].items():
        for method, operation in item.items():
            assert "responses" in operation and operation["operationId"], (method, path)


async def test_no_answer_is_html(shared_host: HostProcess) -> None:
    """Even a request the router cannot parse as JSON-ish gets a JSON answer."""
    url = shared_host.url + "/api/workflows/%ZZ/instances"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.content_type == "application/json"
        assert response.status in (400, 404)


def test_http_reference_matches_openapi() -> None:
    """docs/http.md's endpoint table lists exactly the endpoints of the OpenAPI document."""
    text = (Path(__file__).parents[2] / "docs" / "http.md").read_text()
    listed = set(re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/\S*)`", text, re.MULTILINE))
    documented = {
        (method.upper(), path) for path, item in build_openapi()["paths"].items() for method in item
    }
    assert listed == documented
