"""The SQL both stores run, written once with ``?`` placeholders (DBOS's ``SystemDatabase``
shape): each backend builds one :class:`Queries` from its :class:`Dialect` and keeps only
what truly differs (its connection, group commit, claims and leases, migrations).

The dialect hooks are small: placeholder numbering (``$n`` on PostgreSQL), the boolean
literal, the row lock a read-to-write takes (``FOR NO KEY UPDATE``; SQLite's one writer
needs none), the columns a store with leases resets when a lease ends, how a list is
matched (``IN (?, ?)`` or ``= ANY(?::text[])``) and how ``wait_types`` is kept (a
PostgreSQL ``text[]``, a SQLite `` a b `` string).

The statements of the hot path come out constant for PostgreSQL, so every connection
prepares each one once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from durableflow._types import StepRef

from ._flow import EXECUTING
from ._rows import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    HOOK_INSERT_COLUMNS,
    INSTANCE_COLUMNS,
    STEP_COLUMNS,
    instance_from_row,
    like_prefix,
    not_found,
)
from .base import ControlAction, InstanceRow, StepRow
from .transitions import (
    INSTANCE_TABLES,
    Statement,
    control_statements,
    control_transition,
    dropped_steps,
    numbered,
    restart_from_statements,
)

__all__ = ["CLAIM_SET", "POSTGRES", "RUNS_ON", "SQLITE", "Dialect", "Queries", "runs_on"]

#: What an instance needs to run, as one text: its workflow and the version of the class
#: that created it (a workflow name never holds ``/``, so the key is unambiguous).
RUNS_ON = "(workflow || '/' || coalesce(version, ''))"


def runs_on(workflow: str, version: str | None) -> str:
    """The :data:`RUNS_ON` key of instances of ``workflow`` created at ``version``."""
    return f"{workflow}/{version or ''}"


@attrs.frozen
class Dialect:
    """What one SQL dialect writes differently."""

    #: ``$1, $2, ...`` instead of ``?``.
    numbered: bool
    #: The literal for false in a statement.
    false: str
    #: Appended to a read that the same transaction goes on to write.
    lock_row: str
    #: Assignments that end a row's lease (a store whose rows carry one).
    lease_reset: str
    #: ``wait_types`` as a text array (else a `` a b `` string).
    arrays: bool
    #: A cast a parameter needs where the type cannot be inferred (CASE branches).
    float_cast: str
    _numbered_sql: dict[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    def sql(self, text: str) -> str:
        """``text`` with this dialect's placeholders (numbered once per distinct text)."""
        if not self.numbered:
            return text
        found = self._numbered_sql.get(text)
        if found is None:
            found = self._numbered_sql[text] = numbered(text)
        return found

    def any_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """A condition that ``column`` is one of ``values``, and its arguments."""
        if self.arrays:
            return f"{column} = ANY(?::text[])", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def wait_types(self, types: Sequence[str]) -> Any:
        """The ``wait_types`` value an instance waiting for ``types`` keeps."""
        if self.arrays:
            return list(types)
        return " " + " ".join(types) + " " if types else None

    @property
    def waits_for(self) -> str:
        """A condition that the instance waits for the event type given as ``?``."""
        return "? = ANY(wait_types)" if self.arrays else "instr(wait_types, ?) > 0"

    @property
    def can_run(self) -> str:
        """A condition that the host can run the instance: its :data:`RUNS_ON` key is one
        of the list given (twice) by :meth:`can_run_args`, or that list is ``None``."""
        if self.arrays:
            return f"(?::text[] IS NULL OR {RUNS_ON} = ANY(?::text[]))"
        return f"(? IS NULL OR {RUNS_ON} IN (SELECT value FROM json_each(?)))"

    def can_run_args(self, runnable: Sequence[str] | None) -> tuple[Any, Any]:
        """The arguments of :attr:`can_run` for a host that runs ``runnable`` keys."""
        value: Any = runnable
        if runnable is not None and not self.arrays:
            value = orjson.dumps(list(runnable)).decode()
        elif runnable is not None:
            value = list(runnable)
        return value, value

    def wait_key(self, type: str) -> str:
        """The argument of :attr:`waits_for` for ``type``."""
        return type if self.arrays else f" {type} "


SQLITE = Dialect(
    numbered=False, false="0", lock_row="", lease_reset="", arrays=False, float_cast=""
)
POSTGRES = Dialect(
    numbered=True,
    false="false",
    lock_row=" FOR NO KEY UPDATE",
    lease_reset=", owner = NULL, lease_expires = NULL",
    arrays=True,
    float_cast="::float8",
)

#: What a claim does to each row it takes (``?``: the time of the claim); a store with
#: leases adds the lease's owner and expiry.
CLAIM_SET = (
    "status = CASE WHEN status = 'rollingBack' THEN 'rollingBack'"
    " WHEN pause_requested THEN 'waitingForPause' ELSE 'running' END,"
    " run_at = NULL, wait_types = NULL, epoch = epoch + 1, started_at = coalesce(started_at, ?)"
)


class Queries:
    """The statements both stores share, in one dialect.

    Attributes are ready-made statements; methods return ``(sql, args)`` for statements
    whose shape depends on their arguments.
    """

    def __init__(self, dialect: Dialect) -> None:
        d = self.dialect = dialect
        self.instance_by_name = d.sql(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ? AND id = ?"
        )
        self.instance_by_key = d.sql(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE key = ?")
        # control and send_event read the row they go on to change
        self.lock_instance_by_name = self.instance_by_name + d.lock_row
        self.lock_status_by_name = d.sql(
            f"SELECT key, status FROM instances WHERE workflow = ? AND id = ?{d.lock_row}"
        )
        self.steps_of_instance = d.sql(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE instance = ? ORDER BY seq"
        )
        self.events_of_instance = d.sql(
            f"SELECT {EVENT_COLUMNS}, consumed_by FROM events WHERE instance = ? ORDER BY seq"
        )
        #: The earliest ``run_at`` of an instance this host can run (:attr:`Dialect.can_run`).
        self.next_run_at = d.sql(
            f"SELECT min(run_at) FROM instances WHERE run_at IS NOT NULL AND {d.can_run}"
        )
        #: Instances not finished, per version of one workflow (``workflows describe``).
        self.in_flight_by_version = d.sql(
            "SELECT version, count(*) FROM instances WHERE workflow = ?"
            " AND status NOT IN ('complete', 'errored', 'terminated') GROUP BY version"
        )
        #: Instances of one workflow per status (``GET /api/workflows/NAME``): a range of
        #: the ``instances_by_status`` index, no table rows read.
        self.status_counts = d.sql(
            "SELECT status, count(*) FROM instances WHERE workflow = ? GROUP BY status"
        )
        #: Instances per workflow and status, and per workflow how many of them are due
        #: (``run_at`` at or before ``?``: runnable, not yet claimed); one pass, for metrics.
        self.instance_counts = d.sql(
            "SELECT workflow, status, count(*), count(CASE WHEN run_at <= ? THEN 1 END)"
            " FROM instances GROUP BY workflow, status"
        )
        #: Locks the row when the lease's epoch is current; its ``pause_requested``.
        self.fence = d.sql(
            f"SELECT pause_requested FROM instances WHERE key = ? AND epoch = ?{d.lock_row}"
        )
        #: Marks the oldest unconsumed event of a type consumed by a step; the event.
        self.consume_event = d.sql(
            "UPDATE events SET consumed_by = ? WHERE seq = ("
            "SELECT seq FROM events WHERE instance = ? AND type = ? AND consumed_by IS NULL"
            f" ORDER BY seq LIMIT 1) RETURNING {EVENT_COLUMNS}"
        )
        self.suspend_paused = d.sql(
            "UPDATE instances SET status = 'paused', run_at = NULL, wait_types = NULL,"
            f" pause_requested = {d.false}{d.lease_reset} WHERE key = ?"
        )
        #: A fenced instance starts rolling back: its error, the status it then ends with.
        self.begin_rollback = d.sql(
            "UPDATE instances SET status = 'rollingBack', error = ?, rollback_to = ? WHERE key = ?"
        )
        #: A fenced rolling-back instance waits for a rollback's retry.
        self.suspend_rollback = d.sql(
            f"UPDATE instances SET run_at = ?{d.lease_reset} WHERE key = ?"
        )
        #: One step leaves a history (a failed step before ``run()`` runs again).
        self.delete_step = d.sql("DELETE FROM steps WHERE instance = ? AND name = ? AND count = ?")
        #: ``run()`` will run again: one more retry counted, the last error kept.
        self.retry_run = d.sql(
            "UPDATE instances SET error = ?, run_retries = run_retries + 1 WHERE key = ?"
        )
        self.insert_event = d.sql(
            "INSERT INTO events (instance, type, payload, created_at) VALUES (?, ?, ?, ?)"
        )
        #: Locks a child's parent (ordering the event of the child's end against the
        #: parent's suspension, as ``send_event`` does); its workflow and id.
        self.lock_parent = d.sql(f"SELECT workflow, id FROM instances WHERE key = ?{d.lock_row}")
        #: Who owns an id a child would take, and how that instance stands.
        self.child_by_name = d.sql(
            "SELECT key, parent, status, output, error FROM instances WHERE workflow = ? AND id = ?"
        )
        self.has_pending_event = d.sql(
            "SELECT 1 FROM events WHERE instance = ? AND type = ? AND consumed_by IS NULL"
        )
        self.ref_by_key = d.sql("SELECT workflow, id, status FROM instances WHERE key = ?")
        #: The parent of a child that has not ended (it must be told when the child goes).
        self.waiting_parent = d.sql(
            "SELECT parent FROM instances WHERE key = ? AND parent IS NOT NULL"
            " AND status NOT IN ('complete', 'errored', 'terminated')"
        )
        self.children_of = d.sql(
            "SELECT workflow, id, status FROM instances WHERE parent = ? ORDER BY key"
        )
        #: The descendants of an instance that have not ended, newest first (a child's key
        #: is always above its parent's: rows are locked in the order a child's end takes).
        self.running_descendants = d.sql(
            "WITH RECURSIVE tree(key) AS (SELECT key FROM instances WHERE parent = ?"
            " UNION ALL SELECT i.key FROM instances i JOIN tree t ON i.parent = t.key)"
            f" SELECT {INSTANCE_COLUMNS} FROM instances WHERE key IN (SELECT key FROM tree)"
            " AND status NOT IN ('complete', 'errored', 'terminated') ORDER BY key DESC"
        )
        #: Drops the registration of a token (``?``) that is no longer live, so that a
        #: new one can take it.
        self.delete_stale_hook = d.sql(
            "DELETE FROM hooks WHERE token = ? AND (consumed_at IS NOT NULL"
            " OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.key = hooks.instance"
            " AND i.status NOT IN ('complete', 'errored', 'terminated'))"
            " OR (kind = 'hook' AND NOT EXISTS (SELECT 1 FROM steps s"
            " WHERE s.instance = hooks.instance AND s.name = hooks.step"
            " AND s.count = hooks.count AND s.status = 'waiting')))"
        )
        self.insert_hook = d.sql(
            f"INSERT INTO hooks ({HOOK_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (token) DO NOTHING RETURNING token"
        )
        self.hook_by_token = d.sql(
            f"SELECT {HOOK_COLUMNS} FROM hooks h JOIN instances i ON i.key = h.instance"
            " LEFT JOIN steps s ON s.instance = h.instance AND s.name = h.step"
            " AND s.count = h.count WHERE h.token = ?"
        )
        self.hook_instance = d.sql("SELECT instance FROM hooks WHERE token = ?")
        self.lock_instance_status = d.sql(
            f"SELECT key, status FROM instances WHERE key = ?{d.lock_row}"
        )
        self.consume_hook = d.sql("UPDATE hooks SET consumed_at = ? WHERE token = ?")
        self.waiting_configs = d.sql(
            "SELECT s.config FROM steps s JOIN instances i ON s.instance = i.key"
            " WHERE i.workflow = ? AND i.id = ? AND s.type = 'wait_for_event'"
            " AND s.status = 'waiting' ORDER BY s.seq"
        )
        # flow control (see ._flow): what a limited workflow runs and started
        self.flow_executing = d.sql(
            f"SELECT count(*) FROM instances WHERE workflow = ? AND {EXECUTING}"
        )
        self.flow_executing_by_key = d.sql(
            "SELECT concurrency_key, count(*) FROM instances WHERE workflow = ?"
            f" AND {EXECUTING} AND concurrency_key IS NOT NULL"
            " GROUP BY concurrency_key"
        )
        self.flow_executing_for_key = d.sql(
            "SELECT count(*) FROM instances WHERE workflow = ?"
            f" AND {EXECUTING} AND concurrency_key = ?"
        )
        self.flow_started = d.sql(
            "SELECT count(*), min(at) FROM flow_starts WHERE workflow = ? AND at > ?"
        )
        #: A rate-limited workflow's claim that starts instances: its starts that left
        #: the period go, its new ones are counted (a row each; PostgreSQL does both in
        #: one statement, ``_RECORD_STARTS``).
        self.flow_starts_expire = d.sql("DELETE FROM flow_starts WHERE workflow = ? AND at <= ?")
        self.flow_start = d.sql("INSERT INTO flow_starts (workflow, at) VALUES (?, ?)")
        #: At open: starts older than the longest period (an hour), of any workflow.
        self.flow_starts_expire_all = d.sql("DELETE FROM flow_starts WHERE at <= ?")
        self.schedule_states = "SELECT name, paused, last_tick FROM schedules"
        self.pause_schedule = d.sql(
            "INSERT INTO schedules (name, paused, last_tick) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,"
            " last_tick = CASE WHEN excluded.paused THEN schedules.last_tick"
            " ELSE excluded.last_tick END"
        )
        self.mark_schedule_tick = d.sql(
            f"INSERT INTO schedules (name, paused, last_tick) VALUES (?, {d.false}, ?)"
            " ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick"
            " WHERE schedules.last_tick IS NULL OR schedules.last_tick < excluded.last_tick"
        )
        #: Wakes an instance that waits for the event type just sent; its key if it did.
        self.wake_waiting = d.sql(
            "UPDATE instances SET run_at = ? WHERE key = ? AND status = 'waiting'"
            f" AND {d.waits_for} RETURNING key"
        )

    def list_instances(
        self,
        workflow: str,
        status: str | None,
        limit: int,
        cursor: int | None,
        id_prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        version: str | None = None,
    ) -> Statement:
        """Instances of ``workflow`` newest first, with ``key`` below ``cursor``.

        ``id_prefix`` is taken literally (``%`` and ``_`` are no wildcards) and, as
        SQLite's ``LIKE`` ignores ASCII case, also compared exactly with ``substr``;
        ``created_after`` is inclusive, ``created_before`` exclusive.
        """
        sql = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ?"
        args: list[Any] = [workflow]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        if id_prefix is not None:
            sql += " AND id LIKE ? ESCAPE '\\' AND substr(id, 1, ?) = ?"
            args += [like_prefix(id_prefix), len(id_prefix), id_prefix]
        if created_after is not None:
            sql += " AND created_at >= ?"
            args.append(created_after)
        if created_before is not None:
            sql += " AND created_at < ?"
            args.append(created_before)
        if cursor is not None:
            sql += " AND key < ?"
            args.append(cursor)
        sql += " ORDER BY key DESC LIMIT ?"
        args.append(limit)
        return self.dialect.sql(sql), tuple(args)

    def flow_candidates(
        self,
        workflow: str,
        now: float,
        fresh_ok: bool,
        saturated: Sequence[str],
        limit: int,
        runnable: Sequence[str] | None,
    ) -> Statement:
        """Due instances of a limited workflow that could fit, in claim order:
        ``(key, fresh, concurrency_key)``; never-started ones only when ``fresh_ok``,
        none of a ``saturated`` concurrency key, only those the host can run
        (``runnable``, as :attr:`Dialect.can_run`)."""
        d = self.dialect
        sql = (
            "SELECT key, started_at IS NULL, concurrency_key FROM instances"
            f" WHERE workflow = ? AND run_at <= ? AND {d.can_run}"
        )
        args: list[Any] = [workflow, now, *d.can_run_args(runnable)]
        if not fresh_ok:
            sql += " AND started_at IS NOT NULL"
        if saturated:
            match, match_args = self.dialect.any_of("concurrency_key", saturated)
            sql += f" AND (concurrency_key IS NULL OR NOT {match})"
            args += match_args
        sql += " ORDER BY run_at LIMIT ?"
        args.append(limit)
        return self.dialect.sql(sql), tuple(args)

    def next_run_at_unblocked(
        self, blocked: Sequence[str], after: float, runnable: Sequence[str] | None
    ) -> Statement:
        """:attr:`next_run_at`, leaving out the instances of ``blocked`` workflows that
        were due at ``after`` (a limit holds them; the store knows when to look)."""
        d = self.dialect
        match, args = d.any_of("workflow", blocked)
        sql = (
            f"SELECT min(run_at) FROM instances WHERE run_at IS NOT NULL AND {d.can_run}"
            f" AND (NOT {match} OR run_at > ?)"
        )
        return d.sql(sql), (*d.can_run_args(runnable), *args, after)

    def pending_events(self, key: int, types: Sequence[str]) -> Statement:
        """For each of ``types`` with an unconsumed event: the type, the oldest's time."""
        match, args = self.dialect.any_of("type", types)
        sql = (
            "SELECT type, min(created_at) FROM events WHERE instance = ?"
            f" AND {match} AND consumed_by IS NULL GROUP BY type"
        )
        return self.dialect.sql(sql), (key, *args)

    def oldest_events(self, key: int, types: Sequence[str]) -> Statement:
        """For each of ``types`` with an unconsumed event: the oldest, whole."""
        match, args = self.dialect.any_of("type", types)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT min(seq) FROM events"
            f" WHERE instance = ? AND {match} AND consumed_by IS NULL GROUP BY type)"
        )
        return self.dialect.sql(sql), (key, *args)

    def suspend_waiting(
        self, key: int, run_at: float | None, types: Sequence[str], now: float
    ) -> Statement:
        """Suspend a fenced instance until ``run_at`` or an event of ``types``; runnable
        at once when one is pending.

        On PostgreSQL, run it as a statement of its own after :attr:`fence`, so that its
        snapshot includes every event committed before the row lock was taken.
        """
        d = self.dialect
        match, match_args = d.any_of("type", types)
        sql = (
            f"UPDATE instances SET status = 'waiting', wait_types = ?{d.lease_reset},"
            " run_at = CASE WHEN EXISTS (SELECT 1 FROM events WHERE instance = ?"
            f" AND {match} AND consumed_by IS NULL) THEN ?{d.float_cast}"
            f" ELSE ?{d.float_cast} END WHERE key = ?"
        )
        return d.sql(sql), (d.wait_types(types), key, *match_args, now, run_at, key)

    def control(
        self, row: Sequence[Any] | None, workflow: str, id: str, action: ControlAction, now: float
    ) -> tuple[int, list[Statement]]:
        """What ``action`` on the instance read by :attr:`lock_instance_by_name` does:
        its key and the statements to run.

        Raises:
            NotFoundError: No such instance (``row`` is ``None``).
            InvalidTransitionError: The instance's state does not allow it.
        """
        if row is None:
            raise not_found(workflow, id)
        inst = instance_from_row(row)
        effect = control_transition(inst.status, action, inst.id).effect
        d = self.dialect
        statements = control_statements(effect, inst.key, now, d.lease_reset)
        return inst.key, [(d.sql(sql), args) for sql, args in statements]

    def restart_from(
        self, inst: InstanceRow, steps: list[StepRow], ref: StepRef, now: float
    ) -> list[Statement]:
        """The statements of a restart of ``inst`` (read with a row lock) from the step
        ``ref`` of its history ``steps``.

        Raises:
            ValidationError: ``ref`` is not in the history.
        """
        control_transition(inst.status, "restart", inst.id)  # the same rules as a restart
        dropped = dropped_steps(steps, ref, inst.id)
        d = self.dialect
        statements = restart_from_statements(inst.key, dropped, now, d.lease_reset)
        return [(d.sql(sql), args) for sql, args in statements]

    def delete_instance(self, key: int) -> list[Statement]:
        """The statements that delete instance ``key`` and every row stored for it."""
        d = self.dialect
        return [
            *[
                (d.sql(f"DELETE FROM {table} WHERE {column} = ?"), (key,))
                for table, column in INSTANCE_TABLES
            ],
            (d.sql("DELETE FROM instances WHERE key = ?"), (key,)),
        ]

    def terminated(self, key: int, now: float) -> list[Statement]:
        """The statements that terminate instance ``key`` at ``now`` (a running descendant
        of an instance terminated with ``cascade``), its lease ended."""
        d = self.dialect
        statements = control_statements("terminate", key, now, d.lease_reset)
        return [(d.sql(sql), args) for sql, args in statements]
