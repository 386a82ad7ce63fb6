"""Dispatch records: what an executor worker needs to run one attempt, derived from a ``NodeQueued`` event."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.model import TaskSpec


class Dispatch(msgspec.Struct, frozen=True, kw_only=True, tag="dispatch.v1"):
    execution_id: str
    project: str
    domain: str
    node: str
    attempt_id: str
    attempt: int
    task: TaskSpec
    inputs: dict[str, Any]
    decision_sequence: int  # the stream sequence of the decision that queued this attempt
