"""The SDK at definition time: what ``@task`` and ``@workflow`` refuse, and what they record."""

from __future__ import annotations

import re
import socket
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait import DefinitionError, NotFound, PlaitError, Task, Workflow, task, workflow
from plait.core.model import (
    Collection,
    Constant,
    FromInput,
    FromNode,
    Interface,
    Mapping,
    Node,
    Param,
    WorkflowSpec,
)
from plait.core.types import DictOf, Field, ListOf, OptionalOf, Primitive, Record, TypeSpec
from plait.core.validate import validate_workflow
from plait.sdk.hints import type_spec
from plait.sdk.loader import load_reference, load_target
from tests import definitions
from tests.definitions import Bounds, count, describe, increment, maybe_count, merge, summarize, text, weigh

INT, STR = Primitive("int"), Primitive("str")
POINT = Record("tests.definitions.Point", (Field("x", INT), Field("y", INT)))
BOX = Record("tests.definitions.Box", (Field("corner", POINT), Field("label", STR, required=False)))


def refusal(fn: Callable[..., Any]) -> str:
    """The message of the ``DefinitionError`` that tracing ``fn`` as a workflow raises."""
    with pytest.raises(DefinitionError) as refused:
        workflow(fn)
    return str(refused.value)


def name_of(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


# --- wiring errors --------------------------------------------------------------------------------------------


def test_an_output_of_the_wrong_type_is_refused() -> None:
    def wf(x: int) -> int:
        return merge(a=text(x=x), b=x)  # type: ignore[arg-type]

    assert refusal(wf) == (
        f"workflow '{name_of(wf)}', node 'merge' (task 'merge'): "
        "input 'a' expects int, got str from output 'result' of node 'text'"
    )


def test_a_workflow_input_of_the_wrong_type_is_refused() -> None:
    def wf(x: int | None) -> int:
        return increment(x=x)  # type: ignore[arg-type]

    assert refusal(wf) == (
        f"workflow '{name_of(wf)}', node 'increment' (task 'increment'): "
        "input 'x' expects int, got int | None from workflow input 'x'"
    )


def test_a_list_of_wrong_typed_promises_is_refused_naming_the_item() -> None:
    def wf(x: int) -> int:
        return count(values=[increment(x=x), text(x=x)])  # type: ignore[list-item]

    assert refusal(wf) == (
        f"workflow '{name_of(wf)}', node 'count' (task 'count'): "
        "input 'values'[1] expects int, got str from output 'result' of node 'text'"
    )


def test_a_list_given_for_a_single_value_is_refused() -> None:
    def wf(x: int) -> int:
        return increment(x=[x])  # type: ignore[arg-type]

    assert (
        refusal(wf)
        == f"workflow '{name_of(wf)}', node 'increment' (task 'increment'): input 'x' expects int, got a list"
    )


def test_a_constant_of_the_wrong_type_is_refused() -> None:
    def wf(x: int) -> int:
        return merge(a=x, b="three")  # type: ignore[arg-type]

    message = refusal(wf)
    assert message.startswith(
        f"workflow '{name_of(wf)}', node 'merge' (task 'merge'): input 'b' expects int, got 'three'"
    )


def test_a_numeric_string_constant_is_not_an_int() -> None:
    def wf(x: int) -> int:
        return merge(a=x, b="3")  # type: ignore[arg-type]

    assert "input 'b' expects int" in refusal(wf)


def test_a_missing_input_is_refused() -> None:
    def wf(x: int) -> int:
        return merge(a=x)  # type: ignore[call-arg]

    assert refusal(wf) == f"workflow '{name_of(wf)}', node 'merge' (task 'merge'): missing input 'b'"


def test_an_unknown_input_is_refused() -> None:
    def wf(x: int) -> int:
        return increment(x=x, y=x)  # type: ignore[call-arg]

    assert (
        refusal(wf) == f"workflow '{name_of(wf)}', node 'increment' (task 'increment'): unknown input 'y' (inputs: x)"
    )


def test_an_input_given_twice_is_refused() -> None:
    def wf(x: int) -> int:
        return merge(x, a=x)  # type: ignore[call-arg,misc]

    assert refusal(wf) == f"workflow '{name_of(wf)}', node 'merge' (task 'merge'): input 'a' is given twice"


def test_too_many_positional_inputs_are_refused() -> None:
    def wf(x: int) -> int:
        return increment(x, x)  # type: ignore[call-arg]

    assert refusal(wf) == f"workflow '{name_of(wf)}', node 'increment' (task 'increment'): takes 1 inputs, 2 were given"


def test_the_error_names_the_node_of_a_repeated_task() -> None:
    def wf(x: int) -> int:
        return merge(a=merge(a=x, b=x), b=text(x=x))  # type: ignore[arg-type]

    assert "node 'merge-1' (task 'merge'): input 'b' expects int, got str" in refusal(wf)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param(socket.socket, id="class"),
        pytest.param({1, object()}, id="set"),
    ],
)
def test_a_constant_that_cannot_be_serialized_is_refused(value: Any) -> None:
    def wf(x: int) -> str:
        return describe(value=value)

    message = refusal(wf)
    assert message.startswith(f"workflow '{name_of(wf)}', node 'describe' (task 'describe'): input 'value': value ")
    assert "cannot be serialized" in message


def test_a_workflow_output_of_the_wrong_type_is_refused() -> None:
    def wf(x: int) -> str:
        return increment(x=x)  # type: ignore[return-value]

    assert refusal(wf) == (
        f"workflow '{name_of(wf)}': output 'result' expects str, got int from output 'result' of node 'increment'"
    )


def test_a_workflow_returning_too_few_named_outputs_is_refused() -> None:
    def wf(x: int) -> Bounds:
        return (increment(x=x),)  # type: ignore[return-value]

    assert refusal(wf) == f"workflow '{name_of(wf)}': must return 2 values (low, high)"


def test_a_workflow_returning_a_value_for_no_outputs_is_refused() -> None:
    def wf(x: int) -> None:
        return increment(x=x)  # type: ignore[return-value]

    assert refusal(wf) == f"workflow '{name_of(wf)}': returns a value but its return hint is None"


def test_a_workflow_cannot_be_called() -> None:
    with pytest.raises(DefinitionError, match=r"use `plait run FILE:diamond` or Client.launch\(\)"):
        definitions.diamond(x=1)


# --- promises at definition time ------------------------------------------------------------------------------


def test_a_workflow_input_in_an_if_is_refused() -> None:
    def wf(x: int) -> int:
        if x:
            return increment(x=x)
        return x

    assert refusal(wf) == (
        "workflow input 'x' is not known while the workflow is defined: it cannot be used in an if or a loop"
    )


def test_a_node_output_in_an_if_is_refused() -> None:
    def wf(x: int) -> int:
        value = increment(x=x)
        return value if value else x

    assert refusal(wf) == (
        "output 'result' of node 'increment' is not known while the workflow is defined: "
        "it cannot be used in an if or a loop"
    )


def test_iterating_a_promise_is_refused() -> None:
    def wf(values: list[int]) -> int:
        return count(values=[increment(x=v) for v in values])

    assert refusal(wf) == "workflow input 'values' is not known while the workflow is defined: it cannot be iterated"


def test_a_promise_cannot_size_a_range() -> None:
    def wf(n: int) -> int:
        return count(values=[increment(x=i) for i in range(n)])

    assert refusal(wf) == (
        "workflow input 'n' is not known while the workflow is defined: it cannot size a range or index a list "
        "(the graph is fixed when the workflow is defined)"
    )


@pytest.mark.parametrize(
    "compute",
    [
        pytest.param(lambda p: p + 1, id="add"),
        pytest.param(lambda p: 2 * p, id="multiply"),
        pytest.param(lambda p: p[0], id="index"),
    ],
)
def test_computing_with_a_promise_is_refused(compute: Callable[[Any], Any]) -> None:
    def wf(x: int) -> int:
        return increment(x=compute(increment(x=x)))

    assert refusal(wf) == (
        "output 'result' of node 'increment' is not known while the workflow is defined: compute with it inside a task"
    )


def test_a_comparison_passed_as_a_value_is_refused() -> None:
    def wf(x: int) -> int:
        return increment(x=increment(x=x) > 0)

    assert refusal(wf).endswith(
        "input 'x': the condition output 'result' of node 'increment' > 0 is not known while the workflow is "
        "defined: use it in conditional(...).if_(...), or compute with it inside a task"
    )


def test_comparing_a_promise_for_equality_is_refused() -> None:
    def wf(x: int) -> int:
        if x == 0:
            return increment(x=x)
        return merge(a=x, b=x)

    refusal(wf)


# --- collections of promises ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda x: weigh(table={"k": text(x=x)}), id="str-values-into-dict[str,int]"),  # type: ignore[dict-item]
        pytest.param(lambda x: increment(x={"k": increment(x=x)}), id="dict-into-int"),  # type: ignore[arg-type]
    ],
)
def test_a_dict_of_wrong_typed_promises_is_refused(build: Callable[[Any], Any]) -> None:
    def wf(x: int) -> Any:
        return build(x)

    refusal(wf)


def test_a_dict_of_promises_is_bound_item_by_item() -> None:
    def wf(x: int) -> int:
        return weigh(table={"one": increment(x=x), "two": 2})

    node = workflow(wf).spec.nodes[-1]
    assert node.inputs == {"table": Mapping({"one": FromNode("increment", "result"), "two": Constant(2)})}


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda x: describe(value=[increment(x=x), 1]), id="into-any"),
        pytest.param(lambda x: maybe_count(values=[increment(x=x)]), id="into-optional-list"),
    ],
)
def test_a_list_of_promises_is_accepted_where_a_list_is(build: Callable[[Any], Any]) -> None:
    def wf(x: int) -> Any:
        return build(x)

    workflow(wf)


def test_a_list_mixing_promises_and_constants_is_bound_item_by_item() -> None:
    def wf(x: int) -> int:
        return count(values=[x, increment(x=x), 3])

    node = workflow(wf).spec.nodes[-1]
    assert node.inputs == {"values": Collection((FromInput("x"), FromNode("increment", "result"), Constant(3)))}


# --- task definitions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        pytest.param(
            definitions.takes_socket,
            "task 'tests.definitions.takes_socket': parameter 'sock': "
            "type <class 'socket.socket'> cannot be serialized",
            id="socket",
        ),
        pytest.param(
            definitions.takes_plain,
            "task 'tests.definitions.takes_plain': parameter 'thing': "
            "type <class 'tests.definitions.Plain'> cannot be serialized",
            id="plain-class",
        ),
        pytest.param(
            definitions.returns_plain,
            "task 'tests.definitions.returns_plain': output 'result': "
            "type <class 'tests.definitions.Plain'> cannot be serialized",
            id="plain-class-output",
        ),
        pytest.param(
            definitions.takes_connected,
            "task 'tests.definitions.takes_connected': parameter 'value', field 'conn': "
            "type <class 'socket.socket'> cannot be serialized",
            id="struct-field",
        ),
        pytest.param(
            definitions.takes_union,
            "task 'tests.definitions.takes_union': parameter 'value': type int | str cannot be serialized",
            id="union",
        ),
        pytest.param(
            definitions.takes_int_keys,
            "task 'tests.definitions.takes_int_keys': parameter 'table': dict keys must be str, got <class 'int'>",
            id="int-keys",
        ),
        pytest.param(
            definitions.untyped, "task 'tests.definitions.untyped': parameter 'x' needs a type hint", id="no-hint"
        ),
        pytest.param(
            definitions.no_return_hint,
            "task 'tests.definitions.no_return_hint': the return type needs a hint (use -> None for no output)",
            id="no-return-hint",
        ),
        pytest.param(
            definitions.variadic,
            "task 'tests.definitions.variadic': parameter 'values': *args and **kwargs are not supported",
            id="variadic",
        ),
    ],
)
def test_a_task_whose_types_cannot_be_serialized_is_refused(fn: Callable[..., Any], message: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        task(fn)

    assert str(refused.value).startswith(message)


def test_a_workflow_parameter_that_cannot_be_serialized_is_refused() -> None:
    def wf(sock: socket.socket) -> int:
        return increment(x=1)

    assert refusal(wf).startswith(f"workflow '{name_of(wf)}': parameter 'sock': type <class 'socket.socket'>")


def test_a_task_defined_inside_a_function_is_refused() -> None:
    def nested(x: int) -> int:
        return x

    for decorate in (task, task(retries=1)):
        with pytest.raises(DefinitionError) as refused:
            decorate(nested)
        assert str(refused.value) == (
            f"task '{nested.__qualname__}': tasks must be defined at module level so workers can import them"
        )


# --- hand-built specs -----------------------------------------------------------------------------------------


def spec_of(*nodes: Node, name: str = "hand_built") -> WorkflowSpec:
    tasks = {t.name: t.spec for t in (increment, count)}
    return WorkflowSpec(name=name, version="1", interface=Interface(), nodes=nodes, outputs={}, tasks=tasks)


def inc(node_id: str, binding: Any) -> Node:
    return Node(id=node_id, task=increment.name, inputs={"x": binding})


@pytest.mark.parametrize(
    ("nodes", "cycle"),
    [
        pytest.param(
            (inc("a", FromNode("b", "result")), inc("b", FromNode("a", "result")), inc("c", Constant(1))),
            r"a -> b -> a|b -> a -> b",
            id="two-nodes",
        ),
        pytest.param((inc("a", FromNode("a", "result")),), r"a -> a", id="self"),
    ],
)
def test_a_cycle_is_refused_naming_its_nodes(nodes: tuple[Node, ...], cycle: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        validate_workflow(spec_of(*nodes, name="cyclic"))

    assert re.fullmatch(rf"workflow 'cyclic': the nodes form a cycle: ({cycle})", str(refused.value))


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        pytest.param(
            (inc("a", Constant(1)), inc("b", FromNode("ghost", "result"))),
            "workflow 'hand_built', node 'b': input 'x' reads unknown node 'ghost'",
            id="unknown-node",
        ),
        pytest.param(
            (Node(id="c", task=count.name, inputs={"values": Collection((Constant(1), FromNode("ghost", "result")))}),),
            "workflow 'hand_built', node 'c': input 'values' reads unknown node 'ghost'",
            id="unknown-node-in-a-list",
        ),
        pytest.param(
            (Node(id="a", task="tests.nowhere", inputs={}),),
            "workflow 'hand_built', node 'a': unknown task 'tests.nowhere'",
            id="unknown-task",
        ),
        pytest.param(
            (Node(id="a", task=increment.name, inputs={"x": Constant(1), "y": Constant(2)}),),
            "workflow 'hand_built', node 'a': unknown input 'y'",
            id="unknown-input",
        ),
        pytest.param(
            (Node(id="a", task=increment.name, inputs={}),),
            "workflow 'hand_built', node 'a': missing input 'x'",
            id="missing-input",
        ),
        pytest.param(
            (inc("a", Constant(1)), inc("a", Constant(2))),
            "workflow 'hand_built': node ids must be unique",
            id="duplicate-ids",
        ),
        pytest.param(
            (inc("a,b", Constant(1)),),
            "workflow 'hand_built': node id 'a,b' may not hold '/', ',', whitespace or control characters",
            id="comma-in-id",
        ),
        pytest.param(
            (inc("a\r\nNats-Msg-Id: x", Constant(1)),),
            "workflow 'hand_built': node id 'a\\r\\nNats-Msg-Id: x' may not hold '/', ',', whitespace or control "
            "characters",
            id="header-in-id",
        ),
    ],
)
def test_an_inconsistent_spec_is_refused_naming_node_and_input(nodes: tuple[Node, ...], message: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        validate_workflow(spec_of(*nodes))

    assert str(refused.value) == message


# --- what is recorded -----------------------------------------------------------------------------------------


def test_named_outputs_can_be_unpacked_or_read_by_name() -> None:
    def wf(x: int) -> Bounds:
        low, high = summarize(values=[x])
        bounds = summarize(values=[low, high])
        return Bounds(low=merge(a=bounds.low, b=high), high=bounds.high)

    spec = workflow(wf).spec

    assert [(node.id, node.inputs) for node in spec.nodes] == [
        ("summarize", {"values": Collection((FromInput("x"),))}),
        ("summarize-1", {"values": Collection((FromNode("summarize", "low"), FromNode("summarize", "high")))}),
        ("merge", {"a": FromNode("summarize-1", "low"), "b": FromNode("summarize", "high")}),
    ]
    assert spec.outputs == {"low": FromNode("merge", "result"), "high": FromNode("summarize-1", "high")}
    assert spec.interface.outputs == (Param("low", INT), Param("high", INT))


def test_reading_an_unknown_named_output_is_an_attribute_error() -> None:
    def wf(x: int) -> int:
        return summarize(values=[x]).middle  # type: ignore[attr-defined,no-any-return]

    with pytest.raises(AttributeError, match=r"no output named 'middle' \(outputs: low, high\)"):
        workflow(wf)


def test_a_task_without_outputs_gives_none() -> None:
    seen: list[Any] = []

    def wf(point: definitions.Point, box: definitions.Box) -> None:
        seen.append(
            definitions.shapes(
                point=point, box=box, boxes=[box], data=b"\x00", label=None, table={"a": 1.5}, anything=[1]
            )
        )

    workflow(wf)
    assert seen == [None]


def test_struct_dataclass_bytes_optional_and_dict_types_compile_to_type_specs() -> None:
    assert definitions.shapes.interface == Interface(
        inputs=(
            Param("point", POINT),
            Param("box", BOX),
            Param("boxes", ListOf(BOX)),
            Param("data", Primitive("bytes")),
            Param("label", OptionalOf(STR)),
            Param("table", DictOf(Primitive("float"))),
            Param("anything", Primitive("any")),
        ),
        outputs=(),
    )
    assert definitions.shift.interface.outputs == (Param("result", POINT),)


@pytest.mark.parametrize(
    ("hint", "spec"),
    [
        (int, INT),
        (float, Primitive("float")),
        (bool, Primitive("bool")),
        (bytes, Primitive("bytes")),
        (None, Primitive("none")),
        (typing.Optional[int], OptionalOf(INT)),  # noqa: UP045 - the old spelling must work too
        (int | None, OptionalOf(INT)),
        (list[dict[str, int | None]], ListOf(DictOf(OptionalOf(INT)))),
        (dict[str, definitions.Point], DictOf(POINT)),
    ],
)
def test_type_hints_compile_to_type_specs(hint: Any, spec: TypeSpec) -> None:
    assert type_spec(hint, "here") == spec


def test_defaults_are_recorded_encoded() -> None:
    inputs = definitions.with_defaults.interface.inputs

    assert inputs == (
        Param("x", INT),
        Param("by", INT, 2),
        Param("tag", OptionalOf(STR), None),
        Param("data", Primitive("bytes"), "aGk="),  # base64 of b"hi", as it travels in JSON
    )
    assert [p.required for p in inputs] == [True, False, False, False]
    assert definitions.chain.spec.interface.inputs == (Param("start", INT, 0),)


def test_a_task_called_outside_a_workflow_runs_its_function() -> None:
    assert increment(x=1) == 2
    assert summarize(values=[3, 1, 2]) == Bounds(1, 3)


def test_tracing_the_same_function_twice_gives_the_same_spec() -> None:
    def wf(x: int) -> int:
        return merge(a=increment(x=x), b=x)

    first, second = workflow(wf).spec, workflow(wf).spec

    assert first == second
    assert re.fullmatch(r"[0-9a-f]{32}", first.version)
    assert workflow(definitions.diamond.fn).spec == definitions.diamond.spec
    assert task(definitions.plain_increment).spec == task(definitions.plain_increment).spec


@pytest.mark.parametrize(
    "options",
    [{"retries": 1}, {"queue": "gpu"}, {"timeout": 5.0}, {"cache": True}, {"cache_version": "2"}],
)
def test_changing_a_task_option_changes_the_task_and_workflow_versions(options: dict[str, Any]) -> None:
    def traced(node_task: Task[..., int]) -> Workflow[..., int]:
        def wf(x: int) -> int:
            return node_task(x=x)

        return workflow(wf)

    plain, changed = task(definitions.plain_increment), task(**options)(definitions.plain_increment)

    assert changed.spec.version != plain.spec.version
    assert traced(changed).spec.version != traced(plain).spec.version


# --- loading --------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("loading")
def test_load_reference_loads_a_workflow_from_a_file() -> None:
    loaded = load_reference("tests/workflows.py:add_two")

    assert isinstance(loaded, Workflow)
    assert loaded.short_name == "add_two"
    assert [node.id for node in loaded.spec.nodes] == ["add"]


@pytest.mark.usefixtures("loading")
def test_load_reference_loads_a_workflow_from_a_module() -> None:
    assert load_reference("tests.definitions:diamond") is definitions.diamond


@pytest.mark.parametrize(
    ("reference", "error", "message"),
    [
        ("tests/workflows.py", DefinitionError, "'tests/workflows.py' is not of the form FILE.py:NAME or module:NAME"),
        (
            "tests/workflows.py:",
            DefinitionError,
            "'tests/workflows.py:' is not of the form FILE.py:NAME or module:NAME",
        ),
        ("tests/nowhere.py:add_two", NotFound, "no such file: tests/nowhere.py"),
        ("tests/workflows.py:nothing", NotFound, "tests/workflows.py has no 'nothing'"),
        ("tests.definitions:nothing", NotFound, "tests.definitions has no 'nothing'"),
    ],
)
@pytest.mark.usefixtures("loading")
def test_a_bad_reference_is_a_clear_error(reference: str, error: type[PlaitError], message: str) -> None:
    with pytest.raises(error) as raised:
        load_reference(reference)

    assert str(raised.value) == message


@pytest.mark.usefixtures("loading")
def test_a_reference_to_a_missing_module_is_not_found() -> None:
    with pytest.raises(NotFound):
        load_reference("tests.no_such_module:workflow")


@pytest.mark.usefixtures("loading")
def test_a_file_with_a_bad_workflow_fails_to_load_and_is_not_kept(tmp_path: Path) -> None:
    source = tmp_path / "broken_workflows.py"
    source.write_text(
        "from plait import workflow\n"
        "from tests.definitions import increment\n"
        "\n"
        "@workflow\n"
        "def broken(x: int) -> int:\n"
        "    return increment(y=x)\n"
    )

    with pytest.raises(DefinitionError, match=r"workflow 'broken_workflows\.broken', node 'increment'"):
        load_reference(f"{source}:broken")
    assert "broken_workflows" not in sys.modules


def test_load_target_finds_the_task_a_spec_names() -> None:
    assert load_target(definitions.increment.spec.target) is definitions.increment
