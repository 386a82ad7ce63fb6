"""The parser of ``plait clusters``, and running it. Only argparse here: the module that does the work is imported
when its command runs."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from plait.settings import Settings

COMMANDS = frozenset({"clusters"})


def add_parsers(commands: Any) -> None:
    """Add ``clusters`` to the ``plait`` sub-commands."""
    clusters = commands.add_parser("clusters", help="clusters, their live executors and queued work").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = clusters.add_parser(
        "list",
        help="every cluster known (from live executors and from queued work)",
        description="Each cluster with a live executor or an attempt dispatched to it: its executors (cluster, "
        "queue, replica, back end, labels, started, last seen) and, per queue, its dispatches stored (queued), "
        "not yet taken (waiting) and held by an executor (held).",
    )
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")
    listing.add_argument("--json", dest="output", action="store_const", const="json")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from plait_cli.clusters import list_clusters

    return anyio.run(list_clusters, settings, args.output == "json")
