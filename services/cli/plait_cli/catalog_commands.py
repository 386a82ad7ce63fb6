"""The parsers of the catalog's query commands (cache, lineage, registry), and running them.

Only argparse here: the modules that do the work are imported when their command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from plait.core.model import EntityKind
from plait.protocol.registry import LATEST
from plait.settings import Settings

REGISTRY_KINDS: dict[str, EntityKind] = {"tasks": "task", "workflows": "workflow", "launch-plans": "launch_plan"}
COMMANDS = frozenset({"cache", "lineage", *REGISTRY_KINDS})
SCHEDULE_ACTIONS = frozenset({"activate", "deactivate"})  # of launch-plans


def add_parsers(commands: Any) -> None:
    """Add ``cache``, ``lineage``, ``tasks``, ``workflows`` and ``launch-plans`` to the ``plait`` sub-commands."""
    cache = commands.add_parser("cache", help="list, show and clear the task cache").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = cache.add_parser("list", help="cache entries, newest first")
    listing.add_argument("--task", metavar="NAME", help="only this task's entries")
    listing.add_argument("--limit", type=int, default=50, metavar="N")
    listing.add_argument("--json", action="store_true")
    show = cache.add_parser("show", help="one entry: its outputs and the execution, node and attempt that made them")
    show.add_argument("key", metavar="KEY")
    show.add_argument("--json", action="store_true")
    clear = cache.add_parser("clear", help="clear entries, so that their next look-up computes them again")
    clear.add_argument("keys", nargs="*", metavar="KEY")
    clear.add_argument("--task", metavar="NAME", help="every entry of this task")
    clear.add_argument("--all", action="store_true", help="every entry of the project and domain")
    clear.add_argument("--yes", action="store_true", help="do not ask before clearing --all")
    clear.add_argument("--json", action="store_true")

    lineage = commands.add_parser(
        "lineage",
        help="where an artifact or an execution's data came from and went",
        description="The node executions that made and used an artifact (one output of one attempt) or an "
        "execution's artifacts, DEPTH steps each way. Lineage follows artifacts, not values: with --same-value, "
        "the artifacts of other executions that hold the same value as an artifact (or a value hash).",
    )
    lineage.add_argument("target", metavar="ARTIFACT_OR_EXECUTION")
    way = lineage.add_mutually_exclusive_group()
    way.add_argument("--upstream", dest="direction", action="store_const", const="upstream")
    way.add_argument("--downstream", dest="direction", action="store_const", const="downstream")
    way.add_argument(
        "--same-value",
        dest="direction",
        action="store_const",
        const="same-value",
        help="list the artifacts that hold the same value (TARGET: an artifact id or a value hash)",
    )
    lineage.add_argument("--depth", type=int, default=3, metavar="N", help="steps to follow (default 3)")
    lineage.add_argument("--max-edges", type=int, default=5000, metavar="N", help="stop after N edges (default 5000)")
    lineage.add_argument("--limit", type=int, default=100, metavar="N", help="with --same-value: at most N (100)")
    output = lineage.add_mutually_exclusive_group()
    output.add_argument("--json", dest="output", action="store_const", const="json")
    output.add_argument("--dot", dest="output", action="store_const", const="dot", help="Graphviz DOT")
    lineage.set_defaults(direction="both", output="tree")

    for command, kind in REGISTRY_KINDS.items():
        plural = command.replace("-", " ")
        entities = commands.add_parser(command, help=f"registered {plural} and their versions").add_subparsers(
            dest="action", metavar="ACTION", required=True
        )
        entities.add_parser("list", help=f"{plural} by name, with their latest version").add_argument(
            "--json", action="store_true"
        )
        show = entities.add_parser("show", help=f"a {kind.replace('_', ' ')}'s spec (the latest version by default)")
        show.add_argument("reference", metavar="NAME[@VERSION]")
        show.add_argument("--json", action="store_true")
        if kind == "launch_plan":
            _add_schedule_parsers(entities)


def _add_schedule_parsers(actions: Any) -> None:
    activate = actions.add_parser(
        "activate", help="launch the plan on its schedule from now on (its latest version by default)"
    )
    activate.add_argument("name", metavar="NAME")
    activate.add_argument("--version", default=LATEST, metavar="V", help="the version to activate")
    activate.add_argument("--json", action="store_true")
    deactivate = actions.add_parser("deactivate", help="stop launching the plan on its schedule")
    deactivate.add_argument("name", metavar="NAME")
    deactivate.add_argument("--json", action="store_true")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run a command of ``COMMANDS``; returns its exit code."""
    step: Callable[[], Awaitable[int]]
    if args.command == "cache":
        from plait_cli import cache

        if args.action == "list":
            step = partial(cache.list_entries, settings, args.task, args.limit, args.json)
        elif args.action == "show":
            step = partial(cache.show_entry, settings, args.key, args.json)
        else:
            step = partial(cache.clear, settings, args.keys, args.task, args.all, args.yes, args.json)
    elif args.command == "lineage":
        from plait_cli.lineage import show_lineage, show_same_value

        if args.direction == "same-value":
            step = partial(show_same_value, settings, args.target, args.limit, args.output)
        else:
            step = partial(show_lineage, settings, args.target, args.direction, args.depth, args.max_edges, args.output)
    elif args.action in SCHEDULE_ACTIONS:
        from plait_cli import launch_plan_schedules

        step = partial(launch_plan_schedules.run, settings, args)
    else:
        from plait_cli import registry

        kind = REGISTRY_KINDS[args.command]
        if args.action == "list":
            step = partial(registry.list_entities, settings, kind, args.json)
        else:
            step = partial(registry.show_entity, settings, kind, args.reference, args.json)
    return anyio.run(step)
