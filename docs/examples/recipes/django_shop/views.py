"""The shop's views: each order is an instance of the ``order-processing`` workflow."""

from __future__ import annotations

import json

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from workflows import Order

from durableflow import NotFoundError, SyncWorkflowInstance

from .client import durableflow_client


def _existing(order_id: str) -> SyncWorkflowInstance:
    try:
        return durableflow_client().workflow("order-processing").get(order_id)
    except NotFoundError:
        raise Http404(f"no order {order_id!r}") from None


@csrf_exempt  # an API endpoint called by other programs; protect it as your API is
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """Start the order's workflow; the order id is the instance id, so a retry is safe."""
    body = json.loads(request.body)
    params = Order(order_id=body["order_id"], item=body["item"], quantity=body["quantity"])
    orders = durableflow_client().workflow("order-processing")  # SyncWorkflow[Order]
    instance = orders.create(id=params.order_id, params=params)
    return JsonResponse({"order": instance.id}, status=201)


@csrf_exempt
@require_POST
def record_payment(request: HttpRequest, order_id: str) -> JsonResponse:
    """The payment provider's callback: hand the payment to the waiting workflow."""
    by = json.loads(request.body)["by"]
    _existing(order_id).send_event(type="paid", payload={"by": by})
    return JsonResponse({"order": order_id}, status=202)


@require_GET
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    """Where the order is: its workflow's status and, once shipped, its output."""
    status = _existing(order_id).status()
    return JsonResponse({"order": order_id, "status": status.status, "output": status.output})
