"""Child executions for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import LaunchPlan, task, workflow


@task
def doubled(n: int) -> int:
    return n * 2


@task
def plus_one(n: int) -> int:
    return n + 1


@task
def refuses(n: int) -> int:
    raise ValueError(f"no good: {n}")


@task
def naps(n: int) -> int:
    import time

    time.sleep(300)
    return n


@workflow
def doubling(n: int) -> int:
    return doubled(n=n)


@workflow
def refusing(n: int) -> int:
    return refuses(n=n)


@workflow
def napping(n: int) -> int:
    return naps(n=n)


double_plan = LaunchPlan(doubling, "double_plan")
refusing_plan = LaunchPlan(refusing, "refusing_plan")
napping_plan = LaunchPlan(napping, "napping_plan")
unregistered_plan = LaunchPlan(doubling, "unregistered_plan")


@workflow
def uses_child(n: int) -> int:
    """Doubles ``n`` in a child execution, then adds one."""
    return plus_one(n=double_plan(n=n))


@workflow
def child_fails(n: int) -> int:
    return plus_one(n=refusing_plan(n=n))


@workflow
def child_naps(n: int) -> int:
    return plus_one(n=napping_plan(n=n))


@workflow
def child_unregistered(n: int) -> int:
    return plus_one(n=unregistered_plan(n=n))
