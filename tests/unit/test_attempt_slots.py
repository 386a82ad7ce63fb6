"""An executor's slots count attempts, while pull requests ask for messages."""

from __future__ import annotations

import anyio
import pytest

from plait_executor.slots import AttemptSlots


def test_a_fresh_executor_asks_for_one_message_until_it_learns_how_many_attempts_messages_carry() -> None:
    slots = AttemptSlots(8)
    assert slots.value == 1, "a message may be a full chunk"
    for _ in range(20):  # lone attempts, each released again
        slots.acquire_nowait()
        slots.take(0)
        slots.release()
    assert slots.value == 8


def test_a_chunk_is_held_whole_past_the_capacity_and_nothing_more_is_pulled_until_it_drains() -> None:
    slots = AttemptSlots(8)
    slots.acquire_nowait()
    slots.take(15)
    assert (slots.held, slots.value) == (16, 0)
    slots.release(8)
    assert slots.value == 0, "8 held: the capacity is full"
    slots.release()
    assert slots.value == 1


async def test_acquire_waits_for_an_attempt_to_be_released() -> None:
    slots = AttemptSlots(2)
    slots.acquire_nowait()
    slots.take(3)
    with anyio.move_on_after(0.05) as waiting:
        await slots.acquire()
    assert waiting.cancelled_caught
    slots.release(3)
    with anyio.fail_after(1):
        await slots.acquire()
    assert slots.held == 2


def test_a_message_arriving_when_twice_the_capacity_is_held_is_refused() -> None:
    slots = AttemptSlots(2)
    slots.acquire_nowait()
    slots.take(3)
    with pytest.raises(anyio.WouldBlock):
        slots.acquire_nowait()
