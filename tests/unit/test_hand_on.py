"""Which attempts of a dispatch message an executor runs: all of a chunk, or those its handed-on copy names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.msg import Msg

from plait.core.dispatch import Dispatch, dispatches_in, record_of
from plait.core.events import NodeQueued
from plait.protocol.headers import PLAIT_ATTEMPTS
from plait_executor.hand_on import listed
from tests import definitions
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def message(headers: dict[str, str] | None = None) -> Msg:
    client: Any = None
    return Msg(client, subject="plait.dispatch.local.default", headers=headers)


def chunk() -> list[Dispatch]:
    """The attempts of the chunk of a fan-out's launch."""
    state, events = launched(definitions.fan_out_fan_in, {"x": 3}, AT)
    return dispatches_in(record_of(state, [e for e in events if isinstance(e, NodeQueued)], 7))


def test_a_message_that_is_no_copy_runs_every_attempt_of_its_chunk() -> None:
    dispatches = chunk()
    assert len(dispatches) > 2
    assert listed(dispatches, message()) == dispatches
    assert listed(dispatches, message({"traceparent": "00-x"})) == dispatches


def test_a_copy_runs_only_the_attempts_it_names_in_the_chunks_order() -> None:
    dispatches = chunk()
    named = f"{dispatches[2].attempt_id},{dispatches[0].attempt_id}"
    assert listed(dispatches, message({PLAIT_ATTEMPTS: named})) == [dispatches[0], dispatches[2]]


@pytest.mark.parametrize("named", ["", "elsewhere/node/1", "{first},elsewhere/node/1"])
def test_a_copy_naming_an_attempt_its_chunk_does_not_carry_is_refused(named: str) -> None:
    dispatches = chunk()
    with pytest.raises(ValueError, match="names attempts its chunk does not carry"):
        listed(dispatches, message({PLAIT_ATTEMPTS: named.format(first=dispatches[0].attempt_id)}))
