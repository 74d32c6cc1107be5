"""What the engine learns from a step callback: whether it takes ``ctx``, the type its
result is structured into on replay, and whether what it returned can be awaited."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from durableflow import ValidationError

_CTX_CACHE: dict[Any, bool] = {}
_RETURN_CACHE: dict[Any, Any] = {}


def _wants_ctx(callback: Callable[..., Any]) -> bool:
    code = getattr(callback, "__code__", None)
    cached = _CTX_CACHE.get(code) if code is not None else None
    if cached is not None:
        return cached
    try:
        params = [
            p
            for p in inspect.signature(callback).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) > 1:
        raise ValidationError(
            f"a step callback takes no argument or one (ctx), not {len(params)}: {callback!r}"
        )
    wants = len(params) == 1
    if code is not None:
        _CTX_CACHE[code] = wants
    return wants


class _UnresolvedReturn:
    """A return annotation that cannot be resolved: the step fails rather than hand
    ``run()`` a value of another type than the annotation says."""

    def __init__(self, message: str) -> None:
        self.message = message


#: Resolved return types of callables without code of their own (bounded: such
#: callables may be created anew for every call).
_RETURN_CACHE_LIMIT = 1024


def _annotated_function(callback: Callable[..., Any]) -> Any:
    """The function whose annotations describe ``callback``'s result."""
    seen = 0
    target: Any = callback
    while seen < 8:
        seen += 1
        if isinstance(target, functools.partial):
            target = target.func
        elif inspect.ismethod(target):
            target = target.__func__
        elif not hasattr(target, "__code__") and callable(target) and not isinstance(target, type):
            call = inspect.getattr_static(type(target), "__call__", None)  # its method
            if call is None or not hasattr(call, "__code__"):
                return target
            target = call
        else:
            return target
    return target


def _return_type(callback: Callable[..., Any]) -> Any:
    """The callback's annotated result type (``Any`` when it has none).

    Returns:
        The type, or an :class:`_UnresolvedReturn` when the annotation names something
        that cannot be found (a class defined inside ``run()`` under ``from __future__
        import annotations``, a name imported only under ``TYPE_CHECKING``).
    """
    function = _annotated_function(callback)
    code = getattr(function, "__code__", None)
    key = code if code is not None else function
    cached = _RETURN_CACHE.get(key)
    if cached is not None:
        return cached
    annotations = getattr(function, "__annotations__", None) or {}
    if "return" not in annotations:
        hint: Any = Any
        cacheable = True
    else:
        hint, cacheable = _resolve_return(callback, function, annotations["return"])
    if hint is None or hint is type(None):
        hint = Any
    if cacheable:
        if len(_RETURN_CACHE) >= _RETURN_CACHE_LIMIT:
            _RETURN_CACHE.pop(next(iter(_RETURN_CACHE)))
        _RETURN_CACHE[key] = hint
    return hint


def _resolve_return(callback: Any, function: Any, raw: Any) -> tuple[Any, bool]:
    """``(type, cacheable)``: from the module's globals, else from the closure."""
    try:
        return get_type_hints(function).get("return", Any), True
    except Exception as exc:
        first = exc
    # a class defined in run() and used in the callback's body is in its closure; it is a
    # new class object on every replay, so this resolution is not cached
    closure = getattr(function, "__closure__", None) or ()
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    local: dict[str, Any] = {}
    for name, cell in zip(names, closure, strict=False):
        with contextlib.suppress(ValueError):
            local[name] = cell.cell_contents
    if local:
        try:
            return get_type_hints(function, localns=local).get("return", Any), False
        except Exception:
            pass
    name = getattr(callback, "__qualname__", None) or repr(callback)
    text = raw if isinstance(raw, str) else getattr(raw, "__name__", repr(raw))
    return (
        _UnresolvedReturn(
            f"cannot resolve the return annotation {text!r} of step callback {name} "
            f"({type(first).__name__}: {first}): define the type at module level and "
            "import it at run time (not only under TYPE_CHECKING), or remove the annotation"
        ),
        False,
    )


class _NotAwaitable(ValidationError):
    """A step callback returned something that cannot be awaited (a plain function)."""


def _awaited(name: str, value: Any) -> Awaitable[Any]:
    if not inspect.isawaitable(value):
        raise _NotAwaitable(
            f"the callback of step {name!r} returned {type(value).__name__}, not an awaitable: "
            "step callbacks must be async functions (async def)"
        )
    return value
