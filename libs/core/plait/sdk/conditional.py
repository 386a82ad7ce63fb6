"""``conditional``: a branch inside a ``@workflow``, decided when the workflow runs on its promises' values.

    result = (
        conditional("size")
        .if_(count > 100).then(big(n=count))
        .elif_((count > 0) & (mode == "fast")).then(small(n=count))
        .else_().fail("nothing to do")
    )

Each ``then`` takes what task calls made inside it return; those calls run only if their case is taken, and the
other cases' nodes are recorded as skipped. The branch's outputs are the taken case's: every case must produce the
same outputs, of the same types.
"""

from __future__ import annotations

from typing import Any

from plait.core.model import (
    AllOf,
    AnyOf,
    BranchSpec,
    Case,
    Comparison,
    Condition,
    FromNode,
    Guard,
    Node,
    Param,
)
from plait.core.types import describe
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.expressions import Expression
from plait.sdk.signatures import SINGLE_OUTPUT


class _Branch:
    """A conditional being traced: its cases so far, and the branch case it stands in."""

    def __init__(self, name: str) -> None:
        builder = tracing.current_builder()
        if builder is None:
            raise DefinitionError(f"conditional('{name}') can only be used inside a @workflow")
        self.builder = builder
        self.node_id = builder._node_id(name)
        self.outer = builder.guard
        if self.outer is not None:
            builder.guards[self.node_id] = self.outer
        self.cases: list[Case] = []
        self.outputs: tuple[Param, ...] | None = None
        builder.unfinished_branches.append(self.node_id)
        self.where = f"workflow '{builder.workflow_name}', conditional '{self.node_id}'"

    def open_case(self, condition: Expression | None) -> None:
        if self.builder.guard != self.outer:
            raise DefinitionError(f"{self.where}: a case was opened before the previous one was closed with then()")
        if condition is not None:
            if not isinstance(condition, Expression):
                raise DefinitionError(
                    f"{self.where}: case {len(self.cases)} needs a condition such as `promise > 0.5`, got {condition!r}"
                )
            for binding in _operands(condition.condition):
                self.builder.check_visible(binding, f"{self.where}, case {len(self.cases)}: its condition")
        self.builder.guard = Guard(self.node_id, len(self.cases))

    def close_case(self, condition: Expression | None, result: Any, fail: str = "") -> None:
        where = f"{self.where}, case {len(self.cases)}"
        bindings: dict[str, Any] = {}
        params: list[Param] = []
        if not fail:
            for name, promise in _named_results(result, where).items():
                self.builder.check_visible(promise.binding, f"{where}: output '{name}'")
                bindings[name] = promise.binding
                params.append(Param(name, promise.type))
            self._check_outputs(tuple(params), where)
        self.builder.guard = self.outer
        self.cases.append(
            Case(condition=None if condition is None else condition.condition, outputs=bindings, fail=fail)
        )

    def _check_outputs(self, params: tuple[Param, ...], where: str) -> None:
        if self.outputs is None:
            self.outputs = params
        elif self.outputs != params:
            raise DefinitionError(
                f"{where}: produces {_describe_params(params)}, but case 0 produces {_describe_params(self.outputs)} "
                "(every case of a conditional must produce the same outputs)"
            )

    def finish(self) -> Any:
        outputs = self.outputs or ()
        branch = BranchSpec(cases=tuple(self.cases), outputs=outputs)
        self.builder.unfinished_branches.remove(self.node_id)
        self.builder.add(Node(id=self.node_id, task="", inputs={}, branch=branch))
        promises = {
            p.name: tracing.Promise(FromNode(self.node_id, p.name), p.type, f"output '{p.name}' of {self.node_id!r}")
            for p in outputs
        }
        if not promises:
            return None
        if list(promises) == [SINGLE_OUTPUT]:
            return promises[SINGLE_OUTPUT]
        return tracing.Outputs(promises)


def _operands(condition: Condition) -> list[Any]:
    match condition:
        case Comparison(left=left, right=right):
            return [left, right]
        case AllOf(items=items) | AnyOf(items=items):
            return [binding for item in items for binding in _operands(item)]


def _named_results(result: Any, where: str) -> dict[str, tracing.Promise]:
    if result is None:
        return {}
    if isinstance(result, tracing.Outputs):
        return dict(zip(result._names, result, strict=True))
    if isinstance(result, tracing.Promise):
        return {SINGLE_OUTPUT: result}
    raise DefinitionError(f"{where}: then() takes what task calls return (a promise), got {result!r}")


def _describe_params(params: tuple[Param, ...]) -> str:
    if not params:
        return "no output"
    return ", ".join(f"'{p.name}' ({describe(p.type)})" for p in params)


class Conditional:
    """A conditional after a closed case: add ``elif_`` cases, then end with ``else_``."""

    def __init__(self, branch: _Branch) -> None:
        self._branch = branch

    def elif_(self, condition: Expression) -> Then:
        self._branch.open_case(condition)
        return Then(self._branch, condition)

    def else_(self) -> Else:
        self._branch.open_case(None)
        return Else(self._branch)


class Then:
    """A case opened by ``if_``/``elif_``: the task calls written in ``then(...)`` run when it is taken."""

    def __init__(self, branch: _Branch, condition: Expression) -> None:
        self._branch, self._condition = branch, condition

    def then(self, result: Any) -> Conditional:
        self._branch.close_case(self._condition, result)
        return Conditional(self._branch)


class Else:
    """The last case: what runs (``then``) or the failure (``fail``) when no earlier case holds."""

    def __init__(self, branch: _Branch) -> None:
        self._branch = branch

    def then(self, result: Any) -> Any:
        """End the conditional; returns its outputs (the taken case's, when the workflow runs)."""
        self._branch.close_case(None, result)
        return self._branch.finish()

    def fail(self, message: str) -> Any:
        """End the conditional: when no earlier case holds, the branch (and the execution) fails with ``message``."""
        self._branch.close_case(None, None, fail=message or "no case of the conditional holds")
        return self._branch.finish()


class Start:
    """A conditional just named: open its first case with ``if_``."""

    def __init__(self, name: str) -> None:
        self._branch = _Branch(name)

    def if_(self, condition: Expression) -> Then:
        self._branch.open_case(condition)
        return Then(self._branch, condition)


def conditional(name: str) -> Start:
    """Start a conditional named ``name`` inside a ``@workflow`` (see the module's docstring)."""
    return Start(name)


__all__ = ["Expression", "conditional"]
