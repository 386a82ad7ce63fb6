"""``plait catalog rebuild``: the projection's leader empties the catalog and replays the event log into it."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

from plait.adapters.connection import connect
from plait.errors import PlaitError
from plait.protocol import subjects
from plait.protocol.rebuild import RebuildProgress, RebuildReply, RebuildRequest, RebuildResult
from plait.settings import Settings
from plait_cli.stack import nats_for_command

FIRST_ANSWER_SECONDS = 30.0  # the leader answers at once; a replica just started may take a few seconds to lead
RESEND_SECONDS = 1.0
SILENCE_SECONDS = 120.0  # it then reports progress at least after every batch
_NO_RESPONDERS = "503"

_reply_decoder = msgspec.json.Decoder(RebuildReply)


async def request_rebuild(
    nc: NATS,
    on_progress: Callable[[RebuildProgress], None] = lambda _: None,
    *,
    first_answer: float = FIRST_ANSWER_SECONDS,
    silence: float = SILENCE_SECONDS,
    on_waiting: Callable[[], None] = lambda: None,
) -> RebuildResult:
    """Ask for a rebuild and follow it; returns the leader's result (messages, sequence, rows, seconds).

    Only the projection's leader answers, and a replica that has just started may not lead yet: the request is
    sent again every ``RESEND_SECONDS`` until one is answered (``on_waiting`` is called once, at the first resend).
    Each request has its own reply subject, and the first answered is the one followed, so a later copy that the
    leader refuses (a rebuild is running) is not taken for the answer."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(f"{inbox}.*")
    try:
        followed = await _first_answered(nc, subscription, inbox, first_answer, on_waiting)
        message = followed
        while True:
            if message.subject == followed.subject:
                if message.headers and message.headers.get(Header.STATUS) == _NO_RESPONDERS:
                    raise PlaitError("no catalog replica is running (start one with `plait catalog`)")
                answer = _reply_decoder.decode(message.data)
                if answer.progress is not None:
                    on_progress(answer.progress)
                elif answer.result is not None:
                    return answer.result
                else:
                    reason = answer.error.message if answer.error else "it answered with neither a result nor an error"
                    raise PlaitError(f"the catalog could not rebuild: {reason}")
            try:
                message = await subscription.next_msg(timeout=silence)
            except nats.errors.TimeoutError:
                raise PlaitError(f"the catalog reported no progress for {silence:g} s") from None
    finally:
        await subscription.unsubscribe()


async def _first_answered(
    nc: NATS, subscription: Subscription, inbox: str, within: float, on_waiting: Callable[[], None]
) -> Msg:
    deadline = time.monotonic() + within
    for sent in itertools.count():
        if sent == 1:
            on_waiting()
        await nc.publish(subjects.CATALOG_REBUILD, msgspec.json.encode(RebuildRequest()), reply=f"{inbox}.{sent}")
        left = deadline - time.monotonic()
        try:
            return await subscription.next_msg(timeout=max(min(RESEND_SECONDS, left), 0.001))
        except nats.errors.TimeoutError:
            if time.monotonic() >= deadline:
                raise PlaitError(
                    f"no catalog replica leads the projection (no answer within {within:g} s); is PostgreSQL reachable?"
                ) from None
    raise AssertionError("unreachable")


def _show_waiting() -> None:
    print("waiting for a catalog replica to lead the projection...", file=sys.stderr)


def _show_progress(progress: RebuildProgress) -> None:
    target = progress.target
    share = f" ({100 * progress.sequence / target:.0f}%)" if target else ""
    print(
        f"replayed {progress.messages} messages, up to sequence {progress.sequence} of {target}{share}",
        file=sys.stderr,
    )


async def rebuild_catalog(settings: Settings, as_json: bool = False) -> int:
    async with nats_for_command(settings, services=("catalog",)) as nats_url:
        nc = await connect(nats_url, "plait-catalog-rebuild")
        try:
            result = await request_rebuild(nc, _show_progress, on_waiting=_show_waiting)
        finally:
            await nc.close()
    if as_json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    print(
        f"rebuilt the catalog from {result.messages} messages (up to sequence {result.sequence}) "
        f"in {result.seconds:.2f} s, by replica {result.replica}"
    )
    for table, count in result.rows.items():
        print(f"  {table:<20} {count:>10}")
    return 0
