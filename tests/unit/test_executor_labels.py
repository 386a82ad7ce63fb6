"""Executor labels (``plait executor --label``, ``PLAIT_EXECUTOR_LABELS``) and announcement keys."""

from __future__ import annotations

import pytest

from plait.errors import InputError
from plait.protocol.executors import announcement_key, parse_labels
from plait.settings import load_settings
from plait_cli.main import build_parser
from plait_executor import ExecutorService


def test_labels_are_key_value_items_in_a_list_or_comma_separated() -> None:
    assert parse_labels(["gpu=true", "zone=east,tier = fast"]) == {"gpu": "true", "zone": "east", "tier": "fast"}
    assert parse_labels("") == {}


@pytest.mark.parametrize("bad", ["gpu", "=true"])
def test_a_label_without_a_key_and_value_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must look like key=value"):
        parse_labels(bad)


def test_the_executor_announces_the_labels_of_its_settings() -> None:
    settings = load_settings({"PLAIT_NATS_URL": "nats://127.0.0.1:4222", "PLAIT_EXECUTOR_LABELS": "gpu=true"})
    assert ExecutorService.from_settings(settings).labels == {"gpu": "true"}
    bad = load_settings({"PLAIT_NATS_URL": "nats://127.0.0.1:4222", "PLAIT_EXECUTOR_LABELS": "gpu"})
    with pytest.raises(InputError, match="PLAIT_EXECUTOR_LABELS: label 'gpu' must look like key=value"):
        ExecutorService.from_settings(bad)


def test_plait_executor_takes_repeated_labels() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["executor", "--cluster", "gpu-east", "--label", "gpu=true", "--label", "zone=east"])
    assert (args.cluster, args.label) == ("gpu-east", ["gpu=true", "zone=east"])


def test_announcement_keys_hold_only_key_value_characters() -> None:
    assert announcement_key("gpu.east", "default", "host:123") == "gpu_east.default.host_123"
