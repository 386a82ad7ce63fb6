"""The parser of ``plait streams``, and running it. Only argparse here: the module that does the work is imported when
its command runs."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from plait.settings import Settings

COMMANDS = frozenset({"streams"})


def add_parsers(commands: Any) -> None:
    """Add ``streams`` to the ``plait`` sub-commands."""
    streams = commands.add_parser(
        "streams", help="make plait's JetStream streams and buckets (the operator's step)"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    ensure = streams.add_parser(
        "ensure",
        help="create the streams and buckets, or bring them to this release (run it as the operator)",
        description="Create every stream and bucket plait uses that is missing, and bring existing streams to this "
        "release's subjects and size limits (and to --replicas, when given). Run it with the operator's NATS "
        "credentials (PLAIT_NATS_USER=plait-operator, PLAIT_NATS_PASSWORD_FILE) before the services start, and "
        "after each upgrade: where NATS confines its users (deploy/nats/tenants.conf) no other credential may "
        "create, update, purge or delete a stream, and services wait, not ready, until the streams are there. "
        "Running it again changes nothing.",
    )
    ensure.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="copies of each stream in a NATS cluster (1, 3 or 5; default: 1 for new streams, existing ones kept)",
    )
    ensure.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="split the commands stream in N partitions for as many scheduler replicas (PLAIT_SCHEDULER_PARTITIONS=N "
        "on each; docs/scaling.md); a stream split in another number is refused",
    )
    ensure.add_argument("--json", action="store_true", help="print what was done to each stream as JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from plait_cli.stream_setup import ensure_streams_command

    return anyio.run(ensure_streams_command, settings, args.replicas, args.json, args.partitions)
