"""A workflow whose inputs are named like ``plait run``'s own options and their prefixes."""

from __future__ import annotations

from plait import task, workflow


@task
def echo_inputs(n: int, j: int, js: int, o: int, json: int, no_follow: int) -> dict[str, int]:
    return {"n": n, "j": j, "js": js, "o": o, "json": json, "no_follow": no_follow}


@workflow
def named_like_options(n: int, j: int, js: int, o: int, json: int = 0, no_follow: int = 0) -> dict[str, int]:
    return echo_inputs(n=n, j=j, js=js, o=o, json=json, no_follow=no_follow)
