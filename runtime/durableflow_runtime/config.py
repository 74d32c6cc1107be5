"""``durableflow.toml``: where the host finds the user's workflows, its storage and its port.

The file is read with ``tomllib``; every mistake is a :class:`ConfigError` whose message
is one line naming the file, the key and what was expected::

    main = "app.py"                    # a file beside this one, or a dotted module
    app = "app:routes"                 # optional aiohttp RouteTableDef or app factory

    [storage]
    url = "sqlite:///.durableflow/state.db"
    retention = "30 days"              # delete finished instances; default: keep forever
    unavailable_timeout = "5 seconds"  # answer 503 when the store is away this long

    [server]
    host = "127.0.0.1"
    port = 8787
    token = "..."                      # or env DURABLEFLOW_TOKEN
    dashboard = true                   # serve the dashboard at /dashboard
    cors_origins = []                  # other origins whose pages may call /api
    idle_timeout = "30 seconds"        # close a connection with no request after this
    max_connections = 1000             # open connections at most
    log_format = "text"                # or "json": one JSON object per log record
    tracing = "off"                    # or "otel": OpenTelemetry spans (extra durableflow[otel])
    metrics_step_names = 100           # step names per workflow with their own metrics label
    public_url = "https://flows.example.com"  # base of webhook URLs (default http://host:port)
    check = "warn"                     # replay in-flight histories at start: off, warn, refuse

    [[workflows]]
    name = "order-processing"
    binding = "ORDER_FLOW"
    class_name = "OrderWorkflow"
    previous = ["OrderWorkflowV1"]     # older classes that finish their versions' instances
    retries = { limit = 5, delay = "10 seconds", backoff = "exponential" }
    timeout = "10 minutes"
    max_concurrency = 20               # flow control: see docs/flow-control.md
    concurrency_key = "params.customer_id"
    key_concurrency = 1
    rate_limit = "100/minute"

    [[schedules]]                      # see docs/schedules.md
    workflow = "order-processing"
    cron = "0 9 * * MON-FRI"
    timezone = "Europe/Paris"

Relative SQLite paths are relative to the directory holding the config file.
"""

from __future__ import annotations

import importlib
import importlib.util
import keyword
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import attrs

from durableflow import ResolvedStepConfig, ValidationError, WorkflowEntrypoint
from durableflow._config import resolve_config
from durableflow._duration import to_seconds
from durableflow._types import check_id

from .schedules import ScheduleConfig, parse_schedules
from .store.base import FlowLimits

if TYPE_CHECKING:
    from .engine import WorkflowSpec

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_STORAGE_URL",
    "Config",
    "ConfigError",
    "ServerConfig",
    "WorkflowConfig",
    "build_specs",
    "load_config",
    "load_main_module",
    "load_workflow_classes",
    "resolve_storage_url",
]

DEFAULT_CONFIG_NAME = "durableflow.toml"
DEFAULT_STORAGE_URL = "sqlite:///.durableflow/state.db"
TOKEN_ENV = "DURABLEFLOW_TOKEN"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

_TOP_KEYS = ("main", "app", "storage", "server", "workflows", "schedules")
_STORAGE_KEYS = ("url", "durability", "retention", "unavailable_timeout")
DEFAULT_UNAVAILABLE_TIMEOUT = 5.0
_SERVER_KEYS = (
    "host",
    "port",
    "token",
    "max_body_bytes",
    "dashboard",
    "cors_origins",
    "idle_timeout",
    "max_connections",
    "log_format",
    "tracing",
    "metrics_step_names",
    "public_url",
    "check",
)
TRACING_MODES = ("off", "otel")
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 1000
LOG_FORMATS = ("text", "json")
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
_PUBLIC_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")
_WORKFLOW_KEYS = (
    "name",
    "binding",
    "class_name",
    "previous",
    "retries",
    "timeout",
    "run_retries",
    "max_concurrency",
    "concurrency_key",
    "key_concurrency",
    "rate_limit",
)
#: ``rate_limit = "<n>/<unit>"``: the units and their seconds
RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
CHECK_MODES = ("off", "warn", "refuse")


class ConfigError(ValidationError):
    """The config file is missing, unreadable, or says something the host cannot do."""


@attrs.frozen
class ServerConfig:
    """The ``[server]`` table.

    Attributes:
        host: Interface to listen on.
        port: TCP port.
        token: Bearer token every ``/api`` request must carry (``None``: no auth).
            The ``DURABLEFLOW_TOKEN`` environment variable, when set, takes precedence.
        max_body_bytes: Largest request body accepted (HTTP 413 above it).
        dashboard: Serve the dashboard page at ``/dashboard``.
        cors_origins: Origins (``scheme://host[:port]``) of other sites whose pages may
            call ``/api`` from a browser (lower case, no trailing slash).
        idle_timeout: Seconds a connection may stay open without a request in progress
            (waiting for its first request's headers, or between requests).
        max_connections: Open connections at most (see :mod:`.guard`).
        log_format: ``"text"`` lines or ``"json"`` objects, one per log record.
        tracing: ``"otel"``: OpenTelemetry spans per activation and step attempt.
        metrics_step_names: Distinct step names per workflow that get their own label in
            ``/metrics``; later names are counted as ``other``.
        public_url: The base URL outside services reach the host at (behind a proxy, say):
            webhook URLs are ``<public_url>/hooks/<token>``. ``None``: ``http://host:port``.
        check: What ``serve`` does with the replay check of in-flight instances at start:
            ``"off"`` skips it, ``"warn"`` logs each instance the code would not replay,
            ``"refuse"`` also exits non-zero before serving.
    """

    host: str = "127.0.0.1"
    port: int = 8787
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    dashboard: bool = True
    cors_origins: tuple[str, ...] = ()
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    log_format: str = "text"
    tracing: str = "off"
    metrics_step_names: int = 100
    public_url: str | None = None
    check: str = "warn"

    @property
    def observe(self) -> dict[str, Any]:
        """The settings of the host's observer (metrics and tracing)."""
        return {"tracing": self.tracing, "step_name_limit": self.metrics_step_names}

    @property
    def url(self) -> str:
        """The URL a client on this machine reaches the host at."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@attrs.frozen
class WorkflowConfig:
    """One ``[[workflows]]`` entry.

    Attributes:
        name: The workflow's name (URL segment).
        binding: The attribute under which ``env`` exposes it.
        class_name: The ``WorkflowEntrypoint`` subclass in ``main``.
        previous: Older classes in ``main`` that keep running the in-flight instances
            of their ``version`` (each must declare one, all different).
        retries: Default retry policy of its steps (the dict form), if set.
        timeout: Default per-attempt timeout of its steps, if set.
        run_retries: How often ``run()`` runs again when it raises (the dict form of
            ``retries``: ``limit``, ``delay``, ``backoff``), if set.
        flow: Its flow control (``max_concurrency``, ``key_concurrency``,
            ``rate_limit``), enforced where instances are claimed.
        concurrency_key: The dotted path into the params (``params.customer_id``) of the
            key ``key_concurrency`` counts by.
    """

    name: str
    binding: str
    class_name: str
    retries: Mapping[str, Any] | None = None
    timeout: str | int | float | None = None
    run_retries: Mapping[str, Any] | None = None
    flow: FlowLimits = attrs.field(factory=FlowLimits)
    concurrency_key: str | None = None
    previous: tuple[str, ...] = ()


@attrs.frozen
class Config:
    """A loaded ``durableflow.toml``.

    Attributes:
        path: The config file (absolute).
        base_dir: Its directory; relative paths in it are relative to this.
        main: The ``main`` entry as written (a file path or a dotted module).
        app: ``"module:attribute"`` of user routes to mount, if any.
        storage_url: The store URL, SQLite paths made absolute.
        storage_durability: ``[storage] durability`` (``"normal"``/``"full"``), if set.
        storage_retention: ``[storage] retention`` in seconds: finished instances are
            deleted this long after they ended (``None``: kept forever).
        unavailable_timeout: ``[storage] unavailable_timeout`` in seconds: how long a
            request waits for an unreachable store before it is answered 503.
        server: The ``[server]`` table.
        workflows: The ``[[workflows]]`` entries, in file order.
        schedules: The ``[[schedules]]`` entries, in file order.
    """

    path: Path
    base_dir: Path
    main: str
    app: str | None
    storage_url: str
    server: ServerConfig
    workflows: list[WorkflowConfig]
    storage_durability: str | None = None
    storage_retention: float | None = None
    unavailable_timeout: float = DEFAULT_UNAVAILABLE_TIMEOUT
    schedules: list[ScheduleConfig] = attrs.field(factory=list)


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _expect(value: object, kind: type | tuple[type, ...], path: Path, key: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{_where(path, key)} must be {what}, not {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], path: Path, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))} in {where} "
            f"(allowed: {', '.join(allowed)})"
        )


def resolve_storage_url(url: str, base_dir: Path) -> str:
    """Make a relative ``sqlite:///`` path absolute against ``base_dir``.

    Other URLs (``postgresql://...``) are returned as they are.
    """
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        return url
    raw = unquote(parsed.netloc + parsed.path)
    if raw.startswith("//"):
        return url  # sqlite:////absolute/path.db
    relative = raw[1:] if raw.startswith("/") else raw
    if not relative:
        raise ConfigError(f"storage url {url!r} names no file")
    return "sqlite:///" + str((base_dir / relative).resolve())


def default_binding(name: str) -> str:
    """The binding a workflow gets when the config names none: ``order-flow`` -> ``ORDER_FLOW``."""
    return name.upper().replace("-", "_")


def load_config(path: Path | None = None) -> Config:
    """Read and check a ``durableflow.toml``.

    Args:
        path: The file (``None``: ``./durableflow.toml``). A directory means the
            ``durableflow.toml`` inside it.

    Returns:
        The config, with defaults filled in and SQLite paths made absolute.

    Raises:
        ConfigError: The file is missing or not TOML, or a key is unknown, missing or of
            the wrong type, or a workflow name or binding is invalid or used twice.
    """
    if path is None:
        path = Path.cwd() / DEFAULT_CONFIG_NAME
    path = Path(path)
    if path.is_dir():
        path = path / DEFAULT_CONFIG_NAME
    path = path.absolute()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"no config file at {path} (create a durableflow.toml or pass --config)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    base_dir = path.parent
    _check_keys(data, _TOP_KEYS, path, "the top level")

    main = data.get("main")
    if main is None:
        raise ConfigError(
            f"{path}: 'main' is missing (the Python file or module of your workflows)"
        )
    _expect(main, str, path, "main", "a file path or a dotted module name")
    if not main.strip():
        raise ConfigError(f"{path}: 'main' is empty")
    app = data.get("app")
    if app is not None:
        _expect(app, str, path, "app", "'module:attribute'")
        if app.count(":") != 1 or not all(part.strip() for part in app.split(":")):
            raise ConfigError(f"{path}: app must be 'module:attribute', not {app!r}")

    storage = _expect(data.get("storage", {}), dict, path, "[storage]", "a table")
    _check_keys(storage, _STORAGE_KEYS, path, "[storage]")
    url = _expect(storage.get("url", DEFAULT_STORAGE_URL), str, path, "storage.url", "a string")
    durability = storage.get("durability")
    if durability is not None and durability not in ("normal", "full"):
        raise ConfigError(
            f"{path}: storage.durability must be 'normal' or 'full', not {durability!r}"
        )
    retention = _retention(storage.get("retention"), path)
    raw_timeout = storage.get("unavailable_timeout", DEFAULT_UNAVAILABLE_TIMEOUT)
    _expect(raw_timeout, (str, int, float), path, "storage.unavailable_timeout", "a duration")
    try:
        # a number is milliseconds, as every duration (5000 = "5 seconds")
        unavailable_timeout = (
            DEFAULT_UNAVAILABLE_TIMEOUT
            if "unavailable_timeout" not in storage
            else to_seconds(raw_timeout, what="storage.unavailable_timeout")
        )
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    if not 0 < unavailable_timeout <= 3600:
        raise ConfigError(
            f"{path}: storage.unavailable_timeout must be more than 0 and at most 1 hour, "
            f"not {raw_timeout!r}"
        )
    try:
        storage_url = resolve_storage_url(url, base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None

    server_table = _expect(data.get("server", {}), dict, path, "[server]", "a table")
    _check_keys(server_table, _SERVER_KEYS, path, "[server]")
    host = _expect(server_table.get("host", "127.0.0.1"), str, path, "server.host", "a string")
    port = _expect(server_table.get("port", 8787), int, path, "server.port", "an integer")
    if not 0 <= port <= 65535:
        raise ConfigError(f"{path}: server.port must be between 0 and 65535, not {port}")
    token = server_table.get("token")
    if token is not None:
        _expect(token, str, path, "server.token", "a string")
    env_token = os.environ.get(TOKEN_ENV)
    if env_token:
        token = env_token
    max_body = _expect(
        server_table.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        int,
        path,
        "server.max_body_bytes",
        "an integer",
    )
    if max_body < 1024:
        raise ConfigError(f"{path}: server.max_body_bytes must be at least 1024, not {max_body}")
    dashboard = _expect(
        server_table.get("dashboard", True), bool, path, "server.dashboard", "true or false"
    )
    origins = _expect(
        server_table.get("cors_origins", []),
        list,
        path,
        "server.cors_origins",
        "an array of origins such as 'https://app.example.com'",
    )
    for origin in origins:
        if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin.strip().rstrip("/")):
            raise ConfigError(
                f"{path}: server.cors_origins: {origin!r} is not an origin "
                "('http://host' or 'https://host:port', no path)"
            )
    try:
        idle_timeout = to_seconds(
            server_table.get("idle_timeout", DEFAULT_IDLE_TIMEOUT * 1000),
            what="server.idle_timeout",
        )
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    if not 1 <= idle_timeout <= 3600:
        raise ConfigError(
            f"{path}: server.idle_timeout must be between 1 second and 1 hour, "
            f"not {idle_timeout:g} seconds"
        )
    max_connections = _expect(
        server_table.get("max_connections", DEFAULT_MAX_CONNECTIONS),
        int,
        path,
        "server.max_connections",
        "an integer",
    )
    if max_connections < 16:
        raise ConfigError(
            f"{path}: server.max_connections must be at least 16, not {max_connections}"
        )
    log_format = server_table.get("log_format", "text")
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"{path}: server.log_format must be one of {', '.join(map(repr, LOG_FORMATS))}, "
            f"not {log_format!r}"
        )
    tracing = server_table.get("tracing", "off")
    if tracing not in TRACING_MODES:
        raise ConfigError(
            f"{path}: server.tracing must be one of {', '.join(map(repr, TRACING_MODES))}, "
            f"not {tracing!r}"
        )
    step_names = server_table.get("metrics_step_names", 100)
    if isinstance(step_names, bool) or not isinstance(step_names, int) or step_names < 1:
        raise ConfigError(
            f"{path}: server.metrics_step_names must be a positive integer, not {step_names!r}"
        )
    public_url = server_table.get("public_url")
    if public_url is not None and (
        not isinstance(public_url, str) or not _PUBLIC_URL.fullmatch(public_url.strip())
    ):
        raise ConfigError(
            f"{path}: server.public_url must be an http(s) URL such as "
            f"'https://flows.example.com' (a path is allowed, no query), not {public_url!r}"
        )
    check = server_table.get("check", "warn")
    if check not in CHECK_MODES:
        raise ConfigError(
            f"{path}: server.check must be one of {', '.join(map(repr, CHECK_MODES))}, "
            f"not {check!r}"
        )
    server = ServerConfig(
        host=host,
        port=port,
        token=token or None,
        max_body_bytes=max_body,
        dashboard=dashboard,
        cors_origins=tuple(o.strip().rstrip("/").lower() for o in origins),
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        log_format=log_format,
        tracing=tracing,
        metrics_step_names=step_names,
        public_url=public_url.strip().rstrip("/") if public_url is not None else None,
        check=check,
    )

    entries = _expect(data.get("workflows", []), list, path, "[[workflows]]", "an array of tables")
    workflows: list[WorkflowConfig] = []
    names: set[str] = set()
    bindings: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"workflows[{index}]"
        _expect(entry, dict, path, where, "a table")
        _check_keys(entry, _WORKFLOW_KEYS, path, where)
        for required in ("name", "class_name"):
            if required not in entry:
                raise ConfigError(f"{path}: {where} has no {required!r}")
        name = _expect(entry["name"], str, path, f"{where}.name", "a string")
        try:
            check_id(name, what="workflow name", max_length=64)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {where}: {exc.message}") from None
        where = f"workflow {name!r}"
        if name in names:
            raise ConfigError(f"{path}: workflow name {name!r} is used twice")
        names.add(name)
        binding = _expect(
            entry.get("binding", default_binding(name)), str, path, f"{where} binding", "a string"
        )
        if not binding.isidentifier() or keyword.iskeyword(binding) or binding.startswith("_"):
            raise ConfigError(
                f"{path}: {where}: binding {binding!r} is not a valid Python attribute name"
            )
        if binding in bindings:
            raise ConfigError(f"{path}: binding {binding!r} is used twice")
        bindings.add(binding)
        class_name = _expect(entry["class_name"], str, path, f"{where} class_name", "a string")
        if not class_name.isidentifier():
            raise ConfigError(f"{path}: {where}: class_name {class_name!r} is not a class name")
        retries = entry.get("retries")
        if retries is not None:
            _expect(retries, dict, path, f"{where} retries", "a table")
        timeout = entry.get("timeout")
        if timeout is not None:
            _expect(timeout, (str, int, float), path, f"{where} timeout", "a duration")
        run_retries = entry.get("run_retries")
        if run_retries is not None:
            _expect(run_retries, dict, path, f"{where} run_retries", "a table")
        flow, key_path = _flow(entry, path, where)
        previous = _expect(
            entry.get("previous", []),
            list,
            path,
            f"{where} previous",
            "an array of class names such as ['OrdersV1']",
        )
        for old in previous:
            if not isinstance(old, str) or not old.isidentifier():
                raise ConfigError(f"{path}: {where}: previous {old!r} is not a class name")
        if len(set(previous)) != len(previous) or class_name in previous:
            raise ConfigError(f"{path}: {where}: previous names a class twice")
        workflow = WorkflowConfig(
            name=name,
            binding=binding,
            class_name=class_name,
            retries=retries,
            timeout=timeout,
            run_retries=run_retries,
            flow=flow,
            concurrency_key=key_path,
            previous=tuple(previous),
        )
        try:
            _defaults(workflow)
            _run_retries(workflow)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {where}: {exc.message}") from None
        workflows.append(workflow)
    if not workflows:
        raise ConfigError(f"{path}: no [[workflows]] entry: declare at least one workflow")
    raw_schedules = _expect(
        data.get("schedules", []), list, path, "[[schedules]]", "an array of tables"
    )
    try:
        schedules = parse_schedules(raw_schedules, names)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None

    return Config(
        path=path,
        base_dir=base_dir,
        main=main.strip(),
        app=app,
        storage_url=storage_url,
        storage_durability=durability,
        storage_retention=retention,
        unavailable_timeout=unavailable_timeout,
        server=server,
        workflows=workflows,
        schedules=schedules,
    )


def _positive_int(entry: Mapping[str, Any], key: str, path: Path, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: {where}: {key} must be a positive integer, not {value!r}")
    return value


def parse_rate(value: object) -> tuple[int, float]:
    """``"100/minute"`` (also ``/second``, ``/hour``, plural or not) as ``(100, 60.0)``.

    Raises:
        ValidationError: Anything else.
    """
    count, _, unit = str(value).partition("/") if isinstance(value, str) else ("", "", "")
    seconds = RATE_UNITS.get(unit.strip().lower().removesuffix("s"))
    if seconds is None or not count.strip().isdigit() or int(count) < 1:
        raise ValidationError(
            f"rate_limit must be '<starts>/second', '/minute' or '/hour' (such as "
            f"'100/minute'), not {value!r}"
        )
    return int(count), seconds


def _flow(entry: Mapping[str, Any], path: Path, where: str) -> tuple[FlowLimits, str | None]:
    """A ``[[workflows]]`` entry's flow control and ``concurrency_key`` path."""
    max_concurrency = _positive_int(entry, "max_concurrency", path, where)
    key_concurrency = _positive_int(entry, "key_concurrency", path, where)
    key_path = entry.get("concurrency_key")
    if key_path is not None:
        parts = key_path.split(".") if isinstance(key_path, str) else [""]
        if not all(parts):
            raise ConfigError(
                f"{path}: {where}: concurrency_key must be a dotted path into the params "
                f"such as 'params.customer_id', not {key_path!r}"
            )
        if parts[0] != "params":
            key_path = f"params.{key_path}"
    if (key_path is None) != (key_concurrency is None):
        raise ConfigError(
            f"{path}: {where}: concurrency_key and key_concurrency go together "
            "(the path of the key, and how many may execute per key)"
        )
    rate = entry.get("rate_limit")
    try:
        parsed_rate = parse_rate(rate) if rate is not None else None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {where}: {exc.message}") from None
    flow = FlowLimits(
        max_concurrency=max_concurrency,
        key_concurrency=key_concurrency,
        rate=parsed_rate,
        label=str(rate) if rate is not None else "",
    )
    return flow, key_path


def _retention(value: object, path: Path) -> float | None:
    """``[storage] retention`` in seconds: a duration greater than zero, or ``None``."""
    if value is None:
        return None
    duration = _expect(
        value, (str, int, float), path, "storage.retention", "a duration such as '30 days'"
    )
    try:
        seconds = to_seconds(duration, what="storage.retention")
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    if seconds <= 0:
        raise ConfigError(
            f"{path}: storage.retention must be longer than zero, not {value!r} "
            "(leave it out to keep finished instances forever)"
        )
    return seconds


def _defaults(workflow: WorkflowConfig) -> Any:
    step_config: dict[str, Any] = {}
    if workflow.retries is not None:
        step_config["retries"] = dict(workflow.retries)
    if workflow.timeout is not None:
        step_config["timeout"] = workflow.timeout
    return resolve_config(step_config)


def _is_file_reference(main: str) -> bool:
    return main.endswith(".py") or "/" in main or os.sep in main


def load_main_module(config: Config) -> ModuleType:
    """Import ``main``: a Python file relative to the config, or a dotted module.

    The config's directory is put on ``sys.path`` first, so ``main`` may import its
    sibling modules.

    Raises:
        ConfigError: The file or module does not exist, or importing it failed (the
            message names the exception raised while importing).
    """
    base = str(config.base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    main = config.main
    if _is_file_reference(main):
        file = (config.base_dir / main).resolve()
        if not file.is_file():
            raise ConfigError(f"{config.path}: main file {main!r} not found (looked at {file})")
        module_name = file.stem
        existing = sys.modules.get(module_name)
        if existing is not None and getattr(existing, "__file__", None) == str(file):
            return existing
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{config.path}: cannot import main file {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise ConfigError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(main)
    except ModuleNotFoundError as exc:
        if exc.name is not None and main.startswith(exc.name):
            raise ConfigError(
                f"{config.path}: main module {main!r} not found (searched {base} and sys.path)"
            ) from None
        raise ConfigError(f"importing {main} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"importing {main} failed: {type(exc).__name__}: {exc}") from exc


def load_workflow_classes(
    config: Config, module: ModuleType | None = None
) -> dict[str, type[WorkflowEntrypoint[Any, Any]]]:
    """Find each workflow's class in ``main``.

    Args:
        config: The loaded config.
        module: ``main`` when already imported (default: import it).

    Returns:
        Workflow name -> its ``WorkflowEntrypoint`` subclass, in config order.

    Raises:
        ConfigError: ``main`` cannot be imported, a class is missing, or is not a
            ``WorkflowEntrypoint`` subclass.
    """
    if module is None:
        module = load_main_module(config)
    return {
        workflow.name: _workflow_class(config, module, workflow, workflow.class_name)
        for workflow in config.workflows
    }


def _workflow_class(
    config: Config, module: ModuleType, workflow: WorkflowConfig, class_name: str
) -> type[WorkflowEntrypoint[Any, Any]]:
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(
            f"workflow {workflow.name!r}: class {class_name!r} not found in {config.main}"
        )
    if not isinstance(cls, type) or not issubclass(cls, WorkflowEntrypoint):
        raise ConfigError(
            f"workflow {workflow.name!r}: {config.main}:{class_name} is not a "
            "subclass of durableflow.WorkflowEntrypoint"
        )
    return cls


def build_specs(
    config: Config, classes: Mapping[str, type[WorkflowEntrypoint[Any, Any]]] | None = None
) -> list[WorkflowSpec]:
    """The engine's ``WorkflowSpec`` for each configured workflow.

    Per-workflow ``retries``/``timeout`` become the spec's step defaults; the classes
    named in ``previous`` are found in ``main`` beside the current one.

    Args:
        config: The loaded config.
        classes: The workflow classes (default: :func:`load_workflow_classes`).

    Raises:
        ConfigError: As :func:`load_workflow_classes`; also a previous class without a
            version, or two classes of one workflow with the same version.
    """
    from .engine import WorkflowSpec

    if classes is None:
        classes = load_workflow_classes(config)
    module = load_main_module(config) if any(w.previous for w in config.workflows) else None
    specs = []
    for workflow in config.workflows:
        previous = tuple(
            _workflow_class(config, module, workflow, name)
            for name in workflow.previous
            if module is not None
        )
        try:
            specs.append(
                WorkflowSpec(
                    name=workflow.name,
                    cls=classes[workflow.name],
                    binding=workflow.binding,
                    defaults=_defaults(workflow),
                    run_retries=_run_retries(workflow),
                    flow=workflow.flow,
                    concurrency_key=workflow.concurrency_key,
                    previous=previous,
                )
            )
        except ValidationError as exc:
            raise ConfigError(f"{config.path}: {exc.message}") from None
    return specs


def _run_retries(workflow: WorkflowConfig) -> ResolvedStepConfig | None:
    """The workflow's ``run_retries`` policy, merged over the step retry defaults."""
    if workflow.run_retries is None:
        return None
    try:
        return resolve_config({"retries": dict(workflow.run_retries)})
    except ValidationError as exc:
        raise ValidationError(exc.message.replace("retries", "run_retries", 1)) from None
