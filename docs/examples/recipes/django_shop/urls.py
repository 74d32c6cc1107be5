"""The shop's URLs."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("orders", views.place_order),
    path("orders/<str:order_id>/payment", views.record_payment),
    path("orders/<str:order_id>", views.order_status),
]
