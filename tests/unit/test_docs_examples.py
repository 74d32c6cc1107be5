"""The user guide's code samples run, so the docs cannot drift from the code.

Every ```python block in the pages below is preceded by a marker comment:

* ``<!-- test -->``: the block is a complete module. It is executed as a module and, if
  it defines ``async def main()``, that coroutine is awaited (examples drive workflows
  through ``durableflow.testing``, whose virtual clock makes hours pass in milliseconds).
* ``<!-- test: module NAME -->``: as above, and later blocks of the same page may
  ``import NAME``.
* ``<!-- test: pytest -->``: the block is a pytest file; it runs with pytest in a child
  process, in a folder holding the page's ``module`` blocks as files and, as
  ``pyproject.toml``, the ```toml block marked ``<!-- test: pytest-config -->``.
* ``<!-- fragment -->``: an excerpt shown in context; it is only compiled (top-level
  ``await`` allowed), so at least its syntax is checked.
* ``<!-- other -->``: another system's code, shown beside ours in the migration guides
  (DBOS, Temporal, Cloudflare's Python SDK). It is never run, only compiled.

A python block with no marker fails the suite: each one is either run or declared a
fragment.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
# pages whose examples must run
PAGES = [
    "quickstart.md",
    "concepts.md",
    "steps.md",
    "retries.md",
    "rollback.md",
    "sleeping-and-events.md",
    "child-workflows.md",
    "hooks.md",
    "testing.md",
    "streams.md",
    "instance-logs.md",
    "control.md",
    "cookbook.md",
    "deploying.md",
    "migrate-cloudflare.md",
    "migrate-dbos.md",
    "migrate-temporal.md",
]
# every page of the user guide this suite checks (markers, links)
CHECKED_PAGES = ["index.md", *PAGES, "errors.md", "clients.md"]
# pages the guide links to that other parts of the documentation provide
OTHER_PAGES = {
    "host.md",
    "config.md",
    "cli.md",
    "http.md",
    "deployment.md",
    "typing.md",
    "scale-out.md",
    "design.md",
    "benchmarks.md",
    "dashboard.md",
}
PYTEST_CONFIG_PAGE = "testing.md"

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*(test(?::\s*(?P<opts>[^>]*?))?|fragment|other)\s*-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # 1-based line of the first code line
    lang: str
    code: str
    marker: str | None  # "test", "fragment", "other" or None
    options: tuple[str, ...]

    @property
    def module_name(self) -> str | None:
        if self.options[:1] == ("module",) and len(self.options) == 2:
            return self.options[1]
        return None

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}"


def read_blocks(page: str) -> list[Block]:
    """Every fenced block of ``docs/<page>``, with the marker on the line before its fence."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        previous = lines[i - 1].strip() if i > 0 else ""
        marker = _MARKER.match(previous)
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        options = tuple((marker.group("opts") or "").split()) if marker else ()
        kind = None
        if marker is not None:
            kind = marker.group(1) if marker.group(1) in ("fragment", "other") else "test"
        blocks.append(
            Block(page, start + 1, fence.group(1), "\n".join(lines[start:end]), kind, options)
        )
        i = end + 1
    return blocks


def _python_blocks() -> Iterator[Block]:
    for page in CHECKED_PAGES:
        for block in read_blocks(page):
            if block.lang == "python":
                yield block


def _compile(block: Block) -> types.CodeType:
    # pad so that a traceback names the line of the page the error is on
    source = "\n" * (block.line - 1) + block.code + "\n"
    code: types.CodeType = compile(
        source,
        str(DOCS / block.page),
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    return code


def _load(block: Block, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = str(DOCS / block.page)
    sys.modules[name] = module  # attrs and typing resolve annotations through sys.modules
    exec(_compile(block), module.__dict__)
    return module


def _dependencies(block: Block) -> list[Block]:
    """The page's ``module`` blocks above ``block``, which it may import."""
    return [
        b
        for b in read_blocks(block.page)
        if b.lang == "python" and b.module_name and b.line < block.line
    ]


def _pytest_config() -> str:
    for block in read_blocks(PYTEST_CONFIG_PAGE):
        if block.lang == "toml" and block.options == ("pytest-config",):
            return block.code + "\n"
    raise AssertionError(f"{PYTEST_CONFIG_PAGE} has no ```toml block marked pytest-config")


ALL = list(_python_blocks())
RUNNABLE = [b for b in ALL if b.marker == "test" and b.options != ("pytest",)]
PYTEST_FILES = [b for b in ALL if b.marker == "test" and b.options == ("pytest",)]
FRAGMENTS = [b for b in ALL if b.marker in ("fragment", "other")]


def test_every_python_block_is_marked() -> None:
    """Each python block of the guide is marked to run, or declared a fragment."""
    unmarked = [b.label for b in ALL if b.marker is None]
    assert not unmarked, (
        f"python blocks without <!-- test -->, <!-- fragment --> or <!-- other -->: {unmarked}"
    )


def test_every_page_has_runnable_examples() -> None:
    """Every page the suite covers holds at least one block that really runs."""
    for page in PAGES:
        assert any(b.page == page for b in RUNNABLE + PYTEST_FILES), f"{page}: nothing runs"


def _anchors(page: str) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    anchors = set()
    in_code = False
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_links_resolve() -> None:
    """Links between pages point at pages that exist (or that the guide expects) and at real headings."""
    broken = []
    for page in CHECKED_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            path = path or page
            if not (DOCS / path).exists():
                if path not in OTHER_PAGES:
                    broken.append(f"{page}: {target}")
                continue
            if anchor and path.endswith(".md") and anchor not in _anchors(path):
                broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken


def test_index_links_every_page() -> None:
    """The index links every page of the guide, including those other parts provide."""
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", text))
    expected = (set(CHECKED_PAGES) - {"index.md"}) | OTHER_PAGES
    expected |= {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert expected <= linked, sorted(expected - linked)


def test_error_tree_matches_the_errors_module() -> None:
    """docs/errors.md draws the same error tree as the docstring of durableflow._errors."""
    import durableflow._errors

    doc = durableflow._errors.__doc__ or ""
    tree = [line[4:] for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    [block] = [b for b in read_blocks("errors.md") if b.lang == "text" and "├──" in b.code]
    assert block.code.splitlines() == tree


def test_error_table_http_statuses_match_the_server() -> None:
    """Each HTTP status docs/errors.md gives for an error is the one the host answers with."""
    import durableflow

    # the host's mapping from errors to HTTP answers (imported by name: the SDK's tests
    # otherwise never import the runtime)
    server = importlib.import_module("durableflow_runtime.server")

    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \|.*\| (\d{3}) `(\w+)`[^|]*\|$", text, re.M)
    assert len(rows) >= 7, rows
    for name, status, code in rows:
        error = getattr(durableflow, name)("x")
        assert server._from_workflow_error(error) == (int(status), code), name
    documented = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    tree = {n for n in durableflow.__all__ if n.endswith("Error")}
    assert tree <= documented, sorted(tree - documented)


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.label)
def test_fragment_compiles(block: Block) -> None:
    """An excerpt shown in context, or another system's code, is at least valid Python."""
    _compile(block)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.label)
async def test_example_runs(block: Block) -> None:
    """A runnable sample executes as a module and its main() completes without error."""
    own = f"docs_example_{block.page.replace('.md', '').replace('-', '_')}_{block.line}"
    names = [b.module_name for b in _dependencies(block)] + [own, block.module_name]
    saved = {name: sys.modules.get(name) for name in names if name is not None}
    try:
        for dep in _dependencies(block):
            assert dep.module_name is not None
            _load(dep, dep.module_name)
        module = _load(block, block.module_name or own)
        main = getattr(module, "main", None)
        if main is not None:
            assert inspect.iscoroutinefunction(main), f"{block.label}: main must be async"
            async with asyncio.timeout(20):
                await main()
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _test_file(block: Block) -> str:
    return f"test_{block.page.removesuffix('.md').replace('-', '_')}_{block.line}"


@pytest.fixture(scope="module")
def pytest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ET.Element, str]:
    """One pytest child process for every sample test file (it costs a second to start).

    Each sample gets a folder holding it and the modules it imports; the guide's
    recommended configuration is the root's ``pyproject.toml``.
    """
    root = tmp_path_factory.mktemp("docs-pytest")
    (root / "pyproject.toml").write_text(_pytest_config(), encoding="utf-8")
    for block in PYTEST_FILES:
        folder = root / _test_file(block)
        folder.mkdir()
        for dep in _dependencies(block):
            (folder / f"{dep.module_name}.py").write_text(dep.code + "\n", encoding="utf-8")
        (folder / f"{_test_file(block)}.py").write_text(block.code + "\n", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "--junitxml",
            str(root / "report.xml"),
            ".",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    if not (root / "report.xml").exists():
        pytest.fail(f"pytest did not run:\n{output}")
    return ET.parse(root / "report.xml").getroot(), output


@pytest.mark.parametrize("block", PYTEST_FILES, ids=lambda b: b.label)
def test_pytest_example_passes(block: Block, pytest_run: tuple[ET.Element, str]) -> None:
    """A sample test file passes under pytest with the configuration the guide recommends."""
    report, output = pytest_run
    cases = [
        c
        for c in report.iter("testcase")
        if _test_file(block) in (c.get("classname") or "").split(".")
    ]
    assert cases, f"{block.label}: no test ran\n{output}"
    failed = [
        c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None
    ]
    assert not failed, f"{block.label}: {failed} failed\n{output}"
    assert not [c.get("name") for c in cases if c.find("skipped") is not None], output
