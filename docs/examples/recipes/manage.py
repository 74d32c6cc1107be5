"""Django's command line for the recipe: ``python manage.py place_order o-1 book 2``."""

from __future__ import annotations

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")
    execute_from_command_line(sys.argv)
