"""A pod's task runtime captures what its task writes the way a local worker does (the same ``run_captured``), and
stores it in the logs bucket: ``client.logs`` reads it back, and a failure carries its tail."""

from __future__ import annotations

from tests import output_workflows
from tests.helpers.running import running
from tests.helpers.states import final_state
from tests.test_kubernetes_backend import DEADLINE, Cluster, client_of
from tests.test_kubernetes_backend import cluster as cluster  # the fixture

__all__ = ["cluster"]


async def test_a_pods_output_is_captured_and_read_back(cluster: Cluster) -> None:
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        chatty = await client.launch(output_workflows.chatty_flow, {"tag": "pod"})
        chatty_state = await final_state(client, chatty.id, timeout=DEADLINE)
        breaks = await client.launch(output_workflows.breaks_flow, {"steps": 3})
        breaks_state = await final_state(client, breaks.id, timeout=DEADLINE)
        text = await client.logs(chatty.id)
        failed = await client.logs(breaks.id, "breaks")
    assert chatty_state.status == "succeeded"
    lines = text.splitlines()
    assert lines[0] == "== chatty (attempt 1) =="
    for expected in ("stdout pod", "stderr pod", "subprocess pod", "fd pod"):
        assert expected in lines, (expected, text)
    assert any("logged pod" in line for line in lines), text
    assert breaks_state.status == "failed" and breaks_state.error is not None
    assert breaks_state.error.output_tail == "step 0 done\nstep 1 done\nstep 2 done"
    assert "step 2 done" in failed
