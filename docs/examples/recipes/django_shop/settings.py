"""Settings of the Django recipe: the least Django needs, and where the host is."""

from __future__ import annotations

import os

SECRET_KEY = "recipe-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django_shop"]  # for its management command
ROOT_URLCONF = "django_shop.urls"
DATABASES: dict[str, dict[str, str]] = {}  # the shop's state is in its workflows
USE_TZ = True

DURABLEFLOW_URL = os.environ.get("DURABLEFLOW_URL", "http://127.0.0.1:8787")
DURABLEFLOW_TOKEN = os.environ.get("DURABLEFLOW_TOKEN")
