"""Flask: a ``durableflow.SyncClient`` made with the app, shared by every request.

Run the host (``durableflow serve`` in this folder), then
``DURABLEFLOW_URL=http://127.0.0.1:8787 flask --app flask_app run``.
"""

from __future__ import annotations

import atexit
import os
from typing import TYPE_CHECKING, Any

from flask import Flask, abort, request
from workflows import Order

from durableflow import NotFoundError, SyncClient, SyncWorkflow, SyncWorkflowInstance

if TYPE_CHECKING:
    from env import TypedSyncClient  # written by `durableflow types`


def create_app(durableflow_url: str | None = None) -> Flask:
    """The shop's app; its orders are workflows on the host at ``durableflow_url``."""
    app = Flask(__name__)
    # One client per process: it keeps its connections to the host open between requests
    # and may be used from every thread of the server.
    client: TypedSyncClient = SyncClient(
        durableflow_url or os.environ.get("DURABLEFLOW_URL", "http://127.0.0.1:8787"),
        token=os.environ.get("DURABLEFLOW_TOKEN"),
    )
    app.extensions["durableflow"] = client
    atexit.register(client.close)  # Flask has no shutdown hook; close the pool at exit
    orders: SyncWorkflow[Order] = client.workflow("order-processing")

    def existing(order_id: str) -> SyncWorkflowInstance:
        try:
            return orders.get(order_id)
        except NotFoundError:
            abort(404, f"no order {order_id!r}")

    @app.post("/orders")
    def place_order() -> tuple[dict[str, str], int]:
        body = request.get_json()
        params = Order(order_id=body["order_id"], item=body["item"], quantity=body["quantity"])
        instance = orders.create(id=params.order_id, params=params)
        return {"order": instance.id}, 201

    @app.post("/orders/<order_id>/payment")
    def record_payment(order_id: str) -> tuple[dict[str, str], int]:
        existing(order_id).send_event(type="paid", payload={"by": request.get_json()["by"]})
        return {"order": order_id}, 202

    @app.get("/orders/<order_id>")
    def order_status(order_id: str) -> dict[str, Any]:
        status = existing(order_id).status()
        return {"order": order_id, "status": status.status, "output": status.output}

    return app
