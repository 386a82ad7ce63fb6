"""An executor's slots count attempts, while pull requests ask for messages."""

from __future__ import annotations

import anyio

from plait.core.dispatch import DISPATCH_CHUNK_ATTEMPTS
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


async def test_acquire_waits_while_taking_is_paused_though_slots_are_free() -> None:
    slots = AttemptSlots(4)
    slots.pause(True)
    async with anyio.create_task_group() as tg:
        acquired = anyio.Event()

        async def acquire() -> None:
            await slots.acquire()
            acquired.set()

        tg.start_soon(acquire)
        slots.release(0)  # a release meanwhile does not end the pause
        with anyio.move_on_after(0.05) as waiting:
            await acquired.wait()
        assert waiting.cancelled_caught and slots.held == 0
        slots.pause(False)
        with anyio.fail_after(1):
            await acquired.wait()
    assert slots.held == 1


def test_a_full_chunk_among_small_messages_makes_the_next_requests_ask_for_one_message_at_once() -> None:
    """Else a request for several messages, each expected small, brings chunks, handed back and delivered again."""
    slots = AttemptSlots(8)
    for _ in range(40):  # lone attempts: requests ask for as many messages as attempts are free
        slots.acquire_nowait()
        slots.take(0)
        slots.release()
    assert slots.value == 8
    slots.acquire_nowait()
    slots.take(DISPATCH_CHUNK_ATTEMPTS - 1)
    slots.release(DISPATCH_CHUNK_ATTEMPTS)
    assert slots.value == 1, "the estimate rose to a chunk at once"
    small = 0
    while slots.value == 1:
        slots.acquire_nowait()
        slots.take(0)
        slots.release()
        small += 1
    assert small > 3, "and falls back over several small messages"


def test_chunks_that_a_request_asked_for_as_small_messages_are_all_taken() -> None:
    slots = AttemptSlots(2)
    for _ in range(40):
        slots.acquire_nowait()
        slots.take(0)
        slots.release()
    for _ in range(slots.value):  # each turns out to be a full chunk
        slots.acquire_nowait()
        slots.take(DISPATCH_CHUNK_ATTEMPTS - 1)
    assert slots.held == 2 * DISPATCH_CHUNK_ATTEMPTS, "held past the capacity, none handed back"
    assert slots.value == 0
