import durableflow

EXPECTED = {
    "AuthenticationError",
    "Client",
    "HmacSignature",
    "HostError",
    "HostUnreachableError",
    "Backoff",
    "BulkAction",
    "BulkResult",
    "ChildWorkflowError",
    "CreateOptions",
    "DelayFunction",
    "Duration",
    "ErrorInfo",
    "EventTimeoutError",
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
    "SerializationError",
    "Sensitivity",
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
}


def test_public_names_are_pinned():
    """The SDK exports exactly the pinned public names, each importable from durableflow."""
    assert set(durableflow.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(durableflow, name) is not None


def test_error_tree_has_one_root():
    """Every durableflow error derives from WorkflowError and keeps builtin meanings."""
    for name in durableflow.__all__:
        obj = getattr(durableflow, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, durableflow.WorkflowError), name
    assert issubclass(durableflow.ValidationError, ValueError)
    assert issubclass(durableflow.EventTimeoutError, TimeoutError)
    assert issubclass(durableflow.NotFoundError, LookupError)
    assert issubclass(durableflow.StorageFullError, durableflow.StoreUnavailableError)
    assert issubclass(durableflow.StoreUnavailableError, ConnectionError)


def test_sdk_never_imports_the_runtime():
    """Importing the SDK (and its testing kit) does not load the runtime package."""
    import subprocess
    import sys

    code = (
        "import sys, durableflow, durableflow.testing; "
        "assert not any(m.startswith('durableflow_runtime') for m in sys.modules), sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
