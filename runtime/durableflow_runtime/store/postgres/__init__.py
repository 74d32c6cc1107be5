"""The PostgreSQL store: several hosts share one database and coordinate through it.

How the hosts stay out of each other's way:

* **Claims.** A host takes runnable instances with ``UPDATE ... WHERE key IN (SELECT ...
  FOR UPDATE SKIP LOCKED)``, which bumps the instance's ``epoch`` and gives the host a
  lease (``owner``, ``lease_expires``). Instances whose lease expired are runnable too:
  that is how another host takes over from one that died or stalled.
* **Leases.** The store renews the leases it holds every ``lease_seconds / 3`` until the
  instance suspends, finishes, or is terminated or restarted, so the engine knows nothing
  of them. A renewal that finds the epoch moved drops the lease and stops the activation.
* **Fencing.** Every write of a running instance names its lease's epoch and locks the
  instance row for the rest of its transaction; when the epoch moved on the write does
  nothing and raises :class:`LeaseLost`. A host that comes back from a stall commits
  nothing for instances another host took over.
* **Group commit.** Fenced writes are queued and applied by one flush loop, one batch per
  transaction. Within a batch, writes of one instance keep their call order; writes of
  different instances are grouped into one multi-row statement per kind, so a batch of a
  thousand step results is a handful of round trips and one commit.
* **Push, with polling behind it.** ``LISTEN/NOTIFY`` tells the other hosts about new
  instances, events that wake an instance, and pause / resume / terminate / restart of
  instances they run; a poll every ``poll_interval`` covers lost notifications.
* **Outages.** A write that fails before its commit (the server restarted, a deadlock)
  is retried for up to ``reconnect_timeout`` seconds; the pool reconnects and the LISTEN
  connection is re-established. A call made for a client (create, read, control, send an
  event) is retried for ``unavailable_timeout`` seconds only (5 by default), then raises
  :class:`StoreUnavailableError` (HTTP 503), so that the answer comes back well inside a
  client's timeout. A full disk (SQLSTATE 53100 ``disk_full``) is not retried: it raises
  :class:`StorageFullError` (HTTP 507), and a running instance's write that meets it
  forfeits its lease, so the instance resumes from its stored steps once space is back. A fenced write whose commit outcome is unknown forfeits
  its lease (:class:`LeaseLost`): the instance is replayed from its stored steps, which
  is always safe. Other writes whose outcome is unknown raise
  :class:`StoreUnavailableError`, so the caller can check and retry.
"""

from durableflow import StoreUnavailableError

from ._schema import MIGRATIONS
from ._store import PostgresStore

__all__ = ["MIGRATIONS", "PostgresStore", "StoreUnavailableError"]
