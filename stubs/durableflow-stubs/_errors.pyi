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
    message: str
    def __init__(self, message: str) -> None: ...

class NonRetryableError(WorkflowError): ...

class RetryableError(WorkflowError):
    retry_after: float | None
    def __init__(self, message: str, *, retry_after: Duration | None = None) -> None: ...

class StepFailedError(WorkflowError):
    step_name: str
    error_name: str
    error_message: str
    def __init__(
        self, message: str, *, step_name: str, error_name: str, error_message: str
    ) -> None: ...

class StepTimeoutError(StepFailedError): ...

class ChildWorkflowError(StepFailedError):
    workflow: str
    instance_id: str
    status: str
    error: ErrorInfo
    def __init__(
        self,
        message: str,
        *,
        step_name: str,
        workflow: str,
        instance_id: str,
        status: str,
        error: ErrorInfo,
    ) -> None: ...

class EventTimeoutError(WorkflowError, TimeoutError):
    step_name: str
    event_type: str
    def __init__(self, message: str, *, step_name: str, event_type: str) -> None: ...

class NonDeterminismError(WorkflowError): ...
class SerializationError(WorkflowError, TypeError): ...
class ValidationError(WorkflowError, ValueError): ...
class InvalidParamsError(ValidationError): ...
class LimitExceededError(ValidationError): ...
class NotFoundError(WorkflowError, LookupError): ...
class InstanceExistsError(WorkflowError): ...
class InvalidTransitionError(WorkflowError): ...

class InstanceFailedError(WorkflowError):
    status: str
    error_name: str | None
    error_message: str | None
    def __init__(
        self,
        message: str,
        *,
        status: str,
        error_name: str | None = None,
        error_message: str | None = None,
    ) -> None: ...

class HostError(WorkflowError):
    status: int
    code: str
    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None: ...

class AuthenticationError(HostError): ...
class HostUnreachableError(HostError, ConnectionError): ...
class StoreUnavailableError(WorkflowError, ConnectionError): ...
class StorageFullError(StoreUnavailableError): ...
