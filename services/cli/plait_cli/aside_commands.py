"""The parsers of ``plait quarantine`` and ``plait deadletter`` (what was kept aside), and running them.

Only argparse here: the modules that do the work are imported when their command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from plait.protocol.quarantine import READERS
from plait.settings import Settings

COMMANDS = frozenset({"quarantine", "deadletter"})


def add_parsers(commands: Any) -> None:
    """Add ``quarantine`` and ``deadletter`` to the ``plait`` sub-commands."""
    quarantine = commands.add_parser(
        "quarantine", help="stored messages a service could not read, and reading them again"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = quarantine.add_parser("list", help="quarantined messages, and how many are open")
    listing.add_argument("--reader", choices=READERS, help="only this reader's entries")
    listing.add_argument("--all", action="store_true", help="resolved entries too")
    _with_json(listing)
    _with_json(quarantine.add_parser("count", help="how many quarantined messages are open (for alerting)"))
    replay = quarantine.add_parser(
        "replay",
        help="ask the readers to read their quarantined messages again",
        description="Each reader (the catalog, the schedulers' outbox) reads the given quarantined messages "
        "again (all its open ones by default); those it now takes are resolved. Exits 1 if some still fail, or if no "
        "reader answered.",
    )
    replay.add_argument("sequences", nargs="*", type=int, metavar="SEQUENCE")
    replay.add_argument("--reader", choices=READERS, help="only this reader (default: every reader)")
    _with_json(replay)

    deadletter = commands.add_parser("deadletter", help="rejected commands: list, show, redrive").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = deadletter.add_parser("list", help="dead letters, oldest first, and how many there are")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="show the N newest (default 100)")
    _with_json(listing)
    _with_json(deadletter.add_parser("count", help="how many dead letters there are (for alerting)"))
    show = deadletter.add_parser("show", help="one dead letter: its reason, headers and command")
    show.add_argument("sequence", type=int, metavar="SEQUENCE")
    _with_json(show)
    redrive = deadletter.add_parser(
        "redrive",
        help="send dead-lettered commands again to their subject, and remove them",
        description="Publish each command again to its original subject (with a new Nats-Msg-Id), then delete "
        "its dead letter. A command refused again comes back as a new dead letter.",
    )
    redrive.add_argument("sequences", nargs="*", type=int, metavar="SEQUENCE")
    redrive.add_argument("--all", action="store_true", help="every dead letter there is now")


def _with_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run a command of ``COMMANDS``; returns its exit code."""
    step: Callable[[], Awaitable[int]]
    if args.command == "quarantine":
        from plait_cli import quarantine

        if args.action == "list":
            step = partial(quarantine.list_entries, settings, args.reader, args.all, args.json)
        elif args.action == "count":
            step = partial(quarantine.count_open, settings, args.json)
        else:
            step = partial(quarantine.replay, settings, args.reader, args.sequences or None, args.json)
    else:
        from plait_cli import deadletter

        if args.action == "list":
            step = partial(deadletter.list_letters, settings, args.limit, args.json)
        elif args.action == "count":
            step = partial(deadletter.count_letters, settings, args.json)
        elif args.action == "show":
            step = partial(deadletter.show_letter, settings, args.sequence, args.json)
        else:
            step = partial(deadletter.redrive_letters, settings, args.sequences, args.all)
    return anyio.run(step)
