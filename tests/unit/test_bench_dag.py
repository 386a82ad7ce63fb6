"""The bench's DAG files: each is read into a workflow of one node per DAG node and a join of its sinks; a file
whose parents are not earlier nodes is refused, naming the node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import dag


def test_every_committed_dag_file_builds_a_workflow_of_its_nodes_and_a_join() -> None:
    files = dag.files()
    assert {"montage-1000", "epigenomics-5000", "cycles-1000", "diamond"} <= {f.stem for f in files}
    graph = dag.load(dag.DAGS / "diamond.json")
    workflow = dag.make_dag(graph)
    assert len(workflow.spec.nodes) == graph.tasks == 5
    assert dag.sinks(graph) == [3]


def test_a_dag_file_with_a_parent_after_its_child_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "source": "test", "parents": [[], [2], [0]]}))
    with pytest.raises(ValueError, match="node 1 has a parent that is not an earlier node"):
        dag.load(path)
