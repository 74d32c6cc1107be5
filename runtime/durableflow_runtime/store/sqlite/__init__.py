"""The embedded SQLite store: WAL, one writer, group commit.

Every write is queued and the queue is applied in one transaction per event-loop turn,
so a thousand instances finishing a step in the same turn cost one commit. Where the
commit runs is the ``commit`` setting:

* ``inline`` (default with ``durability="normal"``): on the event-loop thread. With
  ``synchronous=NORMAL`` a WAL commit is an append to the WAL file and never an fsync,
  about 20 microseconds; handing it to a thread would cost more than it saves.
* ``thread`` (default with ``durability="full"``): on one writer thread, because with
  ``synchronous=FULL`` each commit waits on an fsync the event loop must not wait on.

Checkpoints never run on the commit path: auto-checkpointing is off, and a background
thread with its own connection runs a passive checkpoint when the WAL has grown.
See docs/design.md for the measurements behind these defaults.

Storage faults are answered, not crashed on (docs/reliability.md):

* A full disk (``SQLITE_FULL``) fails the batch with :class:`StorageFullError`, a
  read-only file or an I/O error with :class:`StoreUnavailableError`; nothing of the
  batch is applied, reads keep working, and the next batch tries again, so writes resume
  by themselves once space is back. A write of a running instance that fails this way
  stops its activation (:class:`StoreFault`, a :class:`LeaseLost`, so user code cannot
  catch it); the store makes the instance runnable again as soon as it can write.
* The file deleted or replaced under the host is noticed (its device and inode against
  the path's, at every commit and twice a second): from then on every write is refused
  with :class:`StoreUnavailableError` naming the file, because a write acknowledged into
  an unlinked file is lost at the next restart. A copy of everything the host still
  holds is written beside the path (``<file>.rescued-<time>``) for the operator.
"""

from ._files import StoreLockedError
from ._schema import MIGRATIONS
from ._store import CommitMode, Durability, SqliteStore
from ._writer import StoreFault

__all__ = [
    "MIGRATIONS",
    "CommitMode",
    "Durability",
    "SqliteStore",
    "StoreFault",
    "StoreLockedError",
]
