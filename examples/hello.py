"""The smallest workflow: two tasks and a join.

plait run examples/hello.py:greet --name plait
"""

from plait import task, workflow


@task
def greeting(name: str) -> str:
    return f"Hello, {name}!"


@task
def shout(text: str, times: int) -> str:
    return " ".join([text.upper()] * times)


@workflow
def greet(name: str = "world", times: int = 2) -> str:
    return shout(text=greeting(name=name), times=times)
