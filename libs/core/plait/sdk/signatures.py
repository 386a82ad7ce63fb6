"""The interface of a Python function (a task's or a workflow's) from its signature and type hints."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from plait.core.model import Interface, Param
from plait.errors import DefinitionError
from plait.sdk.hints import encode_value, type_spec

SINGLE_OUTPUT = "result"


def is_named_tuple(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def output_hints(return_hint: Any) -> dict[str, Any]:
    """Output names and hints: a NamedTuple's fields, one ``result``, or none for ``None``."""
    if return_hint in (None, type(None)):
        return {}
    if is_named_tuple(return_hint):
        return dict(typing.get_type_hints(return_hint))
    return {SINGLE_OUTPUT: return_hint}


def interface_of(fn: Callable[..., Any], owner: str) -> tuple[Interface, dict[str, Any]]:
    """The interface of a function from its signature and hints; also returns the input hints."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise DefinitionError(f"{owner}: a type hint cannot be resolved: {exc}") from exc
    inputs: list[Param] = []
    input_hints: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise DefinitionError(f"{owner}: parameter '{name}': *args and **kwargs are not supported")
        if name not in hints:
            raise DefinitionError(f"{owner}: parameter '{name}' needs a type hint")
        spec = type_spec(hints[name], f"{owner}: parameter '{name}'")
        default = msgspec.UNSET if parameter.default is parameter.empty else encode_value(parameter.default)
        inputs.append(Param(name, spec, default))
        input_hints[name] = hints[name]
    if "return" not in hints:
        raise DefinitionError(f"{owner}: the return type needs a hint (use -> None for no output)")
    outputs = tuple(
        Param(name, type_spec(hint, f"{owner}: output '{name}'"))
        for name, hint in output_hints(hints["return"]).items()
    )
    return Interface(tuple(inputs), outputs), input_hints
