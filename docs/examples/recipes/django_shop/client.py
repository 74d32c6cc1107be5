"""One ``SyncClient`` per process and host URL, shared by views, commands and threads."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

from durableflow import SyncClient

if TYPE_CHECKING:
    from env import TypedSyncClient  # written by `durableflow types`

_clients: dict[tuple[str, str | None], TypedSyncClient] = {}
_lock = threading.Lock()


def durableflow_client() -> TypedSyncClient:
    """The client for ``settings.DURABLEFLOW_URL`` (its connections are reused)."""
    key = (settings.DURABLEFLOW_URL, settings.DURABLEFLOW_TOKEN)
    with _lock:
        if key not in _clients:
            _clients[key] = SyncClient(key[0], token=key[1])
        return _clients[key]


def close_clients() -> None:
    """Close every client made so far (a worker shutting down, or a test ending)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
