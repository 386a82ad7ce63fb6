"""The parser of ``plait top``, and running it (the work is imported when it runs)."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from plait.settings import Settings

COMMANDS = frozenset({"top"})


def add_parsers(commands: Any) -> None:
    """Add ``top`` to the ``plait`` sub-commands."""
    top = commands.add_parser(
        "top",
        help="a live view of queues, executors, services and executions",
        description="Dispatch queue depth per cluster and queue with their live executors, consumers' backlogs, "
        "timers, dead letters and quarantined messages (read from JetStream), running executions (from the "
        "catalog), and each live service replica with its version, readiness, counts and projection lag (from the "
        "metrics endpoint it announces, or those given with --endpoint).",
    )
    top.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="a metrics endpoint to read besides those the replicas announce, e.g. http://127.0.0.1:9090 (repeat)",
    )
    top.add_argument("--once", action="store_true", help="print the view once and exit")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from plait_cli.top import top

    return anyio.run(top, settings, args.endpoint, args.once, args.interval)
