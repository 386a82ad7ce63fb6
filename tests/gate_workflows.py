"""Gates for the tests (module level, so executor workers can import them)."""

from __future__ import annotations

from datetime import timedelta

from plait import approve, conditional, dynamic, sleep, task, wait_for_input, workflow


@task
def triple(n: int) -> int:
    return n * 3


@task(retries=1, timeout=1)
def late_once(marker: str, n: int) -> int:
    """Runs past its timeout the first time (``marker`` names a file it leaves behind), then returns at once."""
    import os
    import time

    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        time.sleep(30)
    return n


@workflow
def asks() -> int:
    """Waits for an int, then triples it."""
    return triple(n=wait_for_input("amount", timeout=timedelta(seconds=60), expected_type=int))


@workflow
def asks_briefly() -> int:
    """A signal nobody gives: the gate times out."""
    return triple(n=wait_for_input("amount", timeout=timedelta(seconds=1), expected_type=int))


@workflow
def approved(n: int) -> int:
    """Triples ``n`` and passes the result on once approved."""
    return approve(triple(n=n), "publish", timeout=timedelta(minutes=5))


@workflow
def naps(n: int) -> int:
    return triple(n=sleep(timedelta(seconds=1), value=triple(n=n)))


@task
def add_up(parts: list[int]) -> int:
    return sum(parts)


@dynamic
def in_parts(n: int) -> int:
    """One node per tenth of ``n`` (rounded down), decided when it runs."""
    return add_up(parts=[triple(n=1) for _ in range(n // 10)])


@workflow
def story(marker: str) -> int:
    """A gate, a branch, a retry after a timeout and a dynamic node, for the timeline."""
    amount = wait_for_input("amount", timeout=timedelta(minutes=5), expected_type=int)
    chosen = (
        conditional("size").if_(amount > 10).then(late_once(marker=marker, n=amount)).else_().then(triple(n=amount))
    )
    return in_parts(n=chosen)
