"""A conditional: the case taken is decided when the workflow runs, on a task's output.

plait run examples/branching.py:grade --score 0.72
"""

from plait import conditional, task, workflow


@task
def normalize(score: float) -> float:
    return max(0.0, min(1.0, score))


@task
def praise(score: float) -> str:
    return f"excellent ({score:.0%})"


@task
def encourage(score: float) -> str:
    return f"good, keep going ({score:.0%})"


@task
def review(score: float) -> str:
    return f"needs a review ({score:.0%})"


@workflow
def grade(score: float = 0.72) -> str:
    normalized = normalize(score=score)
    return (
        conditional("verdict")
        .if_(normalized >= 0.9)
        .then(praise(score=normalized))
        .elif_((normalized >= 0.5) & (normalized < 0.9))
        .then(encourage(score=normalized))
        .else_()
        .then(review(score=normalized))
    )
