"""The durableflow error tree.

Every error the SDK or the host raises on purpose derives from one root::

    WorkflowError(Exception)              root; carries .message
    ├── NonRetryableError                 raise in a step callback: no further attempts
    ├── RetryableError                    raise in a step callback: retry, after retry_after
    ├── StepFailedError                   a step failed for good (retries exhausted,
    │   │                                 non-retryable, bad result); raised into run()
    │   ├── StepTimeoutError              ... its last attempt exceeded the step timeout
    │   └── ChildWorkflowError            ... step.run_workflow: the child errored, was
    │                                     terminated, or did not end within the timeout
    ├── EventTimeoutError(TimeoutError)   wait_for_event saw no event before its timeout
    ├── NonDeterminismError               replayed run() disagrees with stored history
    ├── SerializationError(TypeError)     a value is not JSON-representable
    ├── ValidationError(ValueError)       bad input: an id, a name, a config, params
    │   ├── InvalidParamsError            params do not structure into the ParamsT
    │   └── LimitExceededError            a size or count limit was exceeded
    ├── NotFoundError(LookupError)        unknown workflow or instance
    ├── InstanceExistsError               create() with an id that is taken
    ├── InvalidTransitionError            e.g. resume a complete instance
    ├── InstanceFailedError               result(): the instance errored or was terminated
    ├── StoreUnavailableError(ConnectionError)  the store cannot take the call just now
    │   └── StorageFullError              ... its disk is full (HTTP 507); free space
    └── HostError                         Client: an HTTP answer no class above fits
        ├── AuthenticationError           ... 401: a missing or wrong token
        └── HostUnreachableError(ConnectionError)  the host cannot be reached at all
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._duration import Duration
    from ._types import ErrorInfo

__all__ = [
    "AuthenticationError",
    "ChildWorkflowError",
    "EventTimeoutError",
    "HostError",
    "HostUnreachableError",
    "InstanceExistsError",
    "InstanceFailedError",
    "InvalidParamsError",
    "InvalidTransitionError",
    "LimitExceededError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "RetryableError",
    "SerializationError",
    "StepFailedError",
    "StepTimeoutError",
    "StorageFullError",
    "StoreUnavailableError",
    "ValidationError",
    "WorkflowError",
]


class WorkflowError(Exception):
    """Root of every error durableflow raises on purpose.

    Args:
        message: What went wrong, in one sentence a user can act on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NonRetryableError(WorkflowError):
    """Raised inside a step callback to fail the step at once, without further attempts."""


class RetryableError(WorkflowError):
    """Raised inside a step callback: the attempt failed, and the next one waits
    ``retry_after`` instead of the configured back-off (Vercel Workflow's ``RetryableError``).

    The step's retry limit still applies: when it is used up, the step fails for good as
    it would for any other error.

    Args:
        message: What went wrong.
        retry_after: How long to wait before the next attempt, a ``Duration``
            (``None``: the step's configured back-off).

    Attributes:
        retry_after: The wait, in seconds (``None`` when not given).

    Raises:
        ValidationError: ``retry_after`` is not a valid duration.
    """

    def __init__(self, message: str, *, retry_after: Duration | None = None) -> None:
        super().__init__(message)
        from ._duration import to_seconds  # _duration imports this module

        self.retry_after: float | None = (
            None if retry_after is None else to_seconds(retry_after, what="retry_after")
        )


class StepFailedError(WorkflowError):
    """A step failed for good; raised into ``run()``, where user code may catch it.

    Args:
        message: Human-readable summary.
        step_name: The failed step's name.
        error_name: Class name of the step's last error (``"ValueError"``).
        error_message: Message of the step's last error.
    """

    def __init__(
        self, message: str, *, step_name: str, error_name: str, error_message: str
    ) -> None:
        super().__init__(message)
        self.step_name = step_name
        self.error_name = error_name
        self.error_message = error_message


class StepTimeoutError(StepFailedError):
    """A step failed for good because its last attempt exceeded the step's timeout."""


class ChildWorkflowError(StepFailedError):
    """``step.run_workflow``: the child instance did not complete.

    Raised into the parent's ``run()``, where user code may catch it. ``status`` says how
    the child ended: ``"errored"`` (``error`` is the child's own error), ``"terminated"``
    (``error.name`` is ``"Terminated"``), or ``"running"`` when the parent stopped waiting
    because the step's ``timeout`` passed (``error.name`` is ``"TimeoutError"``; the child
    goes on running).

    Args:
        message: Human-readable summary.
        step_name: The ``run_workflow`` step's name.
        workflow: The child's workflow name.
        instance_id: The child's instance id.
        status: ``"errored"``, ``"terminated"`` or ``"running"``.
        error: The child's error, as its ``InstanceStatus.error`` says.
    """

    def __init__(
        self,
        message: str,
        *,
        step_name: str,
        workflow: str,
        instance_id: str,
        status: str,
        error: ErrorInfo,
    ) -> None:
        super().__init__(
            message, step_name=step_name, error_name=error.name, error_message=error.message
        )
        self.workflow = workflow
        self.instance_id = instance_id
        self.status = status
        self.error = error


class EventTimeoutError(WorkflowError, TimeoutError):
    """``wait_for_event`` timed out before an event of its type arrived.

    Args:
        message: Human-readable summary.
        step_name: The waiting step's name.
        event_type: The event type it waited for.
    """

    def __init__(self, message: str, *, step_name: str, event_type: str) -> None:
        super().__init__(message)
        self.step_name = step_name
        self.event_type = event_type


class NonDeterminismError(WorkflowError):
    """A replay of ``run()`` asked for steps in an order the stored history does not have."""


class SerializationError(WorkflowError, TypeError):
    """A step result, params, payload or output is not JSON-representable."""


class ValidationError(WorkflowError, ValueError):
    """Bad input: an id, a name, a step config, a duration or params."""


class InvalidParamsError(ValidationError):
    """Params given to ``create`` do not structure into the workflow's params type."""


class LimitExceededError(ValidationError):
    """A configured limit (payload size, step count, batch size, sleep length) was exceeded."""


class NotFoundError(WorkflowError, LookupError):
    """An unknown workflow or instance."""


class InstanceExistsError(WorkflowError):
    """``create`` was given an instance id that already exists for this workflow."""


class InvalidTransitionError(WorkflowError):
    """The instance's state does not allow the asked action (e.g. resume a complete one)."""


class InstanceFailedError(WorkflowError):
    """``WorkflowInstance.result()``: the instance ended ``errored`` or ``terminated``.

    Args:
        message: Human-readable summary.
        status: ``"errored"`` or ``"terminated"``.
        error_name: Class name of the error that ended it (``None`` when terminated).
        error_message: That error's message.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str,
        error_name: str | None = None,
        error_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_name = error_name
        self.error_message = error_message


class HostError(WorkflowError):
    """``durableflow.Client``: the host answered with an error no closer class fits.

    Args:
        message: The host's message.
        status: The HTTP status (0 when there was no answer).
        code: The error code of the host's JSON error body.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(HostError):
    """``durableflow.Client``: the host refused the request's token (HTTP 401)."""


class HostUnreachableError(HostError, ConnectionError):
    """``durableflow.Client``: the host could not be reached (refused, reset, DNS)."""


class StoreUnavailableError(WorkflowError, ConnectionError):
    """The store cannot take the call just now: PostgreSQL cannot be reached, the SQLite
    file is read-only, failing with I/O errors or was deleted, or a write's outcome is
    unknown after a failure. Nothing acknowledged was lost; the message says what to do."""


class StorageFullError(StoreUnavailableError):
    """The store's disk is full (SQLite ``SQLITE_FULL``, PostgreSQL ``disk_full``).

    Nothing acknowledged was lost and reads keep working; writes succeed again once space
    is freed, without a restart. A subclass of :class:`StoreUnavailableError`, so code
    that handles "the store is away, try later" handles this too.
    """
