"""A one-attempt Job carries its dispatch in one environment variable of its container, and Linux will not start a
process whose environment holds one string over 128 KiB (each input may be up to the inline limit, 64 KiB, on its
own). Such an attempt fails at once with an error saying what to do, instead of a Job whose container cannot start;
one just under the limit is made, and its container starts."""

from __future__ import annotations

import os
import sys

import anyio

from plait import task
from plait.core.ids import canonical_encoding
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait_executor.kubernetes.backend import ENVIRONMENT_STRING_MOST, KubernetesTarget, kubernetes_backend
from tests.helpers.dispatches import first_attempt
from tests.helpers.kube_api import KubernetesApiStandIn
from tests.helpers.kube_api.selectors import LabelSelector

TARGET = KubernetesTarget(
    cluster="local", queue="default", namespace="plait-tasks", image="plait:test", nats_url="nats://127.0.0.1:4222"
)


@task
def joined(a: str, b: str) -> int:
    return len(a) + len(b)


async def test_an_attempt_whose_dispatch_no_container_environment_can_hold_fails_saying_why() -> None:
    inputs = {"a": "a" * 65_500, "b": "b" * 65_500}
    assert all(len(canonical_encoding(value)) <= DEFAULT_INLINE_VALUE_LIMIT for value in inputs.values()), "inline"
    async with KubernetesApiStandIn() as api, kubernetes_backend(TARGET, api.configuration()) as backend:
        outcome = await backend.run(first_attempt(joined.spec, inputs), on_start=lambda: None)
        assert api.store.list("jobs", TARGET.namespace, LabelSelector("")) == [], "no Job made"
    assert outcome is not None and outcome.error is not None
    assert (outcome.error.kind, outcome.error.error_type) == ("system", "JobInvalid")
    assert "over the 131,072 a variable may hold: pass its large inputs as a File" in outcome.error.message


async def test_a_dispatch_just_under_the_limit_makes_a_job_whose_container_starts() -> None:
    inputs = {"a": "a" * 60_000, "b": "b" * 60_000}
    async with KubernetesApiStandIn() as api, kubernetes_backend(TARGET, api.configuration()) as backend:
        manifest = backend.manifest(first_attempt(joined.spec, inputs))
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert len(env["PLAIT_DISPATCH"]) > ENVIRONMENT_STRING_MOST * 0.9
    command = [sys.executable, "-c", "import os; assert os.environ['PLAIT_DISPATCH']"]  # what the runtime execs
    await anyio.run_process(command, env={"PATH": os.environ.get("PATH", ""), **env}, check=True)
