"""The engine: drives users' ``run()`` by replay and records every effect in the store.

One way in for work: an instance becomes runnable in the store (created, woken by a
timer, sent an event, resumed), the scheduler claims it, an *activation* replays its
``run()`` against the stored history, and the activation ends by completing, failing, or
suspending (sleep, wait, retry back-off, pause, shutdown). A suspended instance holds no
memory: it is one row with a ``run_at``.

One module per job (docs/design.md draws the map):

- ``_spec``: what the engine is given (``WorkflowSpec``, ``Limits``, ``InstanceHooks``).
- ``_engine``: ``Engine``, the binding's operations, life cycle and change notification.
- ``_scheduler``: the loop over ``run_at``, concurrency, wake-ups, one activation's drive.
- ``_activation``: the replay of one instance (``_Activation``, ``_Parked``, ``_Suspend``).
- ``_step``: the step object ``run()`` gets (``_EngineStep``), one method per phase.
- ``_callbacks``: what a step callback wants (``ctx``) and returns (its type).
- ``_records``: what the engine reads from and writes into the store's rows.
- ``_rollback``: rollback handlers (``Undo``) and running them in reverse step order.
- ``_output``: streams and logs (``StepOutput``, ``step.log``'s replay rule, the readers).
- ``_hooks``: hooks and webhooks: payload types, taken payloads, webhook verifiers.
- ``_bindings``: the in-process bindings (``Bindings``, ``EngineWorkflow``, ``EngineInstance``).
- ``_schedules``: ``ScheduleRunner``, which starts an instance at every cron tick.
- ``_costly``: ``CostlyReads``, counts over many instances kept from taking the host.
"""

from ._bindings import Bindings, EngineInstance, EngineWorkflow
from ._engine import Engine
from ._records import InstanceRecord
from ._rollback import rollback_record
from ._scheduler import Scheduler
from ._schedules import ScheduleRunner
from ._spec import RESERVED_INSTANCE_IDS, RETRY_AFTER, InstanceHooks, Limits, WorkflowSpec

__all__ = [
    "RESERVED_INSTANCE_IDS",
    "RETRY_AFTER",
    "Bindings",
    "Engine",
    "EngineInstance",
    "EngineWorkflow",
    "InstanceHooks",
    "InstanceRecord",
    "Limits",
    "ScheduleRunner",
    "Scheduler",
    "WorkflowSpec",
    "rollback_record",
]
