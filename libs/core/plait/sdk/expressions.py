"""Conditions on promises: comparisons (``score > 0.5``, ``mode == other``) combined with ``&`` and ``|``."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.model import AllOf, AnyOf, Binding, Comparison, ComparisonOperator, Condition, Constant
from plait.core.types import OptionalOf, Primitive, TypeSpec, check_value, describe
from plait.errors import DefinitionError
from plait.sdk.hints import encode_value


class Operand(msgspec.Struct, frozen=True):
    """What a comparison reads of a promise: where its value comes from, its type, and how to name it."""

    binding: Binding
    type: TypeSpec
    label: str


_ORDERED = {"int", "float", "str", "bytes"}
_NUMBERS = {"int", "float"}


class Expression:
    """A condition on promises, built with comparisons and combined with ``&`` and ``|``."""

    def __init__(self, condition: Condition, text: str) -> None:
        self.condition, self.text = condition, text

    def __and__(self, other: object) -> Expression:
        right = _expression(other, "&")
        return Expression(AllOf((self.condition, right.condition)), f"({self.text}) & ({right.text})")

    def __or__(self, other: object) -> Expression:
        right = _expression(other, "|")
        return Expression(AnyOf((self.condition, right.condition)), f"({self.text}) | ({right.text})")

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"the condition {self.text} is not known while the workflow is defined: use it in "
            "conditional(...).if_(...), and combine conditions with & and |, not 'and'/'or'"
        )

    def __repr__(self) -> str:
        return f"<condition {self.text}>"


def _expression(value: object, operator: str) -> Expression:
    if not isinstance(value, Expression):
        raise DefinitionError(f"'{operator}' combines conditions (comparisons of promises), got {value!r}")
    return value


def _primitive(spec: TypeSpec) -> str:
    return spec.name if isinstance(spec, Primitive) else ""


def compare(left: Operand, op: ComparisonOperator, right: Operand | Any) -> Expression:
    """``left <op> right`` (a promise, and a promise or a constant), checked now: both sides must be comparable
    values of known types."""
    where = f"the condition {left.label} {op} {right.label if isinstance(right, Operand) else repr(right)}"
    left_kind = _primitive(left.type)
    if isinstance(right, Operand):
        right_kind = _primitive(right.type)
        comparable = (left_kind in _NUMBERS and right_kind in _NUMBERS) or (left_kind == right_kind != "")
        if op in ("==", "!=") and left.type == right.type:
            comparable = True
        if not comparable or (op not in ("==", "!=") and left_kind not in _ORDERED):
            raise DefinitionError(f"{where}: cannot compare {describe(left.type)} with {describe(right.type)}")
        return Expression(Comparison(op, left.binding, right.binding), f"{left.label} {op} {right.label}")
    value = encode_value(right)
    if op not in ("==", "!=") and left_kind not in _ORDERED:
        raise DefinitionError(f"{where}: {describe(left.type)} values have no order (only == and != apply)")
    numbers = left_kind in _NUMBERS and isinstance(value, int | float) and not isinstance(value, bool)
    none_check = value is None and isinstance(left.type, OptionalOf)
    if not numbers and not none_check and check_value(left.type, value) is not None:
        raise DefinitionError(f"{where}: {value!r} is not a {describe(left.type)}")
    return Expression(Comparison(op, left.binding, Constant(value)), f"{left.label} {op} {value!r}")
