"""The README's Python example runs as written, against real servers and services."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from plait.client import AsyncClient
from tests.processes import REPO
from tests.stack import services_and_client


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


def readme_block(heading: str) -> str:
    """The first Python block after ``heading`` in the README."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(heading) :]
    found = re.search(r"```python\n(.*?)```", after, flags=re.S)
    assert found is not None, f"no Python block after {heading!r}"
    return found.group(1)


async def test_the_python_example_launches_and_waits(
    client: AsyncClient, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = readme_block("## From Python").replace("nats://127.0.0.1:4222", nats_url)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))
    printed = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), {})

    with anyio.fail_after(90):
        await anyio.to_thread.run_sync(run)
    # the services on this loop log to the same stdout
    assert "succeeded {'result': 'HELLO, PLAIT! HELLO, PLAIT!'}" in printed.getvalue().splitlines()
