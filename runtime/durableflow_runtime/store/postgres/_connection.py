"""Connections to PostgreSQL: which failures are transient, the session settings, and
the calls made for clients, retried while the database is away but answered within
``unavailable_timeout``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from durableflow import StorageFullError, StoreUnavailableError

from ..base import redact_url

T = TypeVar("T")

__all__ = [
    "Connections",
    "disk_full",
    "keep_session",
    "learn_types",
    "lost_midway",
    "teach_types",
    "transient",
]


def disk_full(exc: BaseException) -> bool:
    """PostgreSQL could not write for lack of space (SQLSTATE 53100, ``disk_full``)."""
    return isinstance(exc, asyncpg.exceptions.DiskFullError)


def transient(exc: BaseException) -> bool:
    """A failure that left nothing applied and may pass: retry after reconnecting."""
    if disk_full(exc):
        return False  # space comes back when a person frees it, not in a few seconds
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed" and the like; not bad data or bad configuration
        return not isinstance(exc, asyncpg.exceptions.DataError | ValueError)
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError  # shutdown, starting up, cancelled
        | asyncpg.exceptions.TransactionRollbackError  # deadlock, serialization
        | asyncpg.exceptions.InsufficientResourcesError  # too many connections
        | asyncpg.exceptions.IdleInTransactionSessionTimeoutError
        | asyncpg.exceptions.InvalidCatalogNameError  # database being recreated
        # a connection left in a broken protocol state by a failure; the pool replaces it
        | asyncpg.exceptions._base.InternalClientError
        | OSError,
    )


def lost_midway(exc: BaseException) -> bool:
    """The connection failed while a statement was under way (not a refusal by the server,
    which applies nothing): a statement run on its own may have committed."""
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError | asyncpg.exceptions._base.InternalClientError | OSError,
    )


# The array types the store's statements take as parameters, which asyncpg has no built-in
# codec for: integer[], text[], bigint[], float8[], record[]. It learns each by a query on every new connection
# (three statements with its ``jit`` guard); the store learns them once, at open, and
# hands what it learned to each connection the pool opens after (see ``teach_types``).
_ARRAY_TYPES = (1007, 1009, 1016, 1022, 2287)


async def learn_types(conn: Any) -> Any:
    """What asyncpg learns of the store's array types, read on ``conn`` (``None``: this
    asyncpg does not let it be reused; each connection then learns them itself)."""
    try:
        types, _ = await conn._introspect_types(_ARRAY_TYPES, 10.0)
        conn._protocol.get_settings().register_data_types(types)
    except AttributeError:
        return None
    return types


def teach_types(conn: Any, types: Any) -> None:
    """Give a new connection the types :func:`learn_types` read (no round trip)."""
    if types is not None:
        with contextlib.suppress(AttributeError):
            conn._protocol.get_settings().register_data_types(types)


class _UnknownOutcome(Exception):
    """A commit failed in a way that does not say whether it happened."""


async def keep_session(_conn: Any) -> None:
    """Pool reset hook: the store changes no session state, so nothing to reset (asyncpg's
    default would cost a round trip each time a connection goes back to the pool)."""


class Connections:
    """The pool and the client calls of :class:`PostgresStore` (which sets the state)."""

    host_id: str
    schema: str | None
    lease_seconds: float
    unavailable_timeout: float
    stats: dict[str, int]
    _dsn: str
    _pool: Any
    _closing: bool

    def _server_settings(self) -> dict[str, str]:
        settings = {
            "application_name": f"durableflow:{self.host_id}"[:63],
            # a host stopped in the middle of a transaction must not keep its row locks
            # (and so its instances) from the others for longer than a lease
            "idle_in_transaction_session_timeout": str(int(self.lease_seconds * 1000)),
        }
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    # --- connections ------------------------------------------------------------------
    def _pool_or_fail(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def _call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` on a pooled connection; retry while the database is away."""
        return await self._retrying(fn, transaction=False)

    async def _transact(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in a transaction; retry while nothing can have been applied."""
        return await self._retrying(fn, transaction=True)

    async def _retrying(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool) -> T:
        loop = asyncio.get_running_loop()
        # a client waits on this call: answer within unavailable_timeout, found or not
        deadline = loop.time() + self.unavailable_timeout
        delay = 0.05
        while True:
            try:
                remaining = max(deadline - loop.time(), 0.01)
                async with self._pool_or_fail().acquire(timeout=remaining) as conn:
                    if not transaction:
                        return await fn(conn)
                    tr = conn.transaction()
                    await tr.start()
                    try:
                        result = await fn(conn)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await tr.rollback()
                        raise
                    try:
                        await tr.commit()
                    except Exception as exc:
                        if transient(exc):
                            raise _UnknownOutcome(str(exc)) from exc
                        raise
                    return result
            except _UnknownOutcome as exc:
                raise StoreUnavailableError(
                    f"the connection to PostgreSQL failed while committing; the write may "
                    f"or may not have been applied: {exc}"
                ) from exc.__cause__
            except Exception as exc:
                if disk_full(exc):
                    raise StorageFullError(
                        f"the disk of PostgreSQL at {redact_url(self._dsn)} is full (disk_full, "
                        f"SQLSTATE 53100): the write was not applied. Free space on the "
                        f"database server; writes resume by themselves. {exc}"
                    ) from exc
                if not (transient(exc) or isinstance(exc, TimeoutError)) or self._closing:
                    raise
                now = loop.time()
                if now >= deadline:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {redact_url(self._dsn)} did not answer within "
                        f"{self.unavailable_timeout:g}s ([storage] unavailable_timeout): {exc}. "
                        "Nothing acknowledged was lost; check the database and try again."
                    ) from exc
                self.stats["retries"] += 1
                await asyncio.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 1.0)
