"""Tasks and workflows that name clusters (module level, so executor workers can import them)."""

from __future__ import annotations

import os
import time

from plait import task, workflow
from plait.sdk.launch_plan import LaunchPlan


@task(cluster="east")
def in_east(x: int) -> int:
    return x + 1


@task(cluster="west")
def in_west(x: int) -> int:
    return x * 10


@task
def anywhere(x: int) -> int:
    return x


@task
def process_id(x: int) -> int:
    return os.getpid() + 0 * x


@workflow
def east_then_west(x: int = 1) -> int:
    """Two clusters in one execution: east's result goes on to west."""
    return in_west(x=in_east(x=x))


@workflow(cluster="north")
def northern(x: int = 1) -> int:
    """Its own task runs on its cluster unless the launch chooses another; ``in_east`` keeps its own."""
    return in_east(x=anywhere(x=x))


@workflow
def unplaced(x: int = 1) -> int:
    """No cluster named anywhere: the launch's, else the project's default."""
    return anywhere(x=x)


northern_on_south = LaunchPlan(northern, "northern_on_south", cluster="south")


@task(cluster="west")
def slow_in_west(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * 10


@workflow
def east_then_slow_west(x: int = 1, seconds: float = 3.0) -> int:
    return slow_in_west(x=in_east(x=x), seconds=seconds)


@task(cluster_selector={"gpu": "a100"})
def on_a100(x: int) -> int:
    return x + 100


@workflow
def on_gpu(x: int = 1) -> int:
    """One task that chooses its cluster by the labels of its executors."""
    return on_a100(x=x)


@workflow(cluster_selector={"region": "east"})
def eastern_by_label(x: int = 1) -> int:
    """``anywhere`` follows the workflow's selector; ``in_east`` keeps its cluster, ``on_a100`` its own selector."""
    return on_a100(x=in_east(x=anywhere(x=x)))


northern_by_label = LaunchPlan(northern, "northern_by_label", cluster_selector={"region": "south"})
