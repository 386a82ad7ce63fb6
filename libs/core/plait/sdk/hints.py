"""Python type hints to ``TypeSpec``s, and values to and from their builtin (JSON-like) encoding."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import msgspec

from plait.core.types import DictOf as DictOfSpec
from plait.core.types import Field, ListOf, OptionalOf, Primitive, Record, TypeSpec
from plait.errors import DefinitionError
from plait.sdk.dataframes import decode_dataframe, encode_dataframe, is_dataframe, is_dataframe_hint
from plait.sdk.files import Directory, File

_PRIMITIVES: dict[Any, TypeSpec] = {
    int: Primitive("int"),
    float: Primitive("float"),
    str: Primitive("str"),
    bool: Primitive("bool"),
    bytes: Primitive("bytes"),
    None: Primitive("none"),
    type(None): Primitive("none"),
    Any: Primitive("any"),
    File: Primitive("file"),
    Directory: Primitive("directory"),
}

SUPPORTED = (
    "int, float, str, bool, bytes, None, Any, File, Directory, list[T], dict[str, T], T | None, msgspec Structs, "
    "dataclasses, pandas.DataFrame, pyarrow.Table"
)


def type_spec(hint: Any, where: str) -> TypeSpec:
    """The spec of ``hint``; ``where`` names the parameter for the error when it cannot be serialized."""
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint]
    if is_dataframe_hint(hint):
        return Primitive("dataframe")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and len(args) == 1:
        return ListOf(type_spec(args[0], where))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise DefinitionError(f"{where}: dict keys must be str, got {args[0]!r}")
        return DictOfSpec(type_spec(args[1], where))
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return OptionalOf(type_spec(others[0], where))
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        fields = msgspec.structs.fields(hint)
        return Record(
            name=f"{hint.__module__}.{hint.__qualname__}",
            fields=tuple(Field(f.name, type_spec(f.type, f"{where}, field '{f.name}'"), f.required) for f in fields),
        )
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return Record(
            name=f"{hint.__module__}.{hint.__qualname__}",
            fields=tuple(
                Field(
                    f.name,
                    type_spec(hints[f.name], f"{where}, field '{f.name}'"),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(hint)
            ),
        )
    raise DefinitionError(f"{where}: type {hint!r} cannot be serialized (supported: {SUPPORTED})")


def encode_value(value: Any) -> Any:
    """The builtin encoding of a value, as stored in events (bytes become base64 strings)."""
    return msgspec.to_builtins(value, enc_hook=_encode_other)


def decode_value(encoded: Any, hint: Any) -> Any:
    """The Python value of ``hint``'s type from its builtin encoding."""
    return msgspec.convert(encoded, hint, strict=False, dec_hook=_decode_other)


def _encode_other(value: Any) -> Any:
    if is_dataframe(value):
        return encode_dataframe(value)
    raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")  # as msgspec says it


def _decode_other(hint: Any, encoded: Any) -> Any:
    if is_dataframe_hint(hint):
        return decode_dataframe(encoded, hint)
    raise TypeError(f"Decoding objects of type {hint!r} is unsupported")
