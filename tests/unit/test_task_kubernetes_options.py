"""``@task``'s Kubernetes options: recorded in the task's spec, and absent from the spec of a task without them."""

from __future__ import annotations

import msgspec
import pytest

from plait import codec, task
from plait.core.kubernetes_options import KubernetesOptions, Toleration
from plait.errors import DefinitionError


@task
def plain(x: int) -> int:
    return x


@task(
    image="registry.example.com/team/pipeline:1.4.2",
    requests={"cpu": "500m", "memory": "1Gi"},
    limits={"memory": "4Gi", "nvidia.com/gpu": 1},
    node_selector={"pool": "gpu"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    service_account="trainer",
    pod_template={"spec": {"priorityClassName": "high"}},
)
def on_gpu(x: int) -> int:
    return x


@task(image=None, requests=None)
def all_unset(x: int) -> int:
    return x


def test_a_task_without_kubernetes_options_encodes_as_before() -> None:
    encoded = msgspec.json.decode(codec.encode(plain.spec))
    assert "kubernetes" not in encoded
    assert plain.spec.kubernetes is msgspec.UNSET
    assert "kubernetes" not in msgspec.json.decode(codec.encode(all_unset.spec))


def test_kubernetes_options_are_recorded_in_the_spec_and_survive_decoding() -> None:
    options = on_gpu.spec.kubernetes
    assert options == KubernetesOptions(
        image="registry.example.com/team/pipeline:1.4.2",
        requests={"cpu": "500m", "memory": "1Gi"},
        limits={"memory": "4Gi", "nvidia.com/gpu": 1},
        node_selector={"pool": "gpu"},
        tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),),
        service_account="trainer",
        pod_template={"spec": {"priorityClassName": "high"}},
    )
    assert codec.task_decoder.decode(codec.encode(on_gpu.spec)) == on_gpu.spec


def test_kubernetes_options_are_part_of_the_version() -> None:
    def version_with(image: str) -> str:
        def same(x: int) -> int:
            return x

        same.__qualname__ = same.__name__ = "same"
        return task(image=image)(same).spec.version

    assert version_with("a:1") != version_with("a:2")


def test_invalid_options_are_definition_errors() -> None:
    with pytest.raises(DefinitionError, match="invalid Kubernetes options"):
        task(tolerations=[{"operator": "Sometimes"}])(plain.fn)
