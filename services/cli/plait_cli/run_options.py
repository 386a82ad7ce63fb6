"""``plait run``'s own options, which never shadow a workflow's inputs.

Before ``FILE.py:WORKFLOW`` every option is plait's. After it, the workflow's inputs come first: each
of plait's options is accepted there too, unless an input has the same flag (then it is the input's).
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple


class RunOption(NamedTuple):
    flag: str
    dest: str
    help: str
    metavar: str = ""  # an option that takes a value (else a flag)


RUN_OPTIONS = (
    RunOption("--detach", "detach", "print the execution id and how to follow it, and return at once"),
    RunOption("--no-follow", "no_follow", "the same as --detach"),
    RunOption("--json", "json", "print the result as JSON"),
    RunOption(
        "--overwrite-cache",
        "overwrite_cache",
        "run cached tasks without looking them up, and store their results in place of the cached ones",
    ),
    RunOption("--cluster", "cluster", "run its tasks on this cluster, except those that name their own", "NAME"),
    RunOption(
        "--cluster-selector",
        "cluster_selector",
        "in place of --cluster: run them on a cluster whose live executors have these labels",
        "KEY=VALUE,...",
    ),
    RunOption(
        "--no-bundle",
        "no_bundle",
        "register without the source bundle: workers import the tasks from the files, as they are when they run",
    ),
)
HELP_FLAGS = ("-h", "--help")


def _own(dest: str) -> str:
    """The destination of one of plait's options: not an identifier, so never an input's name."""
    return f"plait {dest}"


def add_run_options(parser: Any, taken: frozenset[str] = frozenset(), *, help_action: str = "help") -> None:
    """plait's options and help on ``parser`` or an argument group of it, less the flags in ``taken``.

    ``help_action`` "help" prints the help and exits; "store_true" notes it (before the workflow is known).
    """
    for option in RUN_OPTIONS:
        if option.flag in taken:
            continue
        if option.metavar:
            parser.add_argument(option.flag, dest=_own(option.dest), metavar=option.metavar, help=option.help)
        else:
            parser.add_argument(option.flag, dest=_own(option.dest), action="store_true", help=option.help)
    if help_flags := [flag for flag in HELP_FLAGS if flag not in taken]:
        what = "show this help (with the workflow's inputs)"
        if help_action == "help":
            parser.add_argument(*help_flags, action="help", help=what)
        else:
            parser.add_argument(*help_flags, dest=_own("help"), action="store_true", help=what)


def run_options(*namespaces: argparse.Namespace) -> dict[str, Any]:
    """plait's options given in any of ``namespaces``: ``{"detach": ..., "no_follow": ..., "json": ..., "help": ...}``
    (``help`` only as noted before the workflow); an option that takes a value: the last one given, or None."""
    flags = [option.dest for option in RUN_OPTIONS if not option.metavar] + ["help"]
    chosen: dict[str, Any] = {
        dest: any(getattr(namespace, _own(dest), False) for namespace in namespaces) for dest in flags
    }
    for option in RUN_OPTIONS:
        if option.metavar:
            values = [getattr(namespace, _own(option.dest), None) for namespace in namespaces]
            chosen[option.dest] = next((v for v in reversed(values) if v is not None), None)
    return chosen


def without_run_options(namespace: argparse.Namespace) -> dict[str, Any]:
    """The values in ``namespace`` that are not plait's options: the workflow's inputs."""
    return {name: value for name, value in vars(namespace).items() if not name.startswith(_own(""))}
