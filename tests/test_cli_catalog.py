"""``plait cache``, ``plait lineage`` and ``plait tasks|workflows|launch-plans``, run in-process against a real
catalog (in a background event loop) found through PLAIT_NATS_URL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio.from_thread
import msgspec
import pytest
import structlog

from plait.adapters.cachelog import CacheLog
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.core.cachelog import CacheFilled
from plait.logging import configure_logging
from plait_catalog import CatalogService, db
from plait_catalog.migrations import migrate
from plait_cli.main import dispatch, main
from tests.helpers.catalog_rows import CACHE_KEYS, DOMAIN, DOUBLE, H7, PROJECT, artifact, insert_all, insert_chain


async def seed(database_url: str) -> None:
    connection = await db.connect(database_url, "test-cli-rows")
    try:
        await migrate(connection)
        await insert_all(connection)
    finally:
        await connection.close()


async def seed_another_project(database_url: str, project: str) -> None:
    """The executions A, B and C again, in ``project``, with other inputs."""
    connection = await db.connect(database_url, "test-cli-rows")
    try:
        await insert_chain(connection, project)
        await connection.execute("UPDATE executions SET inputs = $1 WHERE project = $2", {"x": 30}, project)
    finally:
        await connection.close()


async def fill_in_log(nats_url: str, keys: list[str]) -> None:
    """Fill ``keys`` in the cache log, as a scheduler would have, so that they can be cleared."""
    nc = await connect(nats_url, "test-cli-fill")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        for key in keys:
            task, result, execution_id, _ = CACHE_KEYS[key]
            node = task.rsplit(".", 1)[-1]
            fill = CacheFilled(
                project=PROJECT,
                domain=DOMAIN,
                cache_key=key,
                task_name=task,
                task_version="t1",
                outputs={"result": result},
                execution_id=execution_id,
                node=node,
                attempt_id=f"{execution_id}/{node}/1",
                at=datetime.now(UTC),
            )
            await CacheLog(js, PROJECT, DOMAIN, key).append(fill)
    finally:
        await nc.close()


@pytest.fixture
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as running_portal:
        yield running_portal


@pytest.fixture
def catalog(
    nats_url: str,
    database_url: str,
    portal: anyio.from_thread.BlockingPortal,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[str]:
    """A catalog replica in a background event loop over the rows of ``tests.helpers.catalog_rows``; the CLI's settings
    point at it."""
    saved_logging = structlog.get_config()
    configure_logging("json", "warning", file=tmp_path / "plait.log")  # the replica's log, off the captured output
    portal.call(seed, database_url)
    service, _ = portal.start_task(CatalogService(nats_url, database_url, replica="cli").run)
    for name, value in (("PLAIT_NATS_URL", nats_url), ("PLAIT_PROJECT", PROJECT), ("PLAIT_DOMAIN", DOMAIN)):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: nothing to confirm with
    try:
        yield nats_url
    finally:
        service.cancel()
        structlog.configure(**saved_logging)


def plait(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``plait ARGV`` as ``main`` does: the exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_cache_list_and_show(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "task", "created", "from"]
    assert [line.split()[0] for line in lines[1:]] == ["k-double-7", "k-increment-6", "k-double-3"]
    assert "B/double" in lines[1]

    assert dispatch(["cache", "list", "--task", DOUBLE, "--limit", "1", "--json"]) == 0
    [entry] = msgspec.json.decode(capsys.readouterr().out)
    assert (entry["cache_key"], entry["execution_id"]) == ("k-double-7", "B")

    assert dispatch(["cache", "show", "k-increment-6"]) == 0
    shown = capsys.readouterr().out
    assert 'outputs: {"result":7}' in shown and "A/increment" in shown
    assert dispatch(["cache", "show", "k-increment-6", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out)["outputs"] == {"result": 7}

    code, out, err = plait(capsys, "cache", "show", "k-nope")
    assert (code, out) == (2, "")
    assert "NotFound" in err and "k-nope" in err


def test_cache_clear(
    catalog: str, portal: anyio.from_thread.BlockingPortal, capsys: pytest.CaptureFixture[str]
) -> None:
    portal.call(fill_in_log, catalog, ["k-increment-6", "k-double-3", "k-double-7"])

    assert dispatch(["cache", "clear", "k-increment-6"]) == 0
    assert capsys.readouterr().out == "cleared k-increment-6\n"
    code, out, err = plait(capsys, "cache", "clear", "k-increment-6")
    assert (code, out) == (1, "")
    assert "not cleared k-increment-6: it has no entry" in err
    code, _, err = plait(capsys, "cache", "clear", "k*")
    assert code == 1 and "not cleared k*: cache key 'k*' may only hold" in err

    code, _, err = plait(capsys, "cache", "clear", "--all")
    assert code == 2 and "--yes" in err
    code, _, err = plait(capsys, "cache", "clear", "k-double-3", "--all")
    assert code == 2 and "--task NAME or --all" in err

    assert dispatch(["cache", "clear", "--task", DOUBLE, "--json"]) == 0
    outcome = msgspec.json.decode(capsys.readouterr().out)
    assert outcome == {"cleared": ["k-double-7", "k-double-3"], "skipped": {}}


def test_lineage_as_tree_json_and_dot(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    c_result, a_input, a_result = artifact("C", "increment"), artifact("A"), artifact("A", "increment")
    assert dispatch(["lineage", c_result, "--upstream", "--depth", "4"]) == 0
    tree = capsys.readouterr().out
    assert tree.splitlines()[0].startswith(f"{c_result[:12]} int = 7 (attempt C/increment/1)")
    for expected in (
        "increment C/increment succeeded",
        "cached result:",
        "(cache hit of A/double)",
        "double A/double",
        "execution A tests.pipeline succeeded",
    ):
        assert expected in tree, expected
    assert "downstream" not in tree and "B/" not in tree

    assert dispatch(["lineage", "A", "--depth", "1"]) == 0
    both = capsys.readouterr().out
    assert "upstream" in both and "downstream" in both and "C/double" in both
    assert "increment.x:" in both and "double.result:" in both  # an execution stands for all its nodes

    assert dispatch(["lineage", a_input, "--downstream", "--depth", "2", "--json"]) == 0
    graph = msgspec.json.decode(capsys.readouterr().out)
    assert graph["root"] == f"artifact:{a_input}" and graph["direction"] == "downstream"
    cached = {"source": f"artifact:{artifact('A', 'double')}", "target": "node:C/double", "name": "result"}
    assert {**cached, "kind": "cached"} in graph["edges"]

    assert dispatch(["lineage", a_result, "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph lineage {\n") and dot.endswith("}\n")
    assert f'"artifact:{a_result}" [shape=box, label="int\\n7\\nattempt A/increment/2", style=bold];' in dot
    assert f'"artifact:{a_result}" -> "execution:A" [label="result"];' in dot
    assert '"node:A/increment" [shape=ellipse, label="tests.increment\\nA/increment"];' in dot

    assert dispatch(["lineage", c_result, "--upstream", "--max-edges", "5", "--json"]) == 0
    captured = capsys.readouterr()
    assert msgspec.json.decode(captured.out)["truncated"]
    assert "more than 5 edges within 3 steps" in captured.err

    code, out, err = plait(capsys, "lineage", "no-such-thing", "--dot")
    assert (code, out) == (2, "")
    assert "no-such-thing is neither an artifact id nor an execution id" in err


def test_lineage_same_value(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--same-value`` lists the artifacts of other executions holding the value; lineage never linked them."""
    assert dispatch(["lineage", artifact("A", "increment"), "--same-value"]) == 0
    table = capsys.readouterr().out
    assert f"value {H7}" in table
    assert artifact("B") in table and artifact("C", "increment") in table and artifact("A", "increment") not in table
    assert "attempt C/increment/1" in table and "launch" in table

    assert dispatch(["lineage", H7, "--same-value", "--limit", "2", "--json"]) == 0
    captured = capsys.readouterr()
    found = msgspec.json.decode(captured.out)
    assert [a["execution_id"] for a in found["artifacts"]] == ["C", "B"] and found["truncated"]
    assert "more than 2 artifacts hold this value" in captured.err

    code, _, err = plait(capsys, "lineage", H7)
    assert code == 2 and "value's hash, not an artifact" in err and "--same-value" in err
    code, _, err = plait(capsys, "lineage", H7, "--same-value", "--dot")
    assert code == 2 and "--same-value lists artifacts" in err


def test_registry_commands(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["tasks", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == [DOUBLE, "d3"] and lines[1].split()[-1] == "3"
    assert lines[2].split()[:2] == ["tests.increment", "i1"]

    assert dispatch(["launch-plans", "list", "--json"]) == 0
    [plan] = msgspec.json.decode(capsys.readouterr().out)
    assert (plan["name"], [v["version"] for v in plan["versions"]]) == ("daily", ["p1"])

    assert dispatch(["tasks", "show", DOUBLE]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"task {DOUBLE}@d3\nregistered: 2031-03-01 12:01:45\n")
    assert '"version": "d3"' in shown
    assert dispatch(["tasks", "show", f"{DOUBLE}@d1", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out)["spec"] == {"name": DOUBLE, "version": "d1"}
    assert dispatch(["workflows", "show", "tests.pipeline@latest", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out)["version"] == "w1"

    code, _, err = plait(capsys, "workflows", "show", "tests.nothing")
    assert code == 2 and "workflow 'tests.nothing' is not registered in flows/development" in err
    code, _, err = plait(capsys, "tasks", "show", f"{DOUBLE}@d9")
    assert code == 2 and "no version 'd9'" in err


def test_executions_show_and_list_each_project_its_own(
    catalog: str,
    database_url: str,
    portal: anyio.from_thread.BlockingPortal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    portal.call(seed_another_project, database_url, "elsewhere")
    for project, inputs in ((PROJECT, {"x": 3}), ("elsewhere", {"x": 30})):
        monkeypatch.setenv("PLAIT_PROJECT", project)
        assert dispatch(["executions", "show", "A", "--json"]) == 0
        shown = msgspec.json.decode(capsys.readouterr().out)
        assert (shown["project"], shown["inputs"]) == (project, inputs)
        assert [node["node"] for node in shown["nodes"]] == ["double", "increment"]
        assert dispatch(["executions", "list", "--json"]) == 0
        listed = msgspec.json.decode(capsys.readouterr().out)["executions"]
        assert sorted((row["execution_id"], row["project"]) for row in listed) == [
            ("A", project),
            ("B", project),
            ("C", project),
        ]


def test_an_empty_list_says_so_on_stderr_and_prints_no_row(
    catalog: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLAIT_PROJECT", "empty")
    for argv, said in (
        (["executions", "list"], "no executions in empty/development"),
        (["executions", "list", "--status", "failed"], "no failed executions in empty/development"),
        (["cache", "list", "--task", DOUBLE], f"no cache entries of task {DOUBLE} in empty/development"),
        (["launch-plans", "list"], "no launch plans registered in empty/development"),
    ):
        assert dispatch(argv) == 0
        out, err = capsys.readouterr()
        assert (out, err) == ("", said + "\n"), argv
