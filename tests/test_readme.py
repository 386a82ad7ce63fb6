"""Every example of the README and docs/*.md runs as written: the Python blocks of a document, in order and
sharing their names (as doctest does), against real servers and services; each ``plait`` command shown parses,
with the options shown."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from plait.client import AsyncClient
from plait_cli.main import dispatch
from tests.helpers.processes import REPO
from tests.helpers.stack import services_and_client

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_URL = "nats://127.0.0.1:4222"
CHECKED_PRINT = re.compile(r"^\s*print\(.*\)\s+# (?P<shown>.+)$")


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


def python_blocks(document: Path) -> list[str]:
    """The document's Python blocks, in order, each dedented (a block inside a list item is indented)."""
    found = re.findall(r"^([ \t]*)```python\n(.*?)^\1```", document.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(block) for _, block in found]


def shown_output(block: str) -> list[str]:
    """What the block's ``print(...)  # OUTPUT`` lines say they print."""
    return [match["shown"] for line in block.splitlines() if (match := CHECKED_PRINT.match(line))]


def test_the_readme_has_python_examples_to_run() -> None:
    assert len(python_blocks(REPO / "README.md")) >= 5


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if python_blocks(d)], ids=lambda path: path.name)
async def test_the_python_examples_run_and_print_what_they_show(
    document: Path, client: AsyncClient, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [block.replace(EXAMPLE_URL, nats_url) for block in python_blocks(document)]
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))
    printed = io.StringIO()
    names: dict[str, object] = {"__name__": f"example_{document.stem.lower()}"}

    def run() -> None:
        with contextlib.redirect_stdout(printed):
            for index, block in enumerate(blocks):
                exec(compile(block, f"{document.name}, Python block {index + 1}", "exec"), names)

    with anyio.fail_after(120):
        await anyio.to_thread.run_sync(run)
    lines = printed.getvalue().splitlines()  # the services on this loop log to the same stdout
    for block in blocks:
        for shown in shown_output(block):
            assert shown in lines, f"{document.name}: no line printed reads {shown!r}"


def shown_commands(document: Path) -> list[str]:
    """Every ``plait ...`` command of the document: inline (in backticks) and in shell blocks."""
    text = document.read_text()
    inline = re.findall(r"`(plait [^`]+)`", text)
    shell = [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip().startswith("plait ")
    ]
    return inline + shell


def command_paths(command: str) -> tuple[list[list[str]], list[str]]:
    """The subcommand words of a shown command (each ``a|b`` alternative spelled out), and its options."""
    words = command.replace("\\|", "|").split()[1:]
    path: list[list[str]] = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", word):
            break
        path.append(word.split("|"))
    options = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", command)) - {"--input"})  # --input: a placeholder
    return [list(words) for words in itertools.product(*path)], options


def help_of(path: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``plait PATH --help`` prints; it must succeed."""
    try:
        code = dispatch([*path, "--help"])
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    assert code == 0, f"`plait {' '.join(path)} --help` failed"
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    sorted({command for document in DOCUMENTS for command in shown_commands(document)}),
)
def test_every_plait_command_shown_parses_with_the_options_shown(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An option shown may belong to any subcommand of the command's first word (``deadletter show SEQ|redrive
    --all``)."""
    paths, options = command_paths(command)
    helps = "".join(help_of(path, capsys) for path in paths)
    first = paths[0][:1]
    top = help_of(first, capsys)
    subcommands = re.findall(r"^ {4}([a-z][a-z-]*)(?: |$)", top, flags=re.M)  # as argparse lists an ACTION's choices
    helps += top + "".join(help_of([*first, subcommand], capsys) for subcommand in subcommands)
    missing = [option for option in options if option not in helps]
    assert not missing, f"`{command}`: {missing} are not options of it"
