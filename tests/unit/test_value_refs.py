"""References to stored values in the pure core: any type accepts one, the parts around it are still checked, a
cache key counts a value the same inline or by reference, and a map over a list stored whole fails clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from plait import Directory, File
from plait.core.commands import ReportAttemptResult
from plait.core.decide import decide_batch
from plait.core.events import AttemptFailed, ExecutionFailed, ExecutionSucceeded, NodeFailed
from plait.core.ids import cache_key, canonical_encoding, content_version, encoding_hash, value_hash
from plait.core.types import DictOf, Field, ListOf, OptionalOf, Primitive, Record, check_value
from plait.core.values import ValueRef, as_ref, contains_refs
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


def test_a_map_over_a_list_stored_whole_fails_its_node_saying_why() -> None:
    launch = resolved_launch(large_value_workflows.mapped_from_launch.spec, {"texts": ref_to(["a"] * 50_000)})
    outcome = decide_batch(None, [launch], AT)
    failed = [e for e in outcome.events if isinstance(e, (NodeFailed, ExecutionFailed))]
    assert [type(e) for e in failed] == [NodeFailed, ExecutionFailed]
    assert failed[0].error.error_type == "MappedValueStored"
    assert "map node 'length': mapped input 'text' is a list too large to travel in an event" in failed[0].error.message


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
