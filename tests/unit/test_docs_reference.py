"""The site's reference pages cover the whole public API, so the reference cannot drift.

docs/api.md and docs/api-testing.md hold one ``::: durableflow.NAME`` directive per public
name; mkdocstrings renders each from the docstrings and signatures when the site is built
(``make docs``), and the strict build fails on a name it cannot find. These tests fail
when a name is added to (or removed from) an ``__all__`` without its entry.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import durableflow
import durableflow.testing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _documented(page: str, module: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(rf"^::: {re.escape(module)}\.(\w+)\s*$", text, re.M)


def test_every_public_name_of_durableflow_is_in_the_reference() -> None:
    """docs/api.md has exactly one entry per name of durableflow.__all__."""
    documented = _documented("api.md", "durableflow")
    assert sorted(documented) == sorted(set(documented)), "a name is documented twice"
    assert set(documented) == set(durableflow.__all__)


def test_every_public_name_of_the_testing_kit_is_in_the_reference() -> None:
    """docs/api-testing.md has exactly one entry per name of durableflow.testing.__all__."""
    documented = _documented("api-testing.md", "durableflow.testing")
    assert sorted(documented) == sorted(set(documented)), "a name is documented twice"
    assert set(documented) == set(durableflow.testing.__all__)


def test_the_reference_pages_are_in_the_site_navigation() -> None:
    """mkdocs.yml lists the generated reference pages, the guides and the cookbook."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s+- [^:\n]+: ([\w./-]+\.md)\s*$", config, re.M))
    assert {"api.md", "api-testing.md", "cli-commands.md", "http-openapi.md"} <= nav
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - {"index.md"} <= nav, sorted(pages - nav - {"index.md"})


def test_the_cli_reference_names_the_real_click_group() -> None:
    """docs/cli-commands.md renders the click group durableflow's console script runs."""
    import click

    # imported by name, as in test_docs_examples: the SDK's tests otherwise never import
    # the runtime
    cli = importlib.import_module("durableflow_runtime.cli")
    text = (DOCS / "cli-commands.md").read_text(encoding="utf-8")
    assert ":module: durableflow_runtime.cli" in text
    command = re.search(r":command: (\w+)", text)
    assert command is not None
    assert isinstance(getattr(cli, command.group(1)), click.Group)
