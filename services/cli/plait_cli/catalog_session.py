"""What the catalog commands share: a client whose queries see the log as it is now, and output helpers."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from plait.client import AsyncClient
from plait.settings import Settings
from plait_cli.stack import nats_for_command


@contextlib.asynccontextmanager
async def catalog_client(settings: Settings) -> AsyncIterator[tuple[AsyncClient, int]]:
    """A connected client, and the event stream's last sequence to pass as ``min_sequence``."""
    async with nats_for_command(settings, services=("catalog",)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            yield client, await client.log_position()


def console() -> Console:
    """Rich's console; when output is piped, wide enough that rows are not folded."""
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=200)


def print_rows(table: Table, nothing: str) -> None:
    """``table``; or, when it has no row, ``nothing`` on stderr (a script reading stdout gets no row)."""
    if table.row_count:
        console().print(table)
    else:
        Console(stderr=True).print(nothing, highlight=False)


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""
