"""Type specs: the language-neutral description of a value's type, compiled from Python hints.

A ``TypeSpec`` travels in registrations and events; ``python_type`` turns one back into a type
that ``msgspec.convert`` validates values against, so the scheduler can check values without
importing user code.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec

from plait.core.values import ValueRef, as_ref, contains_refs

PrimitiveName = Literal["int", "float", "str", "bool", "bytes", "none", "any", "file", "directory", "dataframe"]


class Primitive(msgspec.Struct, frozen=True, tag="primitive"):
    name: PrimitiveName


class ListOf(msgspec.Struct, frozen=True, tag="list"):
    item: TypeSpec


class DictOf(msgspec.Struct, frozen=True, tag="dict"):
    value: TypeSpec


class OptionalOf(msgspec.Struct, frozen=True, tag="optional"):
    inner: TypeSpec


class Field(msgspec.Struct, frozen=True):
    name: str
    type: TypeSpec
    required: bool = True


class Record(msgspec.Struct, frozen=True, tag="record"):
    """A msgspec Struct or a dataclass: named fields, encoded as a JSON object."""

    name: str
    fields: tuple[Field, ...]


TypeSpec = Primitive | ListOf | DictOf | OptionalOf | Record

_PRIMITIVE_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "none": None,
    "any": Any,
    "file": ValueRef,  # a File or Directory travels as a reference to its bytes in the values bucket
    "directory": ValueRef,
    "dataframe": ValueRef,  # a pandas DataFrame or an Arrow table, as one Parquet file in the values bucket
}


def describe(spec: TypeSpec) -> str:
    """A short Python-like rendering of the type, for error messages."""
    match spec:
        case Primitive(name="none"):
            return "None"
        case Primitive(name=name):
            return name
        case ListOf(item=item):
            return f"list[{describe(item)}]"
        case DictOf(value=value):
            return f"dict[str, {describe(value)}]"
        case OptionalOf(inner=inner):
            return f"{describe(inner)} | None"
        case Record(name=name):
            return name


@functools.lru_cache(maxsize=4096)
def python_type(spec: TypeSpec) -> Any:
    """A Python type that accepts exactly the builtin (JSON-like) encodings of values of ``spec``."""
    match spec:
        case Primitive(name=name):
            return _PRIMITIVE_TYPES[name]
        case ListOf(item=item):
            return list[python_type(item)]  # type: ignore[misc]
        case DictOf(value=value):
            return dict[str, python_type(value)]  # type: ignore[misc]
        case OptionalOf(inner=inner):
            return python_type(inner) | None
        case Record(name=name, fields=fields):
            return msgspec.defstruct(
                name.rsplit(".", 1)[-1],
                [(f.name, python_type(f.type)) if f.required else (f.name, python_type(f.type), None) for f in fields],
                forbid_unknown_fields=True,
            )


def check_value(spec: TypeSpec, value: Any) -> str | None:
    """None when ``value`` (builtin encoding) conforms to ``spec``, else a message naming the bad path.

    A reference to a stored value stands for a value of any type: its producer checked the value, and the core
    never reads it; the parts of ``value`` around references are checked."""
    try:
        msgspec.convert(value, python_type(spec), strict=True)
    except msgspec.ValidationError as exc:
        if contains_refs(value):
            return _check_around_refs(spec, value, "$")
        return str(exc)
    return None


def _check_around_refs(spec: TypeSpec, value: Any, path: str) -> str | None:
    if as_ref(value) is not None:
        return None
    match spec:
        case ListOf(item=item) if isinstance(value, list):
            problems = (_check_around_refs(item, v, f"{path}[{i}]") for i, v in enumerate(value))
            return next((p for p in problems if p is not None), None)
        case DictOf(value=inner) if isinstance(value, dict):
            problems = (_check_around_refs(inner, v, f"{path}.{k}") for k, v in value.items())
            return next((p for p in problems if p is not None), None)
        case OptionalOf(inner=inner):
            return None if value is None else _check_around_refs(inner, value, path)
        case Record(fields=fields) if isinstance(value, dict):
            known = {f.name: f for f in fields}
            missing = [f.name for f in fields if f.required and f.name not in value]
            unknown = [name for name in value if name not in known]
            if missing or unknown:
                return f"Object at `{path}` has wrong fields (missing {missing}, unknown {unknown})"
            problems = (_check_around_refs(known[k].type, v, f"{path}.{k}") for k, v in value.items())
            return next((p for p in problems if p is not None), None)
    try:
        msgspec.convert(value, python_type(spec), strict=True)
    except msgspec.ValidationError as exc:
        return f"{exc} (at `{path}`)"
    return None


def assignable(source: TypeSpec, target: TypeSpec) -> bool:
    """Whether a value of type ``source`` may be bound to a parameter of type ``target``."""
    if source == target:
        return True
    match source, target:
        case (_, Primitive(name="any")) | (Primitive(name="any"), _):
            return True
        case Primitive(name="int"), Primitive(name="float"):
            return True
        case _, OptionalOf(inner=inner):
            return source == Primitive("none") or assignable(source, inner)
        case ListOf(item=a), ListOf(item=b):
            return assignable(a, b)
        case DictOf(value=a), DictOf(value=b):
            return assignable(a, b)
    return False
