"""``[server] log_format = "json"``: every log line of the host is one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import eventually_sync

from .conftest import HostFactory, copy_project


def test_json_logs_are_one_object_per_line(tmp_path: Path, hosts: HostFactory) -> None:
    """With log_format = "json" the host's records, its access log included, are JSON
    lines with time, level, logger and message; the access log carries the request."""
    project = copy_project(tmp_path / "p")
    toml = project / "durableflow.toml"
    toml.write_text(toml.read_text() + '\n[server]\nlog_format = "json"\n')
    host = hosts.start(project, "--access-log")
    assert host.get_json("/healthz") == {"status": "ok"}

    def records() -> list[dict[str, object]] | None:
        lines = [line for line in host.output().splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]
        return parsed if any(r["logger"] == "durableflow.access" for r in parsed) else None

    found = eventually_sync(records, message="an access log record")
    for record in found:
        assert {"time", "level", "logger", "message"} <= set(record), record
    [ready] = [r for r in found if str(r["message"]).startswith("serving ")]
    assert ready["level"] == "INFO" and ready["logger"] == "durableflow.host"
    access = next(r for r in found if r["logger"] == "durableflow.access")
    assert "GET /healthz" in str(access["message"])


def test_a_bad_log_format_is_a_config_error(tmp_path: Path, hosts: HostFactory) -> None:
    """An unknown log_format stops the host before it listens, naming the key."""
    project = copy_project(tmp_path / "p")
    toml = project / "durableflow.toml"
    toml.write_text(toml.read_text() + '\n[server]\nlog_format = "xml"\n')
    host = hosts.start(project, wait=False)
    assert host.proc.wait(30) == 1
    assert "server.log_format must be one of 'text', 'json', not 'xml'" in host.output()
