"""The framework recipes in docs/examples/recipes, each driven by its framework's own test
client, calling a real ``durableflow serve`` host over HTTP."""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durableflow import SyncClient
from tests.helpers import eventually_sync

from .conftest import HostFactory, HostProcess, copy_project, run_cli

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "recipes"

# (method, path, JSON body or None) -> (HTTP status, JSON answer or None)
Call = Callable[[str, str, Any], tuple[int, Any]]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """``durableflow serve`` on a copy of the recipes' project, its mailer writing to a
    temporary outbox."""
    root = tmp_path_factory.mktemp("recipes")
    project = copy_project(root / "project", RECIPES)
    factory = HostFactory()
    try:
        yield factory.start(project, env={"RECIPES_OUTBOX": str(root / "outbox")})
    finally:
        factory.close()


@pytest.fixture(autouse=True)
def recipes_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipes' modules import each other by plain name, as they do when run there."""
    monkeypatch.syspath_prepend(str(RECIPES))


def recipe(name: str) -> Any:
    """A recipe module, imported from docs/examples/recipes (which mypy checks on its own,
    not as part of the tests)."""
    return importlib.import_module(name)


def place_pay_and_ship(call: Call, order_id: str) -> None:
    """The shop's whole story through its routes: place an order, see it wait for its
    payment, pay, see it shipped; an unknown order is a 404."""
    status, answer = call("POST", "/orders", {"order_id": order_id, "item": "book", "quantity": 2})
    assert (status, answer) == (201, {"order": order_id})
    eventually_sync(
        lambda: call("GET", f"/orders/{order_id}", None)[1]["status"] == "waiting",
        message=f"{order_id} waits for its payment",
    )
    assert call("POST", f"/orders/{order_id}/payment", {"by": "alice"})[0] == 202

    def shipped() -> Any:
        status, answer = call("GET", f"/orders/{order_id}", None)
        assert status == 200, answer
        return answer["output"] if answer["status"] == "complete" else None

    output = eventually_sync(shipped, message=f"{order_id} is shipped")
    assert output == {
        "order_id": order_id,
        "reservation": f"reservation-{order_id}",
        "paid_by": "alice",
        "tracking": f"TRACK-{order_id.upper()}",
    }
    assert call("GET", "/orders/no-such-order", None)[0] == 404


def test_fastapi_recipe(host: HostProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI app, its Client opened in the lifespan, runs an order on the host."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("DURABLEFLOW_URL", host.url)
    app = recipe("fastapi_app").app

    with TestClient(app) as client:

        def call(method: str, path: str, body: Any) -> tuple[int, Any]:
            response = client.request(method, path, json=body)
            return response.status_code, response.json()

        place_pay_and_ship(call, "fastapi-1")


def test_flask_recipe(host: HostProcess) -> None:
    """The Flask app, with its SyncClient, runs an order on the host."""
    app = recipe("flask_app").create_app(host.url)
    client = app.test_client()

    def call(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = client.open(path, method=method, json=body)
        return response.status_code, response.get_json(silent=True)

    place_pay_and_ship(call, "flask-1")
    app.extensions["durableflow"].close()


@pytest.fixture
def django_settings(host: HostProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Django set up with the recipe's settings, pointed at the host."""
    import django
    from django.test.utils import override_settings

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "django_shop.settings")
    django.setup()
    close_clients = recipe("django_shop.client").close_clients

    try:
        with override_settings(DURABLEFLOW_URL=host.url):
            yield
    finally:
        close_clients()


@pytest.mark.usefixtures("django_settings")
def test_django_view_recipe() -> None:
    """The Django views, with their shared SyncClient, run an order on the host."""
    from django.test import Client

    client = Client()

    def call(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        if method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, data=data, content_type="application/json")
        is_json = response.headers.get("Content-Type") == "application/json"
        return response.status_code, json.loads(response.content) if is_json else None

    place_pay_and_ship(call, "django-1")


@pytest.mark.usefixtures("django_settings")
def test_django_management_command_recipe() -> None:
    """``manage.py place_order ... --paid-by`` starts an order, pays it and waits until it
    ships; run again for the same order it carries on with the existing instance."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command("place_order", "django-cmd", "lamp", "1", "--paid-by", "bob", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].removeprefix("order django-cmd: ") in ("queued", "running", "waiting")
    assert lines[1] == "order django-cmd: shipped, tracking TRACK-DJANGO-CMD"
    again = io.StringIO()
    call_command("place_order", "django-cmd", "lamp", "1", stdout=again)
    assert again.getvalue().strip() == "order django-cmd: complete"


def test_fire_and_forget_recipe(host: HostProcess) -> None:
    """sign_up() returns at once; the welcome email is sent once in the background after
    a retried attempt, and signing the same user up again sends no second email."""
    sign_up = recipe("fire_and_forget").sign_up

    outbox = host.project.parent / "outbox"
    with SyncClient(host.url) as client:
        user_id = sign_up(client, "ada@example.com", user_id=1815)
        instance = client.workflow("welcome-email").get(f"welcome-{user_id}")
        sent = instance.result(timeout=10)
        assert (outbox / sent).read_text().startswith("To: ada@example.com\n")
        [step] = instance.describe()["steps"]
        assert step["attempts"] == 2  # the mail server failed the first attempt
        assert sign_up(client, "ada@example.com", user_id=1815) == 1815
        assert instance.result(timeout=10) == sent
    assert [p.name for p in outbox.iterdir()] == [sent]


def test_recipes_env_pyi_is_up_to_date(tmp_path: Path) -> None:
    """The committed docs/examples/recipes/env.pyi is what `durableflow types` writes."""
    out = tmp_path / "env.pyi"
    done = run_cli("types", "--config", str(RECIPES / "durableflow.toml"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (RECIPES / "env.pyi").read_bytes()
