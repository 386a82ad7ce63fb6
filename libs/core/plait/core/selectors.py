"""Cluster label selectors: a task, workflow, launch plan or launch may choose its cluster by the labels of the
executors that serve it (``cluster_selector={"gpu": "a100"}``) rather than by the cluster's name.

The core replays from the log alone, so it never reads which executors are live: the scheduler reads them (the
``PLAIT_EXECUTORS`` bucket) when it takes a launch, ``decide`` chooses each selector's cluster from that snapshot,
and ``ExecutionLaunched.selected_clusters`` records the answer, keyed by the selector's text. Every later decision,
and every replay, uses the recorded answer.

A selector matches a live executor whose labels hold each of its pairs. Of the clusters with a matching executor,
the one with the most of them is chosen; ties go to the first name in sort order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import msgspec

_TOKEN = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


class LiveExecutor(msgspec.Struct, frozen=True, kw_only=True):
    """What a selector is matched against: a live executor's cluster and labels."""

    cluster: str
    labels: dict[str, str] = {}


def chosen_selector(value: dict[str, str] | msgspec.UnsetType) -> dict[str, str]:
    """A spec's ``cluster_selector`` option as a dict ({}: none chosen)."""
    return {} if isinstance(value, msgspec.UnsetType) else value


def selector_text(selector: Mapping[str, str]) -> str:
    """The canonical text of a selector: its ``key=value`` pairs sorted by key, comma-separated."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def selector_problem(value: Mapping[str, str] | msgspec.UnsetType, owner: str) -> str | None:
    """Why ``value`` cannot be a cluster selector, or None when it can (or is UNSET)."""
    if isinstance(value, msgspec.UnsetType):
        return None
    if not value:
        return f"{owner}: a cluster selector must name at least one label"
    for key, label in sorted(value.items()):
        if not (isinstance(key, str) and isinstance(label, str) and _TOKEN.match(key) and _TOKEN.match(label)):
            return (
                f"{owner}: cluster selector label {key!r}={label!r}: keys and values must be 1 to 128 letters, "
                "digits, '_', '-', '.' or '/'"
            )
    return None


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether an executor with ``labels`` has every pair of ``selector``."""
    return all(labels.get(key) == value for key, value in selector.items())


def choose_cluster(selector: Mapping[str, str], live: Iterable[LiveExecutor]) -> str | None:
    """The cluster with the most live executors that match ``selector`` (ties: the first name); None if none."""
    counts = Counter(e.cluster for e in live if matches(selector, e.labels))
    if not counts:
        return None
    return min(counts, key=lambda cluster: (-counts[cluster], cluster))


def no_match_reason(selector: Mapping[str, str], live: Sequence[LiveExecutor]) -> str:
    """Why a launch is refused: no live executor matches ``selector``; names the clusters and labels that are live."""
    head = f"no live executor matches cluster selector {selector_text(selector)}"
    if not live:
        return f"{head}: no executor is live"
    by_cluster: dict[str, set[str]] = {}
    for executor in live:
        by_cluster.setdefault(executor.cluster, set()).add(selector_text(executor.labels) or "no labels")
    described = "; ".join(f"{cluster} ({' | '.join(sorted(labels))})" for cluster, labels in sorted(by_cluster.items()))
    return f"{head}; live clusters and their executors' labels: {described}"
