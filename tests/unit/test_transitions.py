"""``evolve`` and ``apply_decision`` look each event's change up by the event's type, so every event type must have
one. (That a replayed state equals the live one, event by event, is checked in test_decide and test_properties.)"""

from __future__ import annotations

import typing

from plait.core.events import Event
from plait.core.state import _TRANSITIONS


def test_every_event_type_has_a_transition_and_nothing_else_does() -> None:
    assert set(_TRANSITIONS) == set(typing.get_args(Event))
