"""``WorkflowEntrypoint``: the class a user subclasses to write a workflow."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin, get_type_hints

from ._errors import ValidationError
from ._step import WorkflowStep
from ._types import WorkflowEvent

__all__ = ["WorkflowEntrypoint", "output_type", "params_type"]

EnvT = TypeVar("EnvT")
ParamsT = TypeVar("ParamsT")


class WorkflowEntrypoint(Generic[EnvT, ParamsT]):
    """Subclass this and write ``run``.

    ``run()`` is re-executed from the top whenever the instance resumes; steps whose
    results are stored return them without running again. Code outside steps must
    therefore be deterministic.

    Attributes:
        env: The bindings the host gives this workflow (one attribute per workflow binding).
        version: The version of this code (``None``: unversioned). Every instance records
            the version of the class that created it and always runs on the class of that
            version: keep older classes in the config's ``previous`` list while their
            instances are in flight (see "Deploying changes" in the docs).
    """

    env: EnvT
    version: ClassVar[str | None] = None

    def __init__(self, env: EnvT) -> None:
        self.env = env

    async def run(self, event: WorkflowEvent[ParamsT], step: WorkflowStep) -> Any:
        """The workflow's body.

        Args:
            event: The instance's params (``event.payload``), creation time and id.
            step: The step API: ``do``, ``sleep``, ``sleep_until``, ``wait_for_event``.

        Returns:
            The instance's output (JSON-representable). The return annotation is the
            workflow's output type: ``instance.result()`` and ``status().output``
            restore the output to it (attrs classes via cattrs).
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


def output_type(cls: type[Any]) -> Any:
    """The output type of a workflow class: the return annotation of its ``run()``
    (``Any`` when it has none, or does not override ``run``; ``NoneType`` for ``-> None``).

    Raises:
        ValidationError: The annotation names something that cannot be resolved (a name
            imported only under ``TYPE_CHECKING``).
    """
    run = getattr(cls, "run", None)
    if run is None or run is WorkflowEntrypoint.run:
        return Any
    try:
        hint = get_type_hints(run).get("return", Any)
    except Exception as exc:
        raise ValidationError(
            f"cannot resolve the return annotation of {cls.__qualname__}.run() "
            f"({type(exc).__name__}: {exc}): import the type at run time"
        ) from None
    return hint
