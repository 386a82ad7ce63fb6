"""The Job manifests of the Kubernetes backend, checked as a Kubernetes API server would check them."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.kubernetes_options import KubernetesOptions, Toleration
from plait_executor.kubernetes.manifests import (
    TASK_CONTAINER,
    AttemptIdentity,
    InvalidKubernetesOptions,
    identity_annotations,
    indexed_job_manifest,
    job_manifest,
    job_name,
    label_value,
)
from tests.helpers.kube_api.validation import is_dns1123_label, is_label_value, job_causes

ATTEMPT = AttemptIdentity(
    project="analytics",
    domain="production",
    execution_id="01kbmw3c2v5q8x7y9z0a1b2c3d",
    node="train_model",
    attempt_id="01kbmw3c2v5q8x7y9z0a1b2c3d/train_model/2",
    attempt=2,
    queue="gpu",
    cluster="gpu-east",
)
GPU_OPTIONS = KubernetesOptions(
    image="registry.example.com/team/pipeline:1.4.2",
    requests={"cpu": "500m", "memory": "1Gi"},
    limits={"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1},
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
    tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),),
    service_account="plait-task",
    env={"PLAIT_NATS_URL": "nats://nats.plait.svc:4222"},
)
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "ml", "plait.dev/node": "overridden"}},
    "spec": {
        "priorityClassName": "batch-low",
        "serviceAccountName": "from-template",
        "nodeSelector": {"disktype": "ssd"},
        "tolerations": [{"key": "spot", "operator": "Exists"}],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [
            {
                "image": "ignored:latest",
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                "env": [
                    {"name": "PLAIT_NATS_URL", "value": "nats://wrong:4222"},
                    {"name": "OMP_NUM_THREADS", "value": "4"},
                ],
                "resources": {"requests": {"ephemeral-storage": "10Gi"}},
            },
            {"name": "log-shipper", "image": "fluent/fluent-bit:3.0"},
        ],
    },
}

attempt_ids = st.text(min_size=1, max_size=300)
identities = st.builds(
    AttemptIdentity,
    project=st.text(max_size=100),
    domain=st.text(max_size=100),
    execution_id=st.text(max_size=100),
    node=st.text(max_size=300),
    attempt_id=attempt_ids,
    attempt=st.integers(1, 10_000),
    queue=st.text(max_size=100),
    cluster=st.text(max_size=100),
)


def task_container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


class TestJobManifest:
    def test_a_gpu_task_builds_a_job_the_api_server_accepts(self) -> None:
        """Resources with an extended resource, node selector, tolerations, service account and env validate."""
        job = job_manifest(ATTEMPT, GPU_OPTIONS, timeout_seconds=600)
        assert job_causes(job) == []
        assert job["apiVersion"] == "batch/v1"
        assert job["kind"] == "Job"

    def test_plait_owns_retries_and_the_cluster_backs_up_the_timeout(self) -> None:
        """No retry by Kubernetes; the timeout rounds up to whole seconds; finished Jobs expire."""
        spec = job_manifest(ATTEMPT, GPU_OPTIONS, timeout_seconds=90.2)["spec"]
        assert spec["backoffLimit"] == 0
        assert spec["activeDeadlineSeconds"] == 91
        assert spec["ttlSecondsAfterFinished"] == GPU_OPTIONS.ttl_seconds_after_finished
        assert spec["template"]["spec"]["restartPolicy"] == "Never"

    def test_no_timeout_gives_no_deadline(self) -> None:
        assert "activeDeadlineSeconds" not in job_manifest(ATTEMPT, GPU_OPTIONS)["spec"]

    def test_the_task_runs_as_a_non_root_user_without_privileges(self) -> None:
        job = job_manifest(ATTEMPT, GPU_OPTIONS)
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert task_container(job)["securityContext"]["allowPrivilegeEscalation"] is False

    def test_the_command_names_the_attempt(self) -> None:
        command = task_container(job_manifest(ATTEMPT, GPU_OPTIONS))["command"]
        assert command[-2:] == ["--attempt", ATTEMPT.attempt_id]

    def test_an_extended_resource_is_requested_as_much_as_it_is_limited(self) -> None:
        """A GPU named only in limits is also requested: the API server refuses an overcommitted one."""
        resources = task_container(job_manifest(ATTEMPT, GPU_OPTIONS))["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
        assert resources["requests"]["cpu"] == "500m"
        assert resources["limits"]["cpu"] == "2"

    def test_a_gpu_requested_alone_is_also_limited(self) -> None:
        options = KubernetesOptions(image="pipeline:1", requests={"nvidia.com/gpu": 2})
        job = job_manifest(ATTEMPT, options)
        assert task_container(job)["resources"]["limits"] == {"nvidia.com/gpu": "2"}
        assert job_causes(job) == []

    def test_an_overcommitted_extended_resource_is_refused(self) -> None:
        options = KubernetesOptions(image="pipeline:1", requests={"nvidia.com/gpu": 1}, limits={"nvidia.com/gpu": 2})
        with pytest.raises(InvalidKubernetesOptions, match=r"nvidia.com/gpu.*request \(1\).*limit \(2\)"):
            job_manifest(ATTEMPT, options)

    def test_the_same_attempt_always_gives_the_same_manifest(self) -> None:
        assert job_manifest(ATTEMPT, GPU_OPTIONS, 60) == job_manifest(ATTEMPT, GPU_OPTIONS, 60)

    def test_labels_and_annotations_name_the_attempt_on_the_job_and_its_pods(self) -> None:
        job = job_manifest(ATTEMPT, GPU_OPTIONS)
        for metadata in (job["metadata"], job["spec"]["template"]["metadata"]):
            assert metadata["labels"]["app.kubernetes.io/managed-by"] == "plait"
            assert metadata["labels"]["plait.dev/project"] == "analytics"
            assert metadata["labels"]["plait.dev/node"] == "train_model"
            assert metadata["labels"]["plait.dev/attempt-number"] == "2"
            assert metadata["labels"]["plait.dev/cluster"] == "gpu-east"
            assert metadata["annotations"]["plait.dev/attempt"] == ATTEMPT.attempt_id
            assert metadata["annotations"]["plait.dev/execution"] == ATTEMPT.execution_id

    def test_the_job_and_its_pod_template_do_not_share_their_labels(self) -> None:
        job = job_manifest(ATTEMPT, GPU_OPTIONS)
        job["metadata"]["labels"]["extra"] = "yes"
        assert "extra" not in job["spec"]["template"]["metadata"]["labels"]

    def test_a_value_that_is_no_label_value_is_sanitized_in_labels_and_kept_whole_in_annotations(self) -> None:
        attempt = msgspec.structs.replace(ATTEMPT, node="étape/preprocess " + "x" * 80, attempt_id="e/étape/1")
        job = job_manifest(attempt, GPU_OPTIONS)
        labels, annotations = job["metadata"]["labels"], job["metadata"]["annotations"]
        assert all(is_label_value(value) for value in labels.values())
        assert annotations["plait.dev/node"] == attempt.node
        assert annotations["plait.dev/attempt"] == "e/étape/1"
        assert job_causes(job) == []


class TestPodTemplateOverride:
    def job(self) -> dict[str, Any]:
        return job_manifest(ATTEMPT, msgspec.structs.replace(GPU_OPTIONS, pod_template=POD_TEMPLATE))

    def test_the_merged_job_is_valid(self) -> None:
        assert job_causes(self.job()) == []

    def test_pod_level_fields_and_sidecars_are_kept(self) -> None:
        pod = self.job()["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "batch-low"
        assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]
        assert [container["name"] for container in pod["containers"]] == [TASK_CONTAINER, "log-shipper"]
        assert pod["nodeSelector"] == {"disktype": "ssd", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        assert pod["tolerations"] == [
            {"key": "spot", "operator": "Exists"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ]

    def test_the_unnamed_container_merges_into_the_task_container_and_the_options_win(self) -> None:
        job = self.job()
        container = task_container(job)
        assert container["image"] == GPU_OPTIONS.image
        assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
        assert container["env"] == [
            {"name": "PLAIT_NATS_URL", "value": "nats://nats.plait.svc:4222"},
            {"name": "OMP_NUM_THREADS", "value": "4"},
        ]
        assert container["resources"]["requests"] == {
            "ephemeral-storage": "10Gi",
            "cpu": "500m",
            "memory": "1Gi",
            "nvidia.com/gpu": "1",
        }
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "plait-task"

    def test_plait_labels_win_and_other_labels_are_kept(self) -> None:
        labels = self.job()["spec"]["template"]["metadata"]["labels"]
        assert labels["plait.dev/node"] == "train_model"
        assert labels["team"] == "ml"

    def test_the_template_given_is_not_changed(self) -> None:
        self.job()["spec"]["template"]["spec"]["volumes"].append({"name": "other", "emptyDir": {}})
        assert POD_TEMPLATE["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]


class TestIndexedJobManifest:
    def test_a_map_is_one_indexed_job_the_api_server_accepts(self) -> None:
        job = indexed_job_manifest(ATTEMPT, GPU_OPTIONS, items=10_000, concurrency=50, timeout_seconds=3600)
        assert job_causes(job) == []
        spec = job["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 10_000, 50)
        assert spec["backoffLimitPerIndex"] == 0

    @pytest.mark.parametrize(("items", "concurrency", "parallelism"), [(5, 0, 5), (5, 9, 5), (5, 2, 2)])
    def test_parallelism_is_the_concurrency_up_to_the_items(
        self, items: int, concurrency: int, parallelism: int
    ) -> None:
        assert indexed_job_manifest(ATTEMPT, GPU_OPTIONS, items, concurrency)["spec"]["parallelism"] == parallelism

    def test_a_map_without_items_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one item"):
            indexed_job_manifest(ATTEMPT, GPU_OPTIONS, items=0)


class TestNames:
    @given(attempt_ids)
    def test_any_attempt_id_gives_a_valid_stable_job_name(self, attempt_id: str) -> None:
        name = job_name(attempt_id)
        assert is_dns1123_label(name)
        assert name.startswith("plait-")
        assert job_name(attempt_id) == name

    @given(attempt_ids, attempt_ids)
    def test_distinct_attempt_ids_give_distinct_job_names(self, first: str, second: str) -> None:
        assert (job_name(first) == job_name(second)) == (first == second)

    def test_the_job_name_shows_the_end_of_the_attempt_id(self) -> None:
        assert job_name(ATTEMPT.attempt_id).startswith("plait-") and "-train-model-2-" in job_name(ATTEMPT.attempt_id)

    @given(st.text(max_size=300))
    def test_any_value_gives_a_valid_label_value(self, value: str) -> None:
        assert is_label_value(label_value(value))
        assert label_value(value) == label_value(value)

    @given(st.text(max_size=100), st.text(max_size=100))
    def test_distinct_values_give_distinct_label_values(self, first: str, second: str) -> None:
        assert (label_value(first) == label_value(second)) == (first == second)

    def test_a_valid_label_value_is_kept_as_it_is(self) -> None:
        assert label_value("train_model.v2") == "train_model.v2"

    @settings(max_examples=40, deadline=None)
    @given(identities)
    def test_any_attempt_gives_a_job_the_api_server_accepts(self, attempt: AttemptIdentity) -> None:
        job = job_manifest(attempt, GPU_OPTIONS)
        assert job_causes(job) == []
        assert identity_annotations(attempt)["plait.dev/node"] == attempt.node
