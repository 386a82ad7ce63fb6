"""References to stored values in the pure core: any type accepts one, the parts around it are still checked, a
cache key counts a value the same inline or by reference, a map runs over a list stored whole (its items by
reference) and gathers a large output by reference, and a map over a stored value of unknown length fails clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from plait import Directory, File
from plait.core.commands import ReportAttemptResult
from plait.core.decide import MAX_MAP_IN_FLIGHT, decide_batch, gathered_values
from plait.core.events import (
    AttemptFailed,
    ExecutionFailed,
    ExecutionSucceeded,
    MapStarted,
    NodeFailed,
    NodeQueued,
    NodeSucceeded,
)
from plait.core.ids import cache_key, canonical_encoding, content_version, encoding_hash, value_hash
from plait.core.types import DictOf, Field, ListOf, OptionalOf, Primitive, Record, check_value
from plait.core.values import ValueRef, as_ref, contains_refs, list_ref, stored_list_length
from plait.sdk.hints import decode_value, encode_value, type_spec
from tests import large_value_workflows
from tests.helpers.launching import launched, resolved_launch

AT = datetime(2026, 1, 2, tzinfo=UTC)


def ref_to(value: Any) -> dict[str, Any]:
    encoding = canonical_encoding(value)
    encoded: dict[str, Any] = msgspec.to_builtins(ValueRef(hash=encoding_hash(encoding), size=len(encoding)))
    return encoded


def test_a_reference_is_a_tagged_object_and_nothing_else_is() -> None:
    ref = ref_to("x" * 10)
    assert ref["$plait"] == "ref" and as_ref(ref) == ValueRef(hash=ref["hash"], size=12)
    assert as_ref({"hash": "h", "size": 1}) is None
    assert as_ref({"$plait": "ref", "hash": 3}) is None, "a malformed reference is a plain value"
    assert contains_refs({"a": [1, ref]}) and not contains_refs({"a": [1, {"b": 2}]})


def test_a_reference_passes_for_any_type_and_the_parts_around_it_are_checked() -> None:
    ref = ref_to([1, 2])
    for spec in (Primitive("int"), ListOf(Primitive("str")), DictOf(Primitive("bool")), Primitive("file")):
        assert check_value(spec, ref) is None
    assert check_value(ListOf(Primitive("str")), ["a", ref, "b"]) is None
    assert check_value(ListOf(Primitive("str")), ["a", ref, 3]) is not None
    record = Record("m.R", (Field("name", Primitive("str")), Field("data", Primitive("bytes"))))
    assert check_value(record, {"name": "n", "data": ref}) is None
    assert check_value(record, {"name": 1, "data": ref}) is not None
    assert check_value(record, {"data": ref}) is not None, "a required field is missing"
    assert check_value(OptionalOf(ListOf(Primitive("int"))), None) is None
    assert check_value(Primitive("int"), {"$plait": "file", "path": "/etc/passwd"}) is not None


def test_a_cache_key_is_the_same_for_a_value_inline_and_by_reference() -> None:
    spec = large_value_workflows.cached_length.spec
    text = "t" * 100_000
    inline = cache_key(spec.name, spec.cache_version, spec.interface, {"text": text})
    assert inline == cache_key(spec.name, spec.cache_version, spec.interface, {"text": ref_to(text)})
    assert inline != cache_key(spec.name, spec.cache_version, spec.interface, {"text": ref_to(text + "!")})
    assert value_hash(ref_to(text)) == content_version(text) == value_hash(text)


def test_files_and_directories_are_typed_and_encoded_by_path() -> None:
    assert type_spec(File, "x") == Primitive("file") and type_spec(Directory, "x") == Primitive("directory")
    assert type_spec(list[File], "x") == ListOf(Primitive("file"))
    assert encode_value(File("/tmp/a")) == {"$plait": "file", "path": "/tmp/a"}
    assert decode_value({"$plait": "directory", "path": "/tmp/d"}, Directory) == Directory("/tmp/d")


def test_a_map_over_a_stored_value_of_unknown_length_fails_its_node_saying_why() -> None:
    launch = resolved_launch(large_value_workflows.mapped_from_launch.spec, {"texts": ref_to(["a"] * 50_000)})
    outcome = decide_batch(None, [launch], AT)
    failed = [e for e in outcome.events if isinstance(e, (NodeFailed, ExecutionFailed))]
    assert [type(e) for e in failed] == [NodeFailed, ExecutionFailed]
    assert failed[0].error.error_type == "MappedValueStored"
    assert "map node 'length': mapped input 'text' is a value in the values bucket whose reference does not say" in (
        failed[0].error.message
    )


def stored_list(values: list[Any]) -> dict[str, Any]:
    encoding = canonical_encoding(values)
    return list_ref(ValueRef(hash=encoding_hash(encoding), size=len(encoding)), len(values))


def test_a_map_over_a_stored_list_queues_each_item_as_a_reference_to_it() -> None:
    texts = [f"t{i}" for i in range(50_000)]
    stored = stored_list(texts)
    assert stored_list_length(stored) == 50_000 and stored_list_length(ref_to(texts)) == -1
    launch = resolved_launch(large_value_workflows.mapped_from_launch.spec, {"texts": stored})
    outcome = decide_batch(None, [launch], AT)
    started = next(e for e in outcome.events if isinstance(e, MapStarted))
    queued = [e for e in outcome.events if isinstance(e, NodeQueued)]
    assert started.size == 50_000 and len(queued) == MAX_MAP_IN_FLIGHT
    item = queued[7].inputs["text"]
    assert as_ref(item) == ValueRef(hash=stored["hash"], size=stored["size"], kind="item") and item["index"] == 7
    assert as_ref(item).object_name == f"value-{stored['hash']}", "an item's object is its list's"  # type: ignore[union-attr]
    assert len({value_hash(e.inputs["text"]) for e in queued}) == len(queued), "each item hashes apart"
    assert value_hash(item) not in (value_hash(texts[7]), stored["hash"])


def test_a_map_gathers_an_output_too_large_for_an_event_as_a_reference_to_store() -> None:
    """2,000 items returning 40-byte strings gather into more than 64 KiB: the map node's success carries a
    reference, and ``gathered_values`` gives the encoding to store under it."""
    state, _ = launched(large_value_workflows.many_medium_items, {"indexes": list(range(2_000)), "size": 32}, AT)
    while state.status == "running":
        node = state.nodes["numbered_blob"]
        running = [a for a in node.item_attempts.values() if a.status == "queued"]
        results = [
            ReportAttemptResult(
                command_id=f"r-{a.attempt_id}",
                execution_id=state.execution_id,
                node="numbered_blob",
                attempt_id=a.attempt_id,
                worker="w",
                outputs={"result": "y" * 40},
            )
            for a in running
        ]
        if not results:
            break
        outcome = decide_batch(state, results, AT)
        assert outcome.state is not None
        state = outcome.state
        succeeded = [e for e in outcome.events if isinstance(e, NodeSucceeded) and e.node == "numbered_blob"]
        if succeeded:
            gathered = succeeded[0].outputs["result"]
            assert stored_list_length(gathered) == 2_000
            [(ref, encoding)] = gathered_values(state, outcome.events)
            assert ref == as_ref(gathered) and msgspec.json.decode(encoding) == ["y" * 40] * 2_000
            assert encoding_hash(encoding) == ref.hash
            assert gathered_values(state, [e for e in outcome.events if not isinstance(e, NodeSucceeded)]) == []
            break
    else:
        raise AssertionError("the map never finished")


def test_a_file_reported_by_its_local_path_instead_of_a_reference_fails_the_attempt() -> None:
    """A path means nothing on another machine: only a stored file's reference may stand for a ``File``."""
    state, _ = launched(large_value_workflows.made_file, {"size": 1}, AT)
    attempt = state.nodes["write_file"].attempts[0].attempt_id
    path = {"$plait": "file", "path": "/tmp/report.txt"}
    result = ReportAttemptResult(
        command_id="r", execution_id="e", node="write_file", attempt_id=attempt, worker="w", outputs={"result": path}
    )
    failed = next(e for e in decide_batch(state, [result], AT).events if isinstance(e, AttemptFailed))
    assert "output 'result' expects file" in failed.error.message
    stored = {**ref_to("bytes"), "kind": "file", "name": "report.txt"}
    fresh, _ = launched(large_value_workflows.made_file, {"size": 1}, AT)
    accepted = decide_batch(fresh, [msgspec.structs.replace(result, outputs={"result": stored})], AT).events
    assert [type(e) for e in accepted][-1] == ExecutionSucceeded
