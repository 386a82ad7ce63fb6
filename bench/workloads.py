"""No-op workflows for the benchmarks: a wide fan-out with a join, and a long chain."""

from __future__ import annotations

from plait import task, workflow

FAN_OUT = 1000
CHAIN = 100


@task
def noop(x: int) -> int:
    return x


@task
def join(values: list[int]) -> int:
    return len(values)


@workflow
def fan_out(seed: int = 0) -> int:
    return join(values=[noop(x=i) for i in range(FAN_OUT)])


@workflow
def chain(seed: int = 0) -> int:
    value = noop(x=seed)
    for _ in range(CHAIN - 1):
        value = noop(x=value)
    return value
