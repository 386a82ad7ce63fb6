"""A Kubernetes API stand-in for tests: an in-process HTTP server speaking the Kubernetes API shape for Jobs, Pods
and Pod logs, with hooks that play what a cluster would do. It is not a Kubernetes (see docs/kubernetes.md)."""

from tests.helpers.kube_api.server import Container, KubernetesApiStandIn, PodHandle

__all__ = ["Container", "KubernetesApiStandIn", "PodHandle"]
