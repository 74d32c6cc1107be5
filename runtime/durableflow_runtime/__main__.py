"""``python -m durableflow_runtime``: the ``durableflow`` command."""

from .cli import main

main(prog_name="durableflow")
