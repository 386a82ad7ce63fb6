"""Abort, failure policy, relaunch and recovery, on a small report pipeline.

touch /tmp/plait-broken
plait run examples/recover.py:report --broken /tmp/plait-broken   # fails at `publish`
rm /tmp/plait-broken
plait executions recover ID      # a new execution: reuses `extract` and `transform`, runs `publish` again
plait executions relaunch ID     # a new execution that runs everything again
"""

from pathlib import Path
from typing import NamedTuple

from plait import task, workflow


@task
def extract(day: str) -> list[int]:
    return [len(day), 2, 3]


@task
def transform(rows: list[int]) -> int:
    return sum(rows)


@task
def publish(total: int, broken: str) -> str:
    """Fails while the file ``broken`` exists: the target it publishes to is down."""
    if broken and Path(broken).exists():
        raise RuntimeError(f"the publishing target is down ({broken} exists)")
    return f"published {total}"


@task
def archive(rows: list[int]) -> int:
    return len(rows)


@workflow
def report(day: str = "2026-12-04", broken: str = "") -> str:
    return publish(total=transform(rows=extract(day=day)), broken=broken)


class Reported(NamedTuple):
    published: str
    archived: int


@workflow(failure_policy="finish")
def report_and_archive(day: str = "2026-12-04", broken: str = "") -> Reported:
    """With ``finish``, a failed ``publish`` does not stop ``archive``, which does not depend on it."""
    rows = extract(day=day)
    return Reported(publish(total=transform(rows=rows), broken=broken), archive(rows=rows))
