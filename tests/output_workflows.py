"""Tasks that write to stdout, stderr and logging, for the task output tests (module level, so executor workers
can import them)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from plait import map_task, task, workflow

LINE = "y" * 99 + "\n"  # 100 bytes


@task
def chatty(tag: str) -> int:
    print(f"stdout {tag}")
    print(f"stderr {tag}", file=sys.stderr)
    logging.getLogger("chatty").info("logged %s", tag)
    subprocess.run(["echo", f"subprocess {tag}"], check=True)
    os.write(1, f"fd {tag}\n".encode())
    print(f"pid {os.getpid()}")
    return os.getpid()


@workflow
def chatty_flow(tag: str) -> int:
    return chatty(tag=tag)


@task
def loud(megabytes: int) -> int:
    sys.stdout.write("FIRST LINE\n")
    for _ in range(megabytes * 10_000):
        sys.stdout.write(LINE)
    sys.stdout.write("LAST LINE\n")
    return megabytes


@workflow
def loud_flow(megabytes: int) -> int:
    return loud(megabytes=megabytes)


@task
def breaks(steps: int) -> int:
    for step in range(steps):
        print(f"step {step} done")
    raise ValueError("broke after the steps")


@workflow
def breaks_flow(steps: int) -> int:
    return breaks(steps=steps)


@task
def quiet(x: int) -> int:
    return x


@workflow
def quiet_flow(x: int) -> int:
    return quiet(x=x)


@task
def say(x: int) -> int:
    print(f"item {x}")
    return x


@workflow
def say_each(xs: list[int]) -> list[int]:
    return map_task(say)(x=xs)


@task
def waits_for(path: str) -> str:
    print("waiting", flush=True)
    while not os.path.exists(path):
        time.sleep(0.02)
    print("released")
    return path


@workflow
def waits_for_flow(path: str) -> str:
    return waits_for(path=path)


@task
def silent_after(path: str) -> int:
    return len(path)


@workflow
def waits_then_silent(path: str) -> int:
    return silent_after(path=waits_for(path=path))
