"""A host's identity on a PostgreSQL store, stable across restarts, and the generation
that fences an older process of the same identity.

A host restarted after a crash takes back the leases its previous process held at once,
rather than waiting for them to expire. For that it must know which leases were its own:
its ``host_id`` has to be the same after the restart. It is, in order:

1. the ``host_id`` option (``?host_id=`` in the URL, ``durableflow serve --host-id``), or
   the ``DURABLEFLOW_HOST_ID`` environment variable;
2. otherwise ``<hostname>:<slot>``, where the slot is the lowest free one among the lock
   files this machine keeps for the database and schema (``fcntl`` locks, released by
   the kernel when a process dies, ``kill -9`` included). Two hosts on one machine get
   slots 0 and 1; the one of them that restarts gets its slot back.

Two live processes that are wrongly given the same identity (the same ``host_id`` on two
machines) are fenced: each start bumps the identity's ``generation`` in the ``hosts``
table and takes over the identity's leases, which bumps each instance's epoch, so every
write of the older process on those instances is refused (:class:`LeaseLost`). The older
process notices the moved generation at its next lease upkeep, logs an error, hands back
the leases it still holds and claims nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import IO, Any

__all__ = ["HostSlot", "generation_of", "host_slot", "take_over"]

_MAX_SLOTS = 256

#: The statuses of an instance that holds a lease (as in ``_leases``).
_LEASED = "('running', 'waitingForPause', 'rollingBack')"

# One transaction: bump the identity's generation, then expire the leases the identity
# holds so that the next claim (this host's first) takes them with a new epoch.
_START = """
INSERT INTO hosts (host_id, generation) VALUES ($1, 1)
ON CONFLICT (host_id) DO UPDATE SET generation = hosts.generation + 1, started_at = now()
RETURNING generation
"""
_EXPIRE_OWN = f"""
UPDATE instances SET lease_expires = now() - interval '1 second'
WHERE status IN {_LEASED} AND lease_expires >= now() AND owner = $1
"""


class HostSlot:
    """A held slot lock: the slot's file stays locked until :meth:`release`."""

    def __init__(self, host_id: str, file: IO[bytes] | None) -> None:
        self.host_id = host_id
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # closing the descriptor drops its lock
            self._file = None


def host_slot(dsn: str, schema: str | None, lock_dir: Path | None = None) -> HostSlot:
    """The lowest free slot for ``dsn`` and ``schema`` on this machine, locked.

    Falls back to an identity unique to this process (no fast restart) when no lock file
    can be made.
    """
    where = lock_dir or Path(tempfile.gettempdir()) / "durableflow-hosts"
    digest = hashlib.sha256(f"{dsn}\0{schema or ''}".encode()).hexdigest()[:16]
    hostname = socket.gethostname()
    try:
        where.mkdir(mode=0o777, parents=True, exist_ok=True)
        for slot in range(_MAX_SLOTS):
            file = open(where / f"{digest}-{slot}.lock", "ab")  # noqa: SIM115
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                file.close()
                continue
            return HostSlot(f"{hostname}:{slot}", file)
    except OSError:
        pass
    return HostSlot(f"{hostname}:{os.getpid()}:{os.urandom(3).hex()}", None)


async def take_over(conn: Any, host_id: str) -> tuple[int, int]:
    """Start ``host_id``'s new generation and expire the leases it holds; returns the
    generation and how many leases were taken back."""
    async with conn.transaction():
        generation: int = await conn.fetchval(_START, host_id)
        status: str = await conn.execute(_EXPIRE_OWN, host_id)
    return generation, int(status.rsplit(" ", 1)[-1])


async def generation_of(conn: Any, host_id: str) -> int | None:
    """The identity's current generation (``None``: its row is gone)."""
    value: int | None = await conn.fetchval(
        "SELECT generation FROM hosts WHERE host_id = $1", host_id
    )
    return value
