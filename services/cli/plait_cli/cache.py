"""``plait cache list|show|clear``: the task cache of a project and domain."""

from __future__ import annotations

import getpass
import sys

import anyio.to_thread
import msgspec
from rich.prompt import Confirm
from rich.table import Table

from plait.errors import InputError
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json, print_rows, when

MAX_ENTRIES = 10_000  # the most entries one `--task` or `--all` clears at once


async def list_entries(settings: Settings, task: str | None, limit: int, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        entries = await client.cache_entries(task, limit, min_sequence=position)
    if as_json:
        print_json(entries)
        return 0
    table = Table(box=None)
    for column in ("key", "task", "created", "from"):
        table.add_column(column)
    for entry in entries:
        source = f"{entry.execution_id}/{entry.node}"
        table.add_row(entry.cache_key, entry.task_name, when(entry.created_at), source)
    print_rows(table, f"no cache entries{f' of task {task}' if task else ''} in {settings.project}/{settings.domain}")
    return 0


async def show_entry(settings: Settings, key: str, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        entry = await client.cache_entry(key, min_sequence=position)
    if as_json:
        print_json(entry)
        return 0
    out = console()
    out.print(f"[bold]cache key[/] {entry.cache_key}", highlight=False)
    out.print(f"task:    {entry.task_name}@{entry.task_version[:12]}", highlight=False)
    out.print(f"created: {when(entry.created_at)}", highlight=False)
    out.print(f"from:    {entry.execution_id}/{entry.node} (attempt {entry.attempt_id})", highlight=False)
    out.print(f"outputs: {msgspec.json.encode(entry.outputs).decode()}", highlight=False, soft_wrap=True)
    return 0


async def clear(
    settings: Settings, keys: list[str], task: str | None, everything: bool, yes: bool, as_json: bool
) -> int:
    """Clear the given keys, a task's entries, or all of them; exits 1 if some could not be cleared."""
    if bool(keys) + (task is not None) + everything != 1:
        raise InputError("give cache keys, --task NAME or --all")
    if everything and not yes and not sys.stdin.isatty():
        raise InputError("--all clears the whole cache of the project and domain; confirm it with --yes")
    async with catalog_client(settings) as (client, position):
        if not keys:
            entries = await client.cache_entries(task, MAX_ENTRIES, min_sequence=position)
            keys = [entry.cache_key for entry in entries]
        if everything and not yes and keys:
            question = f"clear all {len(keys)} cache entries of {settings.project}/{settings.domain}?"
            if not await anyio.to_thread.run_sync(Confirm.ask, question):
                print("nothing cleared", file=sys.stderr)
                return 1
        outcome = await client.clear_cache(keys, cleared_by=getpass.getuser())
    if as_json:
        print_json(outcome)
    else:
        for key in outcome.cleared:
            print(f"cleared {key}")
        if not keys:
            print("no cache entries to clear")
    for key, reason in outcome.skipped.items():
        print(f"plait: not cleared {key}: {reason}", file=sys.stderr)
    return 1 if outcome.skipped else 0
