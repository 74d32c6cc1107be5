"""LISTEN/NOTIFY: this host tells the others about new instances, wake-ups and control
actions, hears theirs, and polls behind it in case a notification is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from ..base import Lease
from ._connection import Connections

log = logging.getLogger("durableflow.postgres")


__all__ = ["Notifications"]


class Notifications(Connections):
    """The notifications of :class:`PostgresStore` (which sets the state)."""

    channel: str
    poll_interval: float
    _listener: Any
    _listen_task: asyncio.Task[None] | None
    _subscribers: list[Callable[[str, str, str], None]]
    _held: dict[int, Lease]

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Be told ``(workflow, id, what)`` when another host changes an instance.

        ``what`` is ``pause``, ``resume``, ``terminate``, ``restart`` or ``delete`` for an
        instance this host may be running, ``create``, ``wake``, ``poll`` or ``expired`` when
        something may have become runnable, and ``stream`` when a step appended a chunk to
        one of the instance's streams.
        """
        self._subscribers.append(callback)

    def _emit(self, workflow: str, id: str, what: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(workflow, id, what)
            except Exception:
                log.exception("a store subscriber failed")

    # --- LISTEN/NOTIFY ----------------------------------------------------------------
    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn, server_settings=self._server_settings())
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(lambda _conn: self._listen_lost())
        self._listener = conn

    def _listen_lost(self) -> None:
        self._listener = None
        if self._closing or (self._listen_task is not None and not self._listen_task.done()):
            return
        self._listen_task = asyncio.create_task(self._relisten(), name="durableflow-pg-listen")

    async def _relisten(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._listen()
            except Exception as exc:
                log.debug("LISTEN reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._emit("", "", "poll")  # catch up on what was missed meanwhile
            return

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)  # asyncpg passes the payload as a str; its stubs say object
        try:
            msg = orjson.loads(text)
            host, workflow, id, what = msg["h"], msg["w"], msg["i"], msg["a"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed notification: %r", text[:200])
            return
        if host == self.host_id:
            return  # this host's engine acted on its own change already
        self.stats["notifications"] += 1
        key, epoch = msg.get("k"), msg.get("e")
        if what == "delete" and key is not None:
            self._held.pop(key, None)
        elif what in ("pause", "resume", "terminate", "restart") and key is not None:
            held = self._held.get(key)
            if held is not None and epoch is not None:
                if held.epoch > epoch:
                    # about an earlier activation: this host claimed the instance since
                    what = "wake"
                elif what in ("terminate", "restart"):
                    del self._held[key]
        self._emit(workflow, id, what)

    def _notice(self, what: str, workflow: str, id: str, key: int = 0, epoch: int = 0) -> str:
        """The payload of a notification from this host."""
        notice = {"h": self.host_id, "w": workflow, "i": id, "a": what, "k": key, "e": epoch}
        return orjson.dumps(notice).decode()

    async def _notify(
        self, conn: Any, what: str, workflow: str, id: str, key: int = 0, epoch: int = 0
    ) -> None:
        """Tell the other hosts, when ``conn``'s transaction commits."""
        notice = self._notice(what, workflow, id, key, epoch)
        await conn.execute("SELECT pg_notify($1, $2)", self.channel, notice)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if self._listener is None and (self._listen_task is None or self._listen_task.done()):
                self._listen_lost()
            self._emit("", "", "poll")
