"""A dispatch of one attempt of a task that writes output, for tests of the executor's live output alone."""

from __future__ import annotations

from plait.core.dispatch import Dispatch
from plait.core.ids import attempt_id, new_execution_id
from plait.sdk.hints import encode_value
from tests import output_workflows


def a_dispatch() -> Dispatch:
    execution_id = new_execution_id()
    return Dispatch(
        execution_id=execution_id,
        project="default",
        domain="development",
        node="n0",
        attempt_id=attempt_id(execution_id, "n0", 1),
        attempt=1,
        task=output_workflows.chatty.spec,
        inputs={"tag": encode_value("t")},
        decision_sequence=1,
    )
