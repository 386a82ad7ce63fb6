"""``plait catalog rebuild``: the projection's leader empties the catalog and replays the event log into it."""

from __future__ import annotations

import sys
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import Header

from plait.adapters.connection import connect
from plait.errors import PlaitError
from plait.protocol import subjects
from plait.protocol.rebuild import RebuildProgress, RebuildReply, RebuildRequest, RebuildResult
from plait.settings import Settings
from plait_cli.stack import nats_for_command

FIRST_ANSWER_SECONDS = 10.0  # the leader answers at once, with the sequence it will replay up to
SILENCE_SECONDS = 120.0  # it then reports progress at least after every batch
_NO_RESPONDERS = "503"

_reply_decoder = msgspec.json.Decoder(RebuildReply)


async def request_rebuild(
    nc: NATS,
    on_progress: Callable[[RebuildProgress], None] = lambda _: None,
    *,
    first_answer: float = FIRST_ANSWER_SECONDS,
    silence: float = SILENCE_SECONDS,
) -> RebuildResult:
    """Ask for a rebuild and follow it; returns the leader's result (messages, sequence, rows, seconds)."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    try:
        await nc.publish(subjects.CATALOG_REBUILD, msgspec.json.encode(RebuildRequest()), reply=inbox)
        timeout = first_answer
        while True:
            try:
                message = await subscription.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                if timeout == first_answer:
                    raise PlaitError(
                        f"no catalog replica leads the projection (no answer within {first_answer:g} s); "
                        "is PostgreSQL reachable?"
                    ) from None
                raise PlaitError(f"the catalog reported no progress for {silence:g} s") from None
            if message.headers and message.headers.get(Header.STATUS) == _NO_RESPONDERS:
                raise PlaitError("no catalog replica is running (start one with `plait catalog`)")
            answer = _reply_decoder.decode(message.data)
            if answer.progress is not None:
                on_progress(answer.progress)
                timeout = silence
            elif answer.result is not None:
                return answer.result
            else:
                reason = answer.error.message if answer.error else "it answered with neither a result nor an error"
                raise PlaitError(f"the catalog could not rebuild: {reason}")
    finally:
        await subscription.unsubscribe()


def _show_progress(progress: RebuildProgress) -> None:
    target = progress.target
    share = f" ({100 * progress.sequence / target:.0f}%)" if target else ""
    print(
        f"replayed {progress.messages} messages, up to sequence {progress.sequence} of {target}{share}",
        file=sys.stderr,
    )


async def rebuild_catalog(settings: Settings) -> int:
    async with nats_for_command(settings, services=("catalog",)) as nats_url:
        nc = await connect(nats_url, "plait-catalog-rebuild")
        try:
            result = await request_rebuild(nc, _show_progress)
        finally:
            await nc.close()
    print(
        f"rebuilt the catalog from {result.messages} messages (up to sequence {result.sequence}) "
        f"in {result.seconds:.2f} s, by replica {result.replica}"
    )
    for table, count in result.rows.items():
        print(f"  {table:<20} {count:>10}")
    return 0
