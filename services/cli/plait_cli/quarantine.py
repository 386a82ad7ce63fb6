"""``plait quarantine list|count|replay``: stored messages a service could not read."""

from __future__ import annotations

import sys

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from rich.table import Table

from plait.adapters.quarantine import REPLAY_TIMEOUT_SECONDS, read_entries
from plait.errors import PlaitError
from plait.protocol.quarantine import READERS, QuarantineEntry, ReplayOutcome, ReplayReply, ReplayRequest
from plait.protocol.subjects import quarantine_replay_subject
from plait.settings import Settings
from plait_cli.catalog_session import console, print_json, when
from plait_cli.operator_session import operator_nats

_NO_RESPONDERS = "503"


async def list_entries(settings: Settings, reader: str | None, resolved_too: bool, as_json: bool) -> int:
    async with operator_nats(settings, "plait-quarantine") as nc:
        entries = await read_entries(nc.jetstream(), reader)
    open_entries = [entry for entry in entries if entry.resolved_at is None]
    shown = entries if resolved_too else open_entries
    if as_json:
        print_json({"open": len(open_entries), "resolved": len(entries) - len(open_entries), "entries": shown})
        return 0
    print(f"quarantine entries: {len(open_entries)} open, {len(entries) - len(open_entries)} resolved")
    if shown:
        console().print(_table(shown))
    return 0


async def count_open(settings: Settings, as_json: bool) -> int:
    async with operator_nats(settings, "plait-quarantine") as nc:
        entries = await read_entries(nc.jetstream())
    count = sum(entry.resolved_at is None for entry in entries)
    if as_json:
        print_json({"open": count})
    else:
        print(count)
    return 0


async def replay(settings: Settings, reader: str | None, sequences: list[int] | None, as_json: bool) -> int:
    """Ask each reader to read its quarantined messages again; exits 1 if some still fail, or no reader answered."""
    outcomes: list[ReplayOutcome] = []
    async with operator_nats(settings, "plait-quarantine", services=("scheduler", "catalog")) as nc:
        for name in (reader,) if reader else READERS:
            outcome = await _ask(nc, name, sequences)
            if outcome is None:
                print(f"plait: no {name} is running to replay its quarantined messages", file=sys.stderr)
            else:
                outcomes.append(outcome)
    if as_json:
        print_json(outcomes)
    else:
        for outcome in outcomes:
            print(f"{outcome.reader}: {len(outcome.resolved)} resolved, {len(outcome.unreadable)} still unreadable")
            for sequence, reason in sorted(outcome.unreadable.items()):
                print(f"  {sequence}: {reason}")
    return 1 if not outcomes or any(outcome.unreadable for outcome in outcomes) else 0


async def _ask(nc: NATS, reader: str, sequences: list[int] | None) -> ReplayOutcome | None:
    """The reader's outcome; None when no replica of it is running."""
    try:
        reply = await nc.request(
            quarantine_replay_subject(reader),
            msgspec.json.encode(ReplayRequest(sequences)),
            timeout=REPLAY_TIMEOUT_SECONDS,
        )
    except nats.errors.NoRespondersError:
        return None
    except nats.errors.TimeoutError:
        raise PlaitError(f"the {reader} did not answer within {REPLAY_TIMEOUT_SECONDS:g} s") from None
    answer = msgspec.json.decode(reply.data, type=ReplayReply)
    if answer.result is None:
        raise PlaitError(f"the {reader} refused the replay: {answer.error}")
    return answer.result


def _table(entries: list[QuarantineEntry]) -> Table:
    table = Table(box=None)
    for column in ("reader", "sequence", "subject", "quarantined", "resolved", "reason"):
        table.add_column(column)
    for entry in entries:
        resolved = when(entry.resolved_at)
        table.add_row(
            entry.reader,
            str(entry.sequence),
            entry.subject,
            when(entry.quarantined_at),
            resolved,
            entry.reason,
        )
    return table
