"""Conditionals for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import conditional, task, workflow


@task
def double(x: float) -> float:
    return x * 2


@task
def label(prefix: str, x: float) -> str:
    return f"{prefix}:{x:g}"


@task
def shout(text: str) -> str:
    return text.upper()


@workflow
def classify(x: float) -> str:
    """Doubles ``x``, then labels it by size; the label goes on to one more task."""
    score = double(x=x)
    size = (
        conditional("size")
        .if_(score > 10)
        .then(label(prefix="big", x=score))
        .elif_((score > 1) & (score <= 10))
        .then(label(prefix="medium", x=score))
        .else_()
        .then(label(prefix="small", x=x))
    )
    return shout(text=size)


@workflow
def positive_only(x: float) -> float:
    """A conditional on a workflow input whose else fails the execution."""
    return conditional("sign").if_(x >= 0).then(double(x=x)).else_().fail("x must not be negative")


@workflow
def nested(x: float, fast: bool) -> str:
    """A conditional inside a case of another one."""
    return (
        conditional("outer")
        .if_(x > 0)
        .then(
            conditional("inner")
            .if_(fast == True)  # noqa: E712 (a promise compared, not a bool tested)
            .then(label(prefix="fast", x=x))
            .else_()
            .then(label(prefix="slow", x=double(x=x)))
        )
        .else_()
        .then(label(prefix="none", x=x))
    )


@workflow
def doubled_label(prefix: str, x: float = 1.0) -> str:
    """Called from other workflows below: its nodes are inlined there."""
    return label(prefix=prefix, x=double(x=x))


@workflow
def calls_a_subworkflow(x: float) -> str:
    """A subworkflow called directly, and another call of it inside a case of a conditional."""
    first = doubled_label(prefix="first", x=x)
    return (
        conditional("again")
        .if_(x > 0)
        .then(shout(text=doubled_label(prefix=first, x=x)))
        .else_()
        .then(shout(text=first))
    )
