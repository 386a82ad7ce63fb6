"""``plait deadletter list|count|show|redrive``: rejected commands, why, and sending them again."""

from __future__ import annotations

import sys

from rich.table import Table

from plait.adapters import deadletters
from plait.errors import InputError
from plait.settings import Settings
from plait_cli.catalog_session import console, print_json, when
from plait_cli.operator_session import operator_nats


async def list_letters(settings: Settings, limit: int, as_json: bool) -> int:
    async with operator_nats(settings, "plait-deadletter") as nc:
        js = nc.jetstream()
        count = await deadletters.count(js)
        shown = await deadletters.newest(js, limit) if limit > 0 else []
    if as_json:
        print_json({"count": count, "dead_letters": [_summary(letter) for letter in shown]})
        return 0
    print(f"dead letters: {count}")
    if shown:
        table = Table(box=None)
        for column in ("sequence", "stored", "subject", "reason"):
            table.add_column(column)
        for letter in shown:
            stored = when(letter.stored_at)
            table.add_row(str(letter.sequence), stored, letter.original_subject, letter.reason)
        console().print(table)
    return 0


async def count_letters(settings: Settings, as_json: bool) -> int:
    async with operator_nats(settings, "plait-deadletter") as nc:
        count = await deadletters.count(nc.jetstream())
    if as_json:
        print_json({"count": count})
    else:
        print(count)
    return 0


async def show_letter(settings: Settings, sequence: int, as_json: bool) -> int:
    async with operator_nats(settings, "plait-deadletter") as nc:
        letter = await deadletters.get(nc.jetstream(), sequence)
    if as_json:
        print_json({**_summary(letter), "headers": letter.headers, "command": letter.data.decode(errors="replace")})
        return 0
    out = console()
    out.print(f"[bold]dead letter[/] {letter.sequence}", highlight=False)
    out.print(f"subject: {letter.original_subject}", highlight=False)
    out.print(f"stored:  {when(letter.stored_at)}", highlight=False)
    out.print(f"reason:  {letter.reason}", highlight=False, soft_wrap=True)
    for key, value in sorted(letter.headers.items()):
        out.print(f"header:  {key}: {value}", highlight=False, soft_wrap=True)
    out.print(f"command: {letter.data.decode(errors='replace')}", highlight=False, soft_wrap=True)
    return 0


async def redrive_letters(settings: Settings, sequences: list[int], everything: bool) -> int:
    if bool(sequences) == everything:
        raise InputError("give dead-letter sequences or --all")
    async with operator_nats(settings, "plait-deadletter", services=("scheduler",)) as nc:
        js = nc.jetstream()
        letters = await deadletters.read_all(js) if everything else [await deadletters.get(js, s) for s in sequences]
        for letter in letters:
            command_sequence = await deadletters.redrive(js, letter)
            print(f"redrove {letter.sequence} to {letter.original_subject} (command {command_sequence})")
    if not letters:
        print("no dead letters to redrive", file=sys.stderr)
    return 0


def _summary(letter: deadletters.DeadLetter) -> dict[str, object]:
    return {
        "sequence": letter.sequence,
        "subject": letter.original_subject,
        "stored_at": letter.stored_at,
        "reason": letter.reason,
    }
