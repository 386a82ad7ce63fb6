"""Invariants of an execution's whole history: what every log plait writes must satisfy, however it was made.

``check_execution`` walks the decisions stored on one execution's subject and reports each place where:

- the hash chain is broken (``plait.audit.verify_chain``);
- an event follows the execution's end (a ``CommandRejected`` may: it records a refusal and changes nothing),
  or follows the end of the node (or map item) it names;
- a node or map item ends more than once, or an execution succeeds while a node has not;
- a node's (or map item's) attempts are not queued as 1, 2, 3... with the ids the core derives from them, or an
  attempt is queued twice;
- an event names an attempt that was never queued, or ends an attempt that already ended, or names a node the
  workflow does not have;
- a node is queued, looked up or started (a map) before every node it reads from has succeeded;
- a node is skipped though no node it depends on failed; a node is recovered after the launch decision, or in an
  execution that recovers none; an attempt is recorded stopped before the execution ended (``attempt_stopped.v1``
  is the one event besides ``command_rejected.v1`` that may follow the end);
- an attempt is queued for another cluster than its task's, launch's, launch plan's, workflow's or the default
  (``plait.core.clusters``) says; a launch records a cluster for other cluster selectors than those in force;
- with ``ended``: the execution has not ended (checked once a run is over and every execution should have);
- with ``catalog_execution``: the catalog's row differs from a fresh replay (``plait.audit.verify_catalog``).

A pure function over stored records: the audit command, the deterministic simulator and the fault suite all
use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from plait import codec
from plait.audit import Problem, ProblemKind, verify_catalog, verify_chain
from plait.core.branches import guard_of
from plait.core.clusters import Placement, cluster_of_task, selectors_in_force
from plait.core.dynamic import expanded_nodes, task_keys
from plait.core.events import (
    TERMINAL_EVENTS,
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    BranchTaken,
    ChildLaunched,
    CommandRejected,
    DynamicExpanded,
    Event,
    ExecutionLaunched,
    ExecutionSucceeded,
    GateOpened,
    MapItemFailed,
    MapItemSucceeded,
    MapStarted,
    NodeCacheHit,
    NodeCacheLookup,
    NodeCacheWaiting,
    NodeFailed,
    NodeQueued,
    NodeRecovered,
    NodeSkipped,
    NodeSucceeded,
    RetryScheduled,
)
from plait.core.ids import attempt_id, item_attempt_id
from plait.core.model import Guard, upstream_nodes
from plait.core.selectors import selector_text
from plait.core.state import Execution, launch
from plait.core.task_output import OutputRef, output_object_name
from plait.protocol.executions import ExecutionDetail
from plait.replay import Record, replay

NODE_ENDS = (NodeSucceeded, NodeCacheHit, NodeFailed, NodeSkipped, NodeRecovered)
ITEM_ENDS = (MapItemSucceeded, MapItemFailed)
NodeEvent = (
    NodeQueued
    | NodeCacheLookup
    | NodeCacheWaiting
    | NodeCacheHit
    | RetryScheduled
    | MapStarted
    | MapItemSucceeded
    | MapItemFailed
    | AttemptStarted
    | AttemptFailed
    | NodeSucceeded
    | NodeFailed
    | NodeSkipped
    | NodeRecovered
    | BranchTaken
    | NodeSkipped
    | GateOpened
    | ChildLaunched
)


class _Walk:
    """What the history has shown so far, and the problems found in it."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.problems: list[Problem] = []
        self.upstream: dict[str, tuple[str, ...]] | None = None  # by node, once launched
        self.launched: Execution | None = None  # the state as launched: what decides each attempt's cluster
        self.ended = False
        self.node_ends: set[str] = set()
        self.succeeded: set[str] = set()
        self.item_ends: set[tuple[str, int]] = set()
        self.last_attempt: dict[tuple[str, int], int] = {}  # (node, item or -1) -> its last attempt queued
        self.queued: dict[str, str] = {}  # attempt id -> node
        self.ended_attempts: set[str] = set()
        self.looked_up: set[str] = set()
        self.maps_started: set[str] = set()
        self.failed: set[str] = set()
        self.recovering = False  # launched to recover another execution
        self.generated: dict[str, tuple[str, ...]] = {}  # an expanded dynamic node -> the nodes it generated
        self.guards: dict[str, Guard] = {}  # node -> the branch case it is in
        self.taken: dict[str, int] = {}  # branch node -> the case it took
        self.skipped: set[str] = set()
        self.gates_opened: set[str] = set()
        self.children_launched: set[str] = set()
        self.record = Record(sequence=0, subject="", data=b"")
        self.index = 0

    def report(self, kind: ProblemKind, message: str) -> None:
        self.problems.append(
            Problem(
                kind=kind,
                message=message,
                execution_id=self.execution_id,
                sequence=self.record.sequence,
                index=self.index,
            )
        )

    def event(self, event: Event) -> None:
        if isinstance(event, AttemptStopped):
            self._stopped(event)
            return
        if self.ended and not isinstance(event, CommandRejected):
            self.report("after_end", f"{_name(event)} after the execution ended")
            return
        if isinstance(event, ExecutionLaunched):
            if self.upstream is None:
                nodes = launch(event, _EPOCH).nodes.values()
                self.launched = launch(event, _EPOCH)
                self.upstream = {node.id: node.upstream for node in self.launched.nodes.values()}
                self.recovering = bool(event.recovered_from)
                self.guards = {node.id: guard for node in nodes if (guard := guard_of(node.spec)) is not None}
                self._selections(event)
            return
        if isinstance(event, TERMINAL_EVENTS):
            if isinstance(event, ExecutionSucceeded):
                self._succeeded_execution()
            self.ended = True
            return
        if isinstance(event, NodeEvent):
            self._node_event(event)
        if isinstance(event, DynamicExpanded):
            self._expanded(event)

    def _expanded(self, event: DynamicExpanded) -> None:
        """A dynamic node's attempt ended with the nodes it generated: from now on, the workflow has them."""
        node = event.node
        if self.upstream is None or node not in self.upstream:
            self.report("unknown_node", f"{_name(event)} names node '{node}', which the workflow does not have")
            return
        if node in self.node_ends or node in self.generated:
            self.report("node_ended_twice", f"{_name(event)} of node '{node}' after it ended or expanded")
            return
        self._attempt_ends(node, event.attempt_id, event)
        generated = expanded_nodes(node, event.workflow, task_keys(node, event.workflow, {}))
        for spec in generated:
            self.upstream[spec.id] = tuple(sorted(set().union(*(upstream_nodes(b) for b in spec.inputs.values()))))
        self.generated[node] = tuple(spec.id for spec in generated)

    def _succeeded_execution(self) -> None:
        unfinished = sorted(set(self.upstream or ()) - self.succeeded - self.skipped)
        if unfinished:
            self.report("node_not_ended", f"the execution succeeded, but not node(s) {', '.join(unfinished)}")

    def _node_event(self, event: NodeEvent) -> None:
        node = event.node
        if self.upstream is None or node not in self.upstream:
            self.report("unknown_node", f"{_name(event)} names node '{node}', which the workflow does not have")
            return
        if node in self.node_ends:
            kind: ProblemKind = "node_ended_twice" if isinstance(event, NODE_ENDS) else "after_end"
            self.report(kind, f"{_name(event)} of node '{node}' after the node ended")
            return
        match event:
            case NodeQueued():
                self._queued(event)
            case NodeCacheLookup():
                self._ready(node, event)
                self.looked_up.add(node)
            case MapStarted():
                self._ready(node, event)
                self.maps_started.add(node)
            case AttemptStarted():
                self._known_attempt(node, event.attempt_id, event)
            case AttemptFailed():
                self._attempt_ends(node, event.attempt_id, event)
            case MapItemSucceeded() | MapItemFailed():
                self._item_ends(event)
            case NodeSucceeded():
                self._node_succeeds(event)
            case NodeCacheHit():
                if node not in self.looked_up:
                    self.report("unknown_attempt", f"node '{node}' hit the cache without looking it up")
                self._node_ends(node, succeeded=True)
            case NodeFailed():
                self.failed.add(node)
                self._node_ends(node, succeeded=False)
            case BranchTaken():
                self._ready(node, event)
                self.taken[node] = event.case
            case GateOpened():
                self._ready(node, event)
                self.gates_opened.add(node)
            case ChildLaunched():
                self._ready(node, event)
                self.children_launched.add(node)
            case NodeSkipped(branch=branch):
                guard = self.guards.get(node)
                passed_over = guard is not None and (
                    guard.branch in self.skipped or self.taken.get(guard.branch, guard.case) != guard.case
                )
                if branch and not passed_over:
                    self.report("queued_early", f"node '{node}' skipped, but no branch passed over its case")
                elif not branch and not self._depends_on_failed(node):
                    self.report("skipped_wrongly", f"node '{node}' skipped, but no node it depends on failed")
                self.skipped.add(node)
                self._node_ends(node, succeeded=False)
            case NodeRecovered():
                if not self.recovering or self.index != 0:
                    self.report("recovered_late", f"node '{node}' recovered outside a recovery's launch decision")
                self._ready(node, event)
                self._node_ends(node, succeeded=True)

    def _depends_on_failed(self, node: str) -> bool:
        assert self.upstream is not None  # noqa: S101  an invariant of this code, not a check of input
        parents, seen = list(self.upstream[node]), set()
        while parents:
            parent = parents.pop()
            if parent in self.failed:
                return True
            if parent not in seen:
                seen.add(parent)
                parents.extend(self.upstream.get(parent, ()))
        return False

    def _stopped(self, event: AttemptStopped) -> None:
        if not self.ended:
            self.report("stopped_early", f"attempt '{event.attempt_id}' recorded stopped before the execution ended")
        elif self._known_attempt(event.node, event.attempt_id, event):
            self.ended_attempts.add(event.attempt_id)

    def _ready(self, node: str, event: Event) -> None:
        assert self.upstream is not None  # noqa: S101  an invariant of this code, not a check of input
        early = [parent for parent in self.upstream[node] if parent not in self.succeeded]
        if early:
            self.report("queued_early", f"{_name(event)} of node '{node}' before {', '.join(early)} succeeded")
        guard = self.guards.get(node)
        if guard is not None and self.taken.get(guard.branch) != guard.case:
            self.report("queued_early", f"{_name(event)} of node '{node}' before branch '{guard.branch}' took its case")

    def _queued(self, event: NodeQueued) -> None:
        node, index, attempt = event.node, event.index, event.attempt
        if index >= 0 and node not in self.maps_started:
            self.report("unknown_attempt", f"item {index} of node '{node}' queued before its map started")
        if index < 0 and attempt == 1 and node not in self.looked_up:
            self._ready(node, event)
        expected_number = self.last_attempt.get((node, index), 0) + 1
        item = f"item {index} of node '{node}'" if index >= 0 else f"node '{node}'"
        if attempt != expected_number:
            self.report("attempt_gap", f"{item} queued attempt {attempt}, expected attempt {expected_number}")
        self.last_attempt[(node, index)] = max(attempt, self.last_attempt.get((node, index), 0))
        expected_id = (
            item_attempt_id(self.execution_id, node, index, attempt)
            if index >= 0
            else attempt_id(self.execution_id, node, attempt)
        )
        if event.attempt_id != expected_id:
            self.report("attempt_gap", f"{item} attempt {attempt} has id '{event.attempt_id}', not '{expected_id}'")
        if event.attempt_id in self.queued:
            self.report("attempt_gap", f"attempt '{event.attempt_id}' queued twice")
        self.queued[event.attempt_id] = node
        self._cluster(event, item)

    def _cluster(self, event: NodeQueued, item: str) -> None:
        if self.launched is None or event.task not in self.launched.workflow.tasks:
            return
        expected = cluster_of_task(self.launched, event.task)
        if event.cluster != expected:
            self.report(
                "wrong_cluster",
                f"{item} attempt {event.attempt} queued for cluster '{event.cluster}', not '{expected}'",
            )

    def _selections(self, event: ExecutionLaunched) -> None:
        """The launch resolved exactly the selectors that place some task (``plait.core.clusters``), no other."""
        in_force = selectors_in_force(event.workflow, Placement(event.cluster, event.cluster_selector))
        expected = sorted(selector_text(selector) for selector in in_force)
        if sorted(event.selected_clusters) != expected:
            self.report(
                "wrong_cluster",
                f"the launch chose clusters for selectors {sorted(event.selected_clusters)}, not {expected}",
            )

    def _known_attempt(self, node: str, attempt: str, event: Event) -> bool:
        if self.queued.get(attempt) != node:
            self.report("unknown_attempt", f"{_name(event)} names attempt '{attempt}' of node '{node}', never queued")
            return False
        if attempt in self.ended_attempts:
            self.report("after_end", f"{_name(event)} of attempt '{attempt}' after it ended")
            return False
        return True

    def _attempt_ends(self, node: str, attempt: str, event: Event) -> None:
        if self._known_attempt(node, attempt, event):
            self.ended_attempts.add(attempt)
        output: OutputRef | None = getattr(event, "output", None)
        if output is not None and output.name != output_object_name(attempt):
            self.report("foreign_output", f"{_name(event)} of attempt '{attempt}' names the output {output.name}")

    def _item_ends(self, event: MapItemSucceeded | MapItemFailed) -> None:
        item = (event.node, event.index)
        if isinstance(event, MapItemSucceeded):
            self._attempt_ends(event.node, event.attempt_id, event)
        if item in self.item_ends:
            self.report("node_ended_twice", f"item {event.index} of node '{event.node}' ended twice")
        self.item_ends.add(item)

    def _node_succeeds(self, event: NodeSucceeded) -> None:
        if event.node in self.generated:
            early = [node for node in self.generated[event.node] if node not in self.succeeded]
            if early:
                self.report("queued_early", f"dynamic node '{event.node}' succeeded before {', '.join(early)} did")
        elif event.attempt_id:
            self._attempt_ends(event.node, event.attempt_id, event)
        elif (
            event.node not in self.maps_started | self.gates_opened | self.children_launched
            and event.node not in self.taken
        ):
            self.report("unknown_attempt", f"node '{event.node}' succeeded without an attempt or a map")
        self._node_ends(event.node, succeeded=True)

    def _node_ends(self, node: str, *, succeeded: bool) -> None:
        self.node_ends.add(node)
        if succeeded:
            self.succeeded.add(node)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # launch() wants a time; the walk reads only the DAG it builds


def _name(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def check_execution(
    records: Sequence[Record], *, ended: bool = False, catalog_execution: ExecutionDetail | None = None
) -> list[Problem]:
    """Every problem of one execution's stored records (in their order on its subject); [] when none.

    ``ended``: the execution must have ended. ``catalog_execution``: the catalog's view of it
    (``client.show_execution``), compared with a replay when the chain is intact.
    """
    problems = verify_chain(records)
    execution_id = problems[0].execution_id if problems else ""
    walk = _Walk(execution_id)
    for index, record in enumerate(records):
        try:
            decision = codec.decision_decoder.decode(record.data)
        except msgspec.DecodeError:
            continue  # verify_chain reported it
        walk.execution_id = walk.execution_id or decision.execution_id
        walk.record, walk.index = record, index
        for event in decision.events:
            walk.event(event)
    problems += walk.problems
    if ended and not walk.ended:
        problems.append(
            Problem(
                kind="not_ended",
                message="the execution has not ended",
                execution_id=walk.execution_id,
                sequence=records[-1].sequence if records else None,
                index=len(records) - 1 if records else None,
            )
        )
    if catalog_execution is not None and not problems:
        problems += verify_catalog(replay(records), catalog_execution)
    return problems
