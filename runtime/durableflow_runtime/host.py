"""The host process: load the config, run the engine, serve the HTTP API, stop gracefully.

Start-up checks everything that can be wrong before it listens (config, workflow classes,
user routes, the storage lock, the bind address) and fails with one
:class:`StartupError` line. SIGTERM and SIGINT stop it: the HTTP server stops taking
requests, running steps get ``grace`` seconds to finish, and whatever is cut off resumes
on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web
from aiohttp.web_log import AccessLogger

from durableflow import StoreUnavailableError, ValidationError

from .check import check_store, describe, log_results
from .config import Config, ConfigError, build_specs, load_main_module, load_workflow_classes
from .engine import Engine, WorkflowSpec
from .guard import ConnectionGuard, GuardedSite, effective_connection_limit
from .metrics import build_observer  # observe: metrics and tracing
from .retention import RetentionSweeper
from .server import API_ROUTES, ApiSettings, build_app, mount_user_app, workflow_info
from .store.base import open_store, redact_url

#: The cyclic collector's thresholds in a host process (Python's: 700, 10, 10). Bursts of
#: steps and wake-ups allocate many short-lived objects beside many live activations; at
#: the default the collector ran every 700 allocations and fully (over every live object)
#: twice in the second that 10,000 instances woke, 40% of that second (benchmarks.md).
GC_THRESHOLDS = (10_000, 50, 1_000)


def tune_collector() -> None:
    """Set the collector for a process that is a host: what start-up made (modules, the
    app, the engine) is frozen out of its passes, and it runs less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: The in-flight instances of each workflow (those created last) that ``[server] check =
#: "warn"`` replays once a host serves; ``durableflow check`` and ``"refuse"`` check all.
START_CHECK_NEWEST = 1_000

__all__ = ["HostOptions", "StartupError", "check_bind", "run_host"]

log = logging.getLogger("durableflow.host")


class StartupError(Exception):
    """The host cannot start; the message is one line saying why."""


@attrs.frozen
class HostOptions:
    """What ``durableflow serve`` may override on top of the config.

    Attributes:
        host: Interface to listen on (default: the config's).
        port: Port (default: the config's; 0 picks a free one).
        storage_url: Store URL (default: the config's).
        insecure: Allow a non-loopback interface without a token.
        grace: Seconds running steps get to finish at shutdown.
        access_log: Log every HTTP request.
        host_id: This host's identity on a PostgreSQL store (default: the store's).
        check: The replay check at start (``off``, ``warn``, ``refuse``; default: the
            config's ``[server] check``).
    """

    host: str | None = None
    port: int | None = None
    storage_url: str | None = None
    insecure: bool = False
    grace: float = 10.0
    access_log: bool = False
    host_id: str | None = None
    check: str | None = None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to expose an unauthenticated API beyond this machine.

    Raises:
        StartupError: ``host`` is not a loopback address, no token is set, and
            ``insecure`` is false.
    """
    if not _is_loopback(host) and not token and not insecure:
        raise StartupError(
            f"refusing to listen on {host} without a token: set [server] token or "
            "DURABLEFLOW_TOKEN, or pass --insecure to allow it"
        )


def _load_app_target(config: Config) -> Any:
    assert config.app is not None
    module_name, attribute = (part.strip() for part in config.app.split(":"))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError(f"app {config.app!r}: module {module_name!r} not found") from None
        raise ConfigError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    target = getattr(module, attribute, None)
    if target is None:
        raise ConfigError(f"app {config.app!r}: {module_name} has no attribute {attribute!r}")
    return target


def _base_url(host: str, port: int) -> str:
    """``http://host:port``: where webhooks point when ``public_url`` is not set."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _is_reserved(path: str) -> bool:
    return path in ("/healthz", "/api") or path.startswith(("/api/", "/hooks/"))


def _check_reserved(app: web.Application, setting: str | None) -> None:
    """Refuse user routes on the host's own paths (``/api/...``, ``/healthz``)."""
    ours = {handler for _method, _path, handler in API_ROUTES}
    for resource in app.router.resources():
        path = resource.canonical
        if not _is_reserved(path):
            continue
        for route in resource:
            if route.method != "HEAD" and route.handler not in ours:
                raise StartupError(
                    f"app {setting!r}: route {route.method} {path} is on a path the host's "
                    "API reserves (/api, /healthz, /hooks)"
                )


class Host:
    """One running host: an engine and its HTTP server."""

    def __init__(self, config: Config, options: HostOptions) -> None:
        self.config = config
        self.options = options
        self.engine: Engine | None = None
        self.runner: web.AppRunner | None = None
        self.settings = ApiSettings(
            token=config.server.token,
            max_body_bytes=config.server.max_body_bytes,
            dashboard=config.server.dashboard,
            cors_origins=frozenset(config.server.cors_origins),
        )
        self.addresses: list[tuple[str, int]] = []
        self.sweeper: RetentionSweeper | None = None
        self.checker: asyncio.Task[None] | None = None  # the start's replay check (warn)

    async def start(self) -> None:
        """Load everything, open the store, start the engine, listen.

        Raises:
            StartupError: Anything that keeps the host from starting (one line).
        """
        config, options = self.config, self.options
        host = options.host or config.server.host
        port = config.server.port if options.port is None else options.port
        check_bind(host, config.server.token, options.insecure)
        self.settings.local_only = not config.server.token and _is_loopback(host)
        try:
            module = load_main_module(config)
            classes = load_workflow_classes(config, module)
            specs = build_specs(config, classes)
            target = _load_app_target(config) if config.app else None
            url = options.storage_url or config.storage_url
            store_options: dict[str, Any] = {}
            if config.storage_durability and url.startswith("sqlite:"):
                store_options["durability"] = config.storage_durability
            if url.startswith(("postgresql:", "postgres:")) and "unavailable_timeout=" not in url:
                store_options["unavailable_timeout"] = config.unavailable_timeout
            if options.host_id and url.startswith(("postgresql:", "postgres:")):
                store_options["host_id"] = options.host_id
            store = open_store(url, **store_options)
            engine = Engine(
                store,
                specs,
                public_url=config.server.public_url or _base_url(host, port),
                schedules=config.schedules,
            )
            engine.observer = build_observer(engine, **config.server.observe)  # observe:
        except ValidationError as exc:
            raise StartupError(exc.message) from exc
        self.settings.workflows = workflow_info(
            engine, {w.name: w.class_name for w in config.workflows}
        )
        mode = options.check or config.server.check
        if mode == "refuse":
            await self._check(specs, url, mode)
        try:
            await engine.start()
        except (ValidationError, StoreUnavailableError) as exc:
            raise StartupError(exc.message) from exc
        except OSError as exc:
            raise StartupError(
                f"cannot open storage {redact_url(url)}: {exc.strerror or exc}"
            ) from exc
        self.engine = engine
        if config.storage_retention is not None:
            self.sweeper = RetentionSweeper(engine, config.storage_retention)
            self.sweeper.start()
        try:
            await self._listen(engine, target, host, port)
        except BaseException:
            await self._stop_http()
            await self._stop_sweeper()
            await engine.stop(0)
            raise
        if mode == "warn":
            # after the host is ready, on a sample: a start does not wait on (or grow with)
            # the instances in flight; `durableflow check` and refuse check all of them
            self.checker = asyncio.create_task(
                self._check(specs, url, mode, newest=START_CHECK_NEWEST),
                name="durableflow-start-check",
            )

    async def _check(
        self, specs: list[WorkflowSpec], url: str, mode: str, newest: int | None = None
    ) -> None:
        """The replay check of what is in flight: ``warn`` logs each instance this code
        would not replay (in the background, once the host serves), ``refuse`` stops the
        start (before the engine runs anything)."""
        if mode == "off":
            return
        try:
            results = await check_store(specs, url, newest=newest)
        except (ValidationError, StoreUnavailableError) as exc:
            message = f"the replay check cannot read the store: {exc.message}"
            if mode == "refuse":
                raise StartupError(message) from exc
            log.warning("%s; serving without it", message)  # the host may still open it
            return
        except Exception:  # the background check must not end the host, nor go unseen
            if mode == "refuse":
                raise
            log.exception("the replay check failed; serving without it")
            return
        bad = log_results(results)
        if bad and mode == "refuse":
            raise StartupError(
                f"{len(bad)} in-flight instance(s) would not replay on this code "
                f"([server] check = 'refuse'); first: {describe(bad[0])}"
            )

    async def _listen(self, engine: Engine, target: Any, host: str, port: int) -> None:
        user_app: web.Application | None = None
        routes: Any = None
        if target is not None:
            try:
                user_app, routes = await mount_user_app(target, engine.env)
            except ValidationError as exc:
                raise StartupError(f"app {self.config.app!r}: {exc.message}") from exc
            except Exception as exc:
                raise StartupError(
                    f"app {self.config.app!r}: the app factory failed: {type(exc).__name__}: {exc}"
                ) from exc
        app = build_app(engine, self.settings, app=user_app)
        if routes is not None:
            try:
                app.router.add_routes(routes)
            except (ValueError, RuntimeError) as exc:
                raise StartupError(
                    f"app {self.config.app!r}: cannot add its routes: {exc}"
                ) from exc
        _check_reserved(app, self.config.app)
        handler_args: dict[str, Any] = {
            "access_log": (
                logging.getLogger("durableflow.access") if self.options.access_log else None
            ),
            "keepalive_timeout": self.config.server.idle_timeout,
        }
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, **handler_args)
        await self.runner.setup()
        guard = ConnectionGuard(effective_connection_limit(self.config.server.max_connections))
        site = GuardedSite(
            self.runner,
            host,
            port,
            guard=guard,
            handler_args={"access_log_class": AccessLogger, **handler_args},
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.addresses = [(str(a[0]), int(a[1])) for a in self.runner.addresses]
        if self.config.server.public_url is None and port == 0 and self.addresses:
            engine.public_url = _base_url(host, self.addresses[0][1])

    async def _stop_http(self) -> None:
        self.settings.stopping.set()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _stop_sweeper(self) -> None:
        if self.sweeper is not None:
            await self.sweeper.stop()
            self.sweeper = None

    async def stop(self) -> None:
        """Stop taking requests, then give running steps ``grace`` seconds, then close."""
        if self.checker is not None:
            self.checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.checker
            self.checker = None
        await self._stop_http()
        await self._stop_sweeper()
        if self.engine is not None:
            await self.engine.stop(self.options.grace)
            self.engine.observer.close()  # observe: flush buffered spans
            self.engine = None


async def run_host(
    config: Config,
    options: HostOptions,
    *,
    on_ready: Callable[[Host], None] | None = None,
) -> None:
    """Run the host until SIGTERM or SIGINT.

    Raises:
        StartupError: It could not start (one line; nothing is left running).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: the host is already stopping", signal.Signals(signum).name)
            return
        log.info("%s: stopping (grace %gs)", signal.Signals(signum).name, options.grace)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    host = Host(config, options)
    started = False
    try:
        await host.start()
        started = True
        tune_collector()
        if on_ready is not None:
            on_ready(host)
        await stop.wait()
    finally:
        await host.stop()
        if started:
            log.info("stopped")
        for signum in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        sys.stdout.flush()
