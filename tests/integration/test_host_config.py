"""Loading ``durableflow.toml`` files from disk: defaults, paths, workflow classes."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from durableflow import ResolvedRetryConfig, ResolvedStepConfig
from durableflow_runtime.config import (
    ConfigError,
    build_specs,
    load_config,
    load_workflow_classes,
)

MINIMAL = """
main = "flows.py"

[[workflows]]
name = "order-flow"
class_name = "Orders"
"""

FLOWS = """
from typing import Any

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Orders(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        return None


class Refunds(Orders):
    pass
"""


@pytest.fixture(autouse=True)
def _clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Imported test modules and sys.path entries do not leak between tests."""
    monkeypatch.delenv("DURABLEFLOW_TOKEN", raising=False)
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def _project(tmp_path: Path, toml: str = MINIMAL, flows: str = FLOWS) -> Path:
    (tmp_path / "durableflow.toml").write_text(textwrap.dedent(toml))
    (tmp_path / "flows.py").write_text(textwrap.dedent(flows))
    return tmp_path


def test_defaults(tmp_path: Path) -> None:
    """A minimal config gets the contract's defaults, with the SQLite path beside the file."""
    config = load_config(_project(tmp_path) / "durableflow.toml")
    assert config.path == tmp_path / "durableflow.toml"
    assert config.base_dir == tmp_path
    assert config.app is None
    assert config.storage_url == f"sqlite:///{tmp_path}/.durableflow/state.db"
    assert (config.server.host, config.server.port, config.server.token) == (
        "127.0.0.1",
        8787,
        None,
    )
    assert config.server.url == "http://127.0.0.1:8787"
    [workflow] = config.workflows
    assert (workflow.name, workflow.binding, workflow.class_name) == (
        "order-flow",
        "ORDER_FLOW",
        "Orders",
    )


def test_directory_or_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path may be the project directory; None reads ./durableflow.toml."""
    _project(tmp_path)
    assert load_config(tmp_path).path == tmp_path / "durableflow.toml"
    monkeypatch.chdir(tmp_path)
    assert load_config(None).base_dir == tmp_path


def test_storage_urls(tmp_path: Path) -> None:
    """Relative SQLite paths resolve against the config's directory; others stay as written."""
    toml = MINIMAL + '\n[storage]\nurl = "sqlite:///data/x.db"\n'
    assert load_config(_project(tmp_path, toml)).storage_url == f"sqlite:///{tmp_path}/data/x.db"
    toml = MINIMAL + '\n[storage]\nurl = "sqlite:////var/lib/x.db"\n'
    assert load_config(_project(tmp_path, toml)).storage_url == "sqlite:////var/lib/x.db"
    toml = MINIMAL + '\n[storage]\nurl = "postgresql://u@db/x"\ndurability = "full"\n'
    config = load_config(_project(tmp_path, toml))
    assert config.storage_url == "postgresql://u@db/x"
    assert config.storage_durability == "full"


def test_token_from_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DURABLEFLOW_TOKEN takes precedence over [server] token."""
    toml = MINIMAL + '\n[server]\ntoken = "file"\nhost = "0.0.0.0"\nport = 9000\n'
    project = _project(tmp_path, toml)
    assert load_config(project).server.token == "file"
    monkeypatch.setenv("DURABLEFLOW_TOKEN", "env")
    config = load_config(project)
    assert config.server.token == "env"
    assert config.server.url == "http://127.0.0.1:9000"


def test_workflow_defaults_become_spec_defaults(tmp_path: Path) -> None:
    """retries/timeout of a workflow become its WorkflowSpec's step defaults."""
    toml = MINIMAL + textwrap.dedent(
        """
        retries = { limit = 2, delay = "500 ms" }
        timeout = "1 minute"

        [[workflows]]
        name = "refunds"
        binding = "REFUNDS"
        class_name = "Refunds"
        """
    )
    config = load_config(_project(tmp_path, toml))
    classes = load_workflow_classes(config)
    assert [c.__name__ for c in classes.values()] == ["Orders", "Refunds"]
    specs = build_specs(config, classes)
    assert specs[0].defaults == ResolvedStepConfig(
        retries=ResolvedRetryConfig(limit=2, delay=timedelta(seconds=0.5), backoff="exponential"),
        timeout=timedelta(seconds=60),
    )
    assert specs[1].defaults == ResolvedStepConfig()
    assert [(s.name, s.binding) for s in specs] == [
        ("order-flow", "ORDER_FLOW"),
        ("refunds", "REFUNDS"),
    ]


def test_main_as_a_dotted_module(tmp_path: Path) -> None:
    """main may be a dotted module found from the config's directory."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "durableflow.toml").write_text(MINIMAL.replace('"flows.py"', '"shop.flows"'))
    classes = load_workflow_classes(load_config(tmp_path))
    assert classes["order-flow"].__module__ == "shop.flows"


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("main = 5\n", "main must be a file path or a dotted module name, not 5"),
        ('main = "x.py"\n', "no [[workflows]] entry"),
        ("[server]\n", "'main' is missing"),
        ('main = "x.py"\n[server]\nport = "80"\n', "server.port must be an integer, not '80'"),
        ('main = "x.py"\n[server]\nport = 70000\n', "between 0 and 65535"),
        ('main = "x.py"\napp = "nocolon"\n', "app must be 'module:attribute'"),
        ('main = "x.py"\n[storage]\ndurability = "max"\n', "durability must be 'normal' or 'full'"),
        ('main = "x.py"\n[[workflows]]\nname = "a"\n', "workflows[0] has no 'class_name'"),
        (
            'main = "x.py"\n[[workflows]]\nname = "a"\nclass_name = "A"\nbinding = "not ok"\n',
            "binding 'not ok' is not a valid Python attribute name",
        ),
        (
            'main = "x.py"\n[[workflows]]\nname = "a"\nclass_name = "A"\nretries = { limti = 1 }\n',
            "unknown key(s) in step config 'retries': 'limti'",
        ),
        ("main = [\n", "is not valid TOML"),
    ],
)
def test_mistakes_are_config_errors(tmp_path: Path, toml: str, fragment: str) -> None:
    """Each mistake is a ConfigError naming the key and what was expected."""
    (tmp_path / "durableflow.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert fragment in info.value.message
    assert "\n" not in info.value.message


def test_storage_unavailable_timeout(tmp_path: Path) -> None:
    """[storage] unavailable_timeout is a duration (default 5 s); a bad one is a ConfigError."""
    assert load_config(_project(tmp_path, MINIMAL)).unavailable_timeout == 5.0
    for written, seconds in (('"2 seconds"', 2.0), ("1500", 1.5), ('"250ms"', 0.25)):
        toml = MINIMAL + f"\n[storage]\nunavailable_timeout = {written}\n"
        assert load_config(_project(tmp_path, toml)).unavailable_timeout == seconds
    for written, fragment in (
        ('"soon"', "unavailable_timeout"),
        ("0", "storage.unavailable_timeout must be more than 0"),
        ('"2 hours"', "at most 1 hour"),
        ("true", "storage.unavailable_timeout must be a duration"),
    ):
        toml = MINIMAL + f"\n[storage]\nunavailable_timeout = {written}\n"
        with pytest.raises(ConfigError) as info:
            load_config(_project(tmp_path, toml))
        assert fragment in info.value.message, info.value.message


def test_server_tracing_and_metrics_step_names(tmp_path: Path) -> None:
    """[server] tracing is "off" or "otel" and metrics_step_names a positive integer
    (defaults "off" and 100); anything else is a ConfigError naming the key."""
    server = load_config(_project(tmp_path, MINIMAL)).server
    assert (server.tracing, server.metrics_step_names) == ("off", 100)
    toml = MINIMAL + '\n[server]\ntracing = "otel"\nmetrics_step_names = 20\n'
    server = load_config(_project(tmp_path, toml)).server
    assert server.observe == {"tracing": "otel", "step_name_limit": 20}
    for line, fragment in (
        ('tracing = "jaeger"', "server.tracing must be one of 'off', 'otel'"),
        ("metrics_step_names = 0", "server.metrics_step_names must be a positive integer"),
        ("metrics_step_names = true", "server.metrics_step_names must be a positive integer"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(_project(tmp_path, MINIMAL + f"\n[server]\n{line}\n"))
        assert fragment in info.value.message, info.value.message
