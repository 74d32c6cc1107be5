"""The typing cases in tests/typing hold under mypy, against the stubs."""

from __future__ import annotations

import os
from pathlib import Path

import mypy.api

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
STUBS = ROOT / "stubs" / "durableflow-stubs"
SDK = ROOT / "sdk" / "durableflow"


def run_mypy(*targets: Path) -> tuple[str, int]:
    """Run mypy in-process with the typing config; return its report and exit status."""
    stdout, stderr, status = mypy.api.run(
        [
            "--config-file",
            str(TYPING / "mypy.ini"),
            "--cache-dir",
            os.devnull,
            "--show-error-codes",
            *map(str, targets),
        ]
    )
    return stdout + stderr, status


def test_typing_cases_pass():
    """Every assert_type in tests/typing holds and every expected error occurs, nothing else."""
    report, status = run_mypy(*sorted(TYPING.glob("*.py")))
    assert status == 0, f"mypy reported problems in tests/typing:\n{report}"


def test_an_expected_error_that_does_not_occur_fails(tmp_path):
    """A must-fail case whose error disappears fails the check (warn_unused_ignores is on)."""
    case = tmp_path / "vacuous.py"
    case.write_text("x: int = 1  # type: ignore[assignment]\n")
    report, status = run_mypy(case)
    assert status == 1
    assert 'Unused "type: ignore" comment' in report


def test_cases_are_checked_against_the_stubs(tmp_path):
    """mypy resolves durableflow to stubs/durableflow-stubs, whose step.do is overloaded."""
    assert (TYPING / "stubpath" / "durableflow").resolve() == STUBS.resolve()
    case = tmp_path / "which.py"
    case.write_text("import durableflow\nreveal_type(durableflow.WorkflowStep.do)\n")
    report, _ = run_mypy(case)
    assert "Overload(" in report, report


def test_every_public_sdk_module_has_a_stub():
    """Each public module of the SDK has a stub: the stub package is not partial, so mypy
    would not find a public module it lacks."""
    public = {path.stem for path in SDK.glob("*.py") if not path.stem.startswith("_")}
    stubbed = {path.stem for path in STUBS.glob("*.pyi")}
    assert public | {"__init__"} <= stubbed, sorted(public - stubbed)
