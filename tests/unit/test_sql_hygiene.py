"""No SQL is built from strings with user data: every SQL text in libs/ and services/ made with an f-string,
``str.format``, ``%`` or ``+`` interpolates only constants (module-level UPPER_CASE names, literals) or the few
names listed here, each with the reason it holds no user data. Values always go in as ``$n`` parameters."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs", ROOT / "services"]
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|ALTER\s+TABLE)\b", re.I)
CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*")

# (file name, name interpolated): why it holds no user data.
KNOWN: dict[tuple[str, str], str] = {
    ("projection.py", "table"): "a table name, from PROJECTED_TABLES or a row type's table",
    ("projection.py", "columns"): "column names, from a row type's fields",
    ("projection.py", "values"): "$n placeholders and casts built from the row type",
    ("projection.py", "key"): "column names of a row type's key",
    ("projection.py", "keys"): "column names of a row type's key",
    ("projection.py", "arrays"): "$n placeholders",
    ("projection.py", "match"): "column comparisons built from the key's names",
    ("projection.py", "row_type"): "a row type (its table and fields are code)",
    ("projection.py", "action"): "NOTHING, or column assignments built from a row type's fields",
    ("projection.py", "_columns_but_write_once"): "a row type's column names",
    ("projection.py", "NodeRow"): "a row type (its fields are code)",
    ("queries.py", "where"): "column comparisons with $n placeholders; columns from a fixed tuple",
    ("queries.py", "arguments"): "only its length: the next placeholder's number",
}


def _interpolated(node: ast.AST) -> list[ast.AST]:
    """The expressions put into a string built by ``node`` (none when it is not such a string)."""
    if isinstance(node, ast.JoinedStr):
        return [value.value for value in node.values if isinstance(value, ast.FormattedValue)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return [side for side in (node.left, node.right) if not isinstance(side, ast.Constant)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return [*node.args, *(keyword.value for keyword in node.keywords), node.func.value]
    return []


def _text(node: ast.AST) -> str:
    return " ".join(
        part.value for part in ast.walk(node) if isinstance(part, ast.Constant) and isinstance(part.value, str)
    )


def findings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        parts = _interpolated(node)
        if not parts or not SQL.search(_text(node)):
            continue
        for part in parts:
            for name in (n.id for n in ast.walk(part) if isinstance(n, ast.Name)):
                if not CONSTANT.fullmatch(name) and (path.name, name) not in KNOWN and name not in {"len", "tuple"}:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: SQL built with '{name}'")
    return found


def test_no_sql_is_built_from_non_constant_data() -> None:
    problems = [problem for source in SOURCES for path in sorted(source.rglob("*.py")) for problem in findings(path)]
    assert problems == [], "build SQL from constants, pass values as $n parameters:\n" + "\n".join(problems)


def test_the_scan_finds_a_value_put_into_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "async def f(connection, name, limit):\n"
        "    await connection.fetch(f\"SELECT * FROM executions WHERE name = '{name}'\")\n"
        "    await connection.fetch('SELECT * FROM executions LIMIT ' + str(limit))\n"
        "    await connection.fetch('DELETE FROM t WHERE x = {}'.format(name))\n"
        "    await connection.fetch('SELECT * FROM t WHERE x = $1', name)\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert [problem.split(": ", 1)[1] for problem in findings(bad)] == [
            "SQL built with 'name'",
            "SQL built with 'str'",
            "SQL built with 'limit'",
            "SQL built with 'name'",
        ]
    finally:
        ROOT = saved
