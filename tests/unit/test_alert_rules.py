"""The alerting rules (deploy/prometheus) and the dashboard (deploy/grafana) parse, and name only metrics the
services export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from plait.metrics.names import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bplait_[a-z0-9_]+\b")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    """Every sample name the services' registry can export."""
    return {
        f"{family.name}{suffix}" for family in REGISTRY.collect() for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "plait.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_rule_has_a_name_an_expression_a_severity_and_a_summary() -> None:
    found = rules()
    assert len(found) >= 5
    for rule in found:
        assert re.fullmatch(r"Plait[A-Za-z]+", rule["alert"]), rule
        assert rule["expr"].strip() and rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"], rule


def test_the_rules_cover_queues_without_consumers_lag_dead_letters_and_conflicts() -> None:
    named = " ".join(rule["expr"] for rule in rules())
    for metric in (
        "plait_dispatch_queue_oldest_age_seconds",
        "plait_projection_lag_seconds",
        "plait_dead_letters_total",
        "plait_decision_conflicts_total",
    ):
        assert metric in named


def test_every_metric_the_rules_and_the_dashboard_name_is_exported() -> None:
    named = {m for text in [r["expr"] for r in rules()] + dashboard_expressions() for m in METRIC.findall(text)}
    assert named, "no metric found in the rules and the dashboard"
    assert named - exported() == set()


def test_the_metric_check_finds_a_misspelt_name() -> None:
    assert METRIC.findall("rate(plait_decisoins_total[5m])")[0] not in exported()


def test_no_metric_has_a_label_per_execution_node_or_attempt() -> None:
    text = (Path(__file__).resolve().parents[2] / "libs/core/plait/metrics/names.py").read_text()
    labels = {label for group in re.findall(r"\[([^\]]*)\]", text) for label in re.findall(r'"(\w+)"', group)}
    assert labels and labels.isdisjoint({"execution", "execution_id", "node", "attempt", "attempt_id"})
