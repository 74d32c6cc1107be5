"""Type stubs for durableflow's public surface (PEP 561)."""

from ._binding import Workflow as Workflow
from ._binding import WorkflowInstance as WorkflowInstance
from ._client import Client as Client
from ._config import Backoff as Backoff
from ._config import DelayFunction as DelayFunction
from ._config import ResolvedRetryConfig as ResolvedRetryConfig
from ._config import ResolvedStepConfig as ResolvedStepConfig
from ._config import RetryConfig as RetryConfig
from ._config import RetryConfigDict as RetryConfigDict
from ._config import Sensitivity as Sensitivity
from ._config import StepConfig as StepConfig
from ._config import StepConfigDict as StepConfigDict
from ._duration import Duration as Duration
from ._entrypoint import WorkflowEntrypoint as WorkflowEntrypoint
from ._errors import AuthenticationError as AuthenticationError
from ._errors import ChildWorkflowError as ChildWorkflowError
from ._errors import EventTimeoutError as EventTimeoutError
from ._errors import HostError as HostError
from ._errors import HostUnreachableError as HostUnreachableError
from ._errors import InstanceExistsError as InstanceExistsError
from ._errors import InstanceFailedError as InstanceFailedError
from ._errors import InvalidParamsError as InvalidParamsError
from ._errors import InvalidTransitionError as InvalidTransitionError
from ._errors import LimitExceededError as LimitExceededError
from ._errors import NonDeterminismError as NonDeterminismError
from ._errors import NonRetryableError as NonRetryableError
from ._errors import NotFoundError as NotFoundError
from ._errors import RetryableError as RetryableError
from ._errors import SerializationError as SerializationError
from ._errors import StepFailedError as StepFailedError
from ._errors import StepTimeoutError as StepTimeoutError
from ._errors import StorageFullError as StorageFullError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._errors import ValidationError as ValidationError
from ._errors import WorkflowError as WorkflowError
from ._output import LogEntry as LogEntry
from ._output import LogLevel as LogLevel
from ._output import StreamChunk as StreamChunk
from ._output import StreamWriter as StreamWriter
from ._step import WorkflowStep as WorkflowStep
from ._sync_client import SyncClient as SyncClient
from ._sync_client import SyncWorkflow as SyncWorkflow
from ._sync_client import SyncWorkflowInstance as SyncWorkflowInstance
from ._types import BulkAction as BulkAction
from ._types import BulkResult as BulkResult
from ._types import CreateOptions as CreateOptions
from ._types import ErrorInfo as ErrorInfo
from ._types import InstanceStatus as InstanceStatus
from ._types import RollbackContext as RollbackContext
from ._types import StatusName as StatusName
from ._types import StepContext as StepContext
from ._types import StepRef as StepRef
from ._types import WorkflowEvent as WorkflowEvent
from ._types import WorkflowStepEvent as WorkflowStepEvent
from ._webhooks import HmacSignature as HmacSignature
from ._webhooks import Webhook as Webhook
from ._webhooks import WebhookRequest as WebhookRequest

__all__ = [
    "AuthenticationError",
    "Backoff",
    "BulkAction",
    "BulkResult",
    "ChildWorkflowError",
    "Client",
    "CreateOptions",
    "DelayFunction",
    "Duration",
    "ErrorInfo",
    "EventTimeoutError",
    "HmacSignature",
    "HostError",
    "HostUnreachableError",
    "InstanceExistsError",
    "InstanceFailedError",
    "InstanceStatus",
    "InvalidParamsError",
    "InvalidTransitionError",
    "LimitExceededError",
    "LogEntry",
    "LogLevel",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "ResolvedRetryConfig",
    "ResolvedStepConfig",
    "RetryConfig",
    "RetryConfigDict",
    "RetryableError",
    "RollbackContext",
    "Sensitivity",
    "SerializationError",
    "StatusName",
    "StepConfig",
    "StepConfigDict",
    "StepContext",
    "StepFailedError",
    "StepRef",
    "StepTimeoutError",
    "StorageFullError",
    "StoreUnavailableError",
    "StreamChunk",
    "StreamWriter",
    "SyncClient",
    "SyncWorkflow",
    "SyncWorkflowInstance",
    "ValidationError",
    "Webhook",
    "WebhookRequest",
    "Workflow",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowInstance",
    "WorkflowStep",
    "WorkflowStepEvent",
]
__version__: str
