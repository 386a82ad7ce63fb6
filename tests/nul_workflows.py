"""Workflows whose values hold NUL characters; module level, so a worker can import their tasks."""

from __future__ import annotations

from plait import task, workflow


@task
def with_nul(text: str) -> str:
    return f"{text}\x00out\uffff"


@task
def failing_with_nul(text: str) -> str:
    raise RuntimeError(f"cannot\x00read {text}")


@workflow
def echo_nul(text: str) -> str:
    return with_nul(text=text)


@workflow
def fail_nul(text: str) -> str:
    return failing_with_nul(text=text)
