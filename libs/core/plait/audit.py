"""Audit: check an execution's stored history for damage, and the catalog against a fresh replay.

``verify_chain`` checks what the log guarantees about an execution's subject: each record decodes,
belongs to the execution its subject names, was not changed since it was published, comes after
the one before it, and chains to it (``previous`` = SHA-256 of the previous record's bytes). It
cannot tell a record that went missing from one forged in its place: both show as a record that
chains to nothing in the log, and the message says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from plait import codec
from plait.core.events import Decision, ExecutionLaunched
from plait.core.state import Execution
from plait.protocol import subjects
from plait.protocol.executions import ExecutionDetail
from plait.replay import Record

ProblemKind = Literal[
    "undecodable",
    "altered",
    "out_of_order",
    "chain_broken",
    "wrong_execution",
    "not_launched",
    "relaunched",
    "catalog_mismatch",
    # the invariants of a whole history (plait.invariants)
    "not_ended",
    "after_end",
    "node_ended_twice",
    "node_not_ended",
    "attempt_gap",
    "unknown_attempt",
    "unknown_node",
    "queued_early",
    "skipped_wrongly",
    "recovered_late",
    "stopped_early",
    # lineage (plait.audit_lineage)
    "lineage",
    "wrong_cluster",
    "foreign_output",  # an attempt's end names another attempt's captured output
    # signatures and checkpoints (plait.audit_signatures)
    "unsigned",
    "unknown_key",
    "bad_signature",
    "truncated",
]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """Something wrong in an execution's history, at a record's stream ``sequence`` and ``index`` on its subject."""

    kind: ProblemKind
    message: str
    execution_id: str = ""
    sequence: int | None = None
    index: int | None = None

    def __str__(self) -> str:
        where = "" if self.index is None else f" record {self.index} (sequence {self.sequence})"
        return f"{self.execution_id or '?'}{where}: {self.kind}: {self.message}"


def _execution_of_subject(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


def _link_problem(records: Sequence[Record], index: int, previous: str, digests: dict[str, int]) -> str | None:
    """Why ``previous`` of record ``index`` is not the digest of the record before it, or None when it is."""
    expected = codec.digest(records[index - 1].data) if index else ""
    if previous == expected:
        return None
    if index == 0:
        return f"the first record must chain to nothing, it chains to {previous[:12]}"
    target = digests.get(previous)
    if target is not None:
        return (
            f"chains to record {target} (sequence {records[target].sequence}), not to record {index - 1} "
            "before it: records were reordered, or the decision was forged from an earlier state"
        )
    return (
        f"chains to {previous[:12]}, which is no record of this log (expected {expected[:12]}): a record before it "
        "is missing or was altered, or this record was forged"
    )


def verify_chain(records: Sequence[Record]) -> list[Problem]:
    """The problems of one execution's records, in their order on its subject; [] when the history is intact."""
    digests = {codec.digest(record.data): index for index, record in enumerate(records)}
    problems: list[Problem] = []
    execution_id = _execution_of_subject(records[0].subject) if records else ""

    def report(kind: ProblemKind, message: str, index: int) -> None:
        record = records[index]
        problems.append(
            Problem(kind=kind, message=message, execution_id=execution_id, sequence=record.sequence, index=index)
        )

    for index, record in enumerate(records):
        if record.msg_id and record.msg_id != codec.digest(record.data):
            report("altered", "its bytes are not those it was published with (Nats-Msg-Id)", index)
        if index and record.sequence <= records[index - 1].sequence:
            report("out_of_order", f"comes after sequence {records[index - 1].sequence}", index)
        try:
            decision: Decision = codec.decision_decoder.decode(record.data)
        except msgspec.DecodeError as exc:
            report("undecodable", str(exc), index)
            continue
        if subjects.token(decision.execution_id, "execution id") != _execution_of_subject(record.subject):
            report("wrong_execution", f"holds execution {decision.execution_id}, stored on {record.subject}", index)
        launches = sum(isinstance(event, ExecutionLaunched) for event in decision.events)
        if index == 0 and not launches:
            report("not_launched", "the first decision does not launch the execution", index)
        elif index and launches:
            report("relaunched", "a decision after the first launches the execution again", index)
        if (why := _link_problem(records, index, decision.previous, digests)) is not None:
            report("chain_broken", why, index)
    return problems


NodeView = dict[str, dict[str, Any]]


def _replayed_nodes(state: Execution) -> NodeView:
    return {
        node.id: {"status": node.status, "attempts": {a.attempt_id: a.status for a in node.all_attempts()}}
        for node in state.nodes.values()
    }


def _catalog_nodes(catalog_execution: ExecutionDetail) -> NodeView:
    return {
        node.node: {
            "status": node.status,
            "attempts": {a.attempt_id: a.status for a in node.attempts},
            "attempts_total": node.attempts_total,
        }
        for node in catalog_execution.nodes
    }


def _node_problem(node_id: str, in_log: dict[str, Any] | None, in_catalog: dict[str, Any] | None) -> str | None:
    """How the catalog's node differs from the replayed one. The catalog may show only the first attempts of a
    node with many (a map node): their count and each one shown must match."""
    if in_log is None or in_catalog is None:
        return f"node '{node_id}': catalog has {in_catalog!r}, the log {in_log!r}"
    shown = in_catalog["attempts"]
    differs = (
        in_log["status"] != in_catalog["status"]
        or len(in_log["attempts"]) != in_catalog["attempts_total"]
        or any(in_log["attempts"].get(attempt_id) != status for attempt_id, status in shown.items())
    )
    if not differs:
        return None
    catalog_view = {"status": in_catalog["status"], "attempts": dict(sorted(shown.items()))}
    log_view = {"status": in_log["status"], "attempts": dict(sorted(in_log["attempts"].items()))}
    return f"node '{node_id}': catalog has {catalog_view!r}, the log {log_view!r}"


def verify_catalog(state: Execution, catalog_execution: ExecutionDetail) -> list[Problem]:
    """Where the catalog's view of an execution (``client.show_execution``) differs from the replayed state.

    Compares the status, the outputs, the sequence projected, and each node's status and attempts.
    """
    replayed = {"status": state.status, "outputs": state.outputs, "last_sequence": state.last_sequence}
    shown = {
        "status": catalog_execution.status,
        "outputs": catalog_execution.outputs,
        "last_sequence": catalog_execution.last_sequence,
    }
    problems = [
        f"{field}: catalog has {shown[field]!r}, the log {value!r}"
        for field, value in replayed.items()
        if shown[field] != value
    ]
    in_log, in_catalog = _replayed_nodes(state), _catalog_nodes(catalog_execution)
    for node_id in sorted(set(in_log) | set(in_catalog)):
        if (problem := _node_problem(node_id, in_log.get(node_id), in_catalog.get(node_id))) is not None:
            problems.append(problem)
    return [
        Problem(kind="catalog_mismatch", message=message, execution_id=state.execution_id, sequence=state.last_sequence)
        for message in problems
    ]
