"""durableflow: durable workflows for Python, in the style of Cloudflare Workflows."""

from ._binding import Workflow, WorkflowInstance
from ._client import Client
from ._config import (
    Backoff,
    ResolvedStepConfig,
    RetryConfig,
    RetryConfigDict,
    StepConfig,
    StepConfigDict,
)
from ._duration import Duration
from ._entrypoint import WorkflowEntrypoint
from ._errors import (
    AuthenticationError,
    EventTimeoutError,
    HostError,
    HostUnreachableError,
    InstanceExistsError,
    InstanceFailedError,
    InvalidParamsError,
    InvalidTransitionError,
    LimitExceededError,
    NonDeterminismError,
    NonRetryableError,
    NotFoundError,
    SerializationError,
    StepFailedError,
    StepTimeoutError,
    StorageFullError,
    StoreUnavailableError,
    ValidationError,
    WorkflowError,
)
from ._step import WorkflowStep
from ._sync_client import SyncClient, SyncWorkflow, SyncWorkflowInstance
from ._types import (
    CreateOptions,
    ErrorInfo,
    InstanceStatus,
    StatusName,
    StepContext,
    WorkflowEvent,
    WorkflowStepEvent,
)

__all__ = [
    "AuthenticationError",
    "Backoff",
    "Client",
    "CreateOptions",
    "Duration",
    "ErrorInfo",
    "EventTimeoutError",
    "HostError",
    "HostUnreachableError",
    "InstanceExistsError",
    "InstanceFailedError",
    "InstanceStatus",
    "InvalidParamsError",
    "InvalidTransitionError",
    "LimitExceededError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "ResolvedStepConfig",
    "RetryConfig",
    "RetryConfigDict",
    "SerializationError",
    "StatusName",
    "StepConfig",
    "StepConfigDict",
    "StepContext",
    "StepFailedError",
    "StepTimeoutError",
    "StorageFullError",
    "StoreUnavailableError",
    "SyncClient",
    "SyncWorkflow",
    "SyncWorkflowInstance",
    "ValidationError",
    "Workflow",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowInstance",
    "WorkflowStep",
    "WorkflowStepEvent",
]
__version__ = "0.1.0"
