"""The scope a task's process reports its attempts on: its attempt's, or for a map Job's pods its node's."""

from __future__ import annotations

import pytest

from plait.protocol import subjects


def test_a_report_is_in_its_attempts_scope_or_its_nodes_only() -> None:
    assert subjects.in_scope(subjects.attempt_scope("e1/load/1"), "load", "e1/load/1")
    assert subjects.in_scope(subjects.node_scope("load"), "load", "e1/load/2")
    assert subjects.in_scope("", "load", "e1/load/1")  # a service's report names no scope
    assert not subjects.in_scope(subjects.attempt_scope("e1/load/1"), "load", "e1/load/2")
    assert not subjects.in_scope(subjects.node_scope("load"), "train", "e1/train/1")
    assert not subjects.in_scope(subjects.attempt_scope("load"), "load", "e1/load/1")  # a node's is not an attempt's


def test_a_scoped_subject_ends_with_its_scope_and_reads_back() -> None:
    scope = subjects.attempt_scope("e1/load/1")
    subject = subjects.command_subject("team.a", "dev", "e1", "result", scope)
    assert subject == f"plait.cmd.team:a.dev.e1.result.{scope}"
    assert subjects.scope_of_command_subject(subject) == scope
    assert subjects.kind_of_command_subject(subject) == "result"
    assert subjects.execution_of_command_subject(subject) == ("team:a", "dev", "e1")


@pytest.mark.parametrize("kind", ["launch", "abort", "signal", "cache"])
def test_only_an_attempts_reports_have_a_scope(kind: str) -> None:
    with pytest.raises(ValueError, match=f"a '{kind}' command has no scope"):
        subjects.command_subject("p", "d", "e1", kind, subjects.attempt_scope("e1/n/1"))
