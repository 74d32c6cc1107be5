"""``WorkflowEntrypoint``: the class a user subclasses to write a workflow."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, get_args, get_origin

from ._step import WorkflowStep
from ._types import WorkflowEvent

__all__ = ["WorkflowEntrypoint", "params_type"]

EnvT = TypeVar("EnvT")
ParamsT = TypeVar("ParamsT")


class WorkflowEntrypoint(Generic[EnvT, ParamsT]):
    """Subclass this and write ``run``.

    ``run()`` is re-executed from the top whenever the instance resumes; steps whose
    results are stored return them without running again. Code outside steps must
    therefore be deterministic.

    Attributes:
        env: The bindings the host gives this workflow (one attribute per workflow binding).
    """

    env: EnvT

    def __init__(self, env: EnvT) -> None:
        self.env = env

    async def run(self, event: WorkflowEvent[ParamsT], step: WorkflowStep) -> Any:
        """The workflow's body.

        Args:
            event: The instance's params (``event.payload``), creation time and id.
            step: The step API: ``do``, ``sleep``, ``sleep_until``, ``wait_for_event``.

        Returns:
            The instance's output (JSON-representable).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define async def run(self, event, step)"
        )


def params_type(cls: type[Any]) -> Any:
    """The ``ParamsT`` a workflow class binds, or ``Any`` when it binds none.

    Walks the class's bases looking for ``WorkflowEntrypoint[EnvT, ParamsT]``.
    """
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if get_origin(base) is WorkflowEntrypoint:
                args = get_args(base)
                if len(args) == 2 and not isinstance(args[1], TypeVar):
                    return args[1]
                return Any
    return Any
