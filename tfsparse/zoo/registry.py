"""One registry of model builders: `create_model(name, **kw)` (after timm).

Builders register themselves with `@register_model`; an unknown name raises a
`UserError` listing the closest registered names, so a typo in a recipe is a
one-line fix instead of a KeyError.
"""

from __future__ import annotations

import inspect
from typing import Callable

from tfsparse.errors import UserError, unknown_name

_MODELS: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    """Decorator: registers `fn` under its own name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_builder(name: str) -> Callable:
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def create_model(name: str, **kwargs):
    """Builds registered model `name`; bad keyword arguments are UserErrors."""
    builder = get_builder(name)
    params = inspect.signature(builder).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise UserError(f"model {name!r} has no argument {unknown[0]!r} "
                        f"(arguments: {', '.join(p for p in params)})")
    try:
        return builder(**kwargs)
    except ValueError as e:
        raise UserError(f"model {name!r}: {e}") from None
