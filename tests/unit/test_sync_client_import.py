"""durableflow.SyncClient without httpx: importable, and a clear error when made."""

from __future__ import annotations

import subprocess
import sys

import pytest

import durableflow


def test_import_does_not_need_httpx() -> None:
    """Importing durableflow (SyncClient included) never loads httpx."""
    code = (
        "import sys; sys.modules['httpx'] = None; "
        "import durableflow; from durableflow import SyncClient, SyncWorkflow; "
        "print(SyncClient.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SyncClient"


def test_constructing_without_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a SyncClient without httpx raises ImportError naming durableflow[sync]."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'durableflow\[sync\]'"):
        durableflow.SyncClient("http://127.0.0.1:8787")
