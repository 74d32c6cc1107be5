"""``python manage.py place_order ORDER_ID ITEM QUANTITY [--paid-by NAME]``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from workflows import Order

from durableflow import InstanceExistsError

from ...client import durableflow_client


class Command(BaseCommand):
    help = "Start an order workflow; with --paid-by, also pay it and wait until it ships."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("order_id")
        parser.add_argument("item")
        parser.add_argument("quantity", type=int)
        parser.add_argument("--paid-by", help="send the payment event and wait for the output")

    def handle(self, *args: Any, **options: Any) -> None:
        orders = durableflow_client().workflow("order-processing")
        params = Order(options["order_id"], options["item"], options["quantity"])
        try:
            instance = orders.create(id=params.order_id, params=params)
        except InstanceExistsError:
            instance = orders.get(params.order_id)  # started before: carry on with it
        self.stdout.write(f"order {instance.id}: {instance.status().status}")
        if options["paid_by"]:
            instance.send_event(type="paid", payload={"by": options["paid_by"]})
            output = instance.result(timeout=60)
            self.stdout.write(f"order {instance.id}: shipped, tracking {output['tracking']}")
