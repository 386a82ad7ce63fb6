"""Tasks and workflows of the schedule and notification tests (module level, so executor workers can import them)."""

from __future__ import annotations

from plait import Notify, task, workflow


@task
def echo(text: str) -> str:
    return text


@task
def refuse(text: str) -> str:
    raise RuntimeError(f"refused {text}")


@workflow
def stamped(run_at: str) -> str:
    return echo(text=run_at)


@workflow
def refused(text: str) -> str:
    return refuse(text=text)


@workflow(notify=Notify(on=["failed"]))
def watched(text: str) -> str:
    return echo(text=text)


@workflow(notify=Notify(on=["failed"]))
def watched_refusal(text: str) -> str:
    return refuse(text=text)
