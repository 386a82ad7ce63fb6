"""References to values stored outside the event log: what events and commands carry in place of a large value,
a ``File`` or a ``Directory``.

A reference is a JSON object tagged ``"$plait": "ref"``; it stands wherever a value may (a whole input or output,
an item of a list, a field of a record). The core passes references on unchanged: it never reads what they name.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DEFAULT_INLINE_VALUE_LIMIT = 64 * 1024
"""Bytes of a value's encoding above which it travels by reference (``PLAIT_INLINE_VALUE_LIMIT``)."""

TAG_FIELD = "$plait"
REF_TAG = "ref"

ValueKind = Literal["value", "file", "directory", "dataframe", "item"]
FILE_KINDS = ("file", "dataframe")  # kinds whose object is one file's bytes
FRAMES_FOLDER_PREFIX = "plait-frames-"
"""Folders of the Parquet files written for dataframe outputs: such a file is removed once uploaded."""


class ValueRef(msgspec.Struct, frozen=True, kw_only=True, tag_field=TAG_FIELD, tag=REF_TAG):
    """A value in the values bucket, named by its content hash.

    ``kind`` ``value``: the object holds the value's canonical JSON encoding, and ``hash`` is the value's
    ``value_hash`` (the same whether the value travels inline or by reference); a stored list's reference may say
    how many items it has (an ``items`` key, see ``stored_list_length``). ``file``: the object holds the file's
    bytes, ``name`` its file name. ``directory``: the object is a tar of the tree, ``name`` its name. ``item``: item
    ``index`` (a key of the reference) of the list stored as the ``value`` object of ``hash``: what a map item gets
    of a mapped list that is stored. ``size`` is the object's size in bytes.
    """

    hash: str
    size: int
    kind: ValueKind = "value"
    name: str = ""

    @property
    def object_name(self) -> str:
        """Its object's name in the bucket: the kind keeps a file's bytes apart from a value's encoding (an item's
        object is its list's)."""
        return f"{'value' if self.kind == 'item' else self.kind}-{self.hash}"


def as_ref(value: Any) -> ValueRef | None:
    """The reference ``value`` (a builtin encoding) is, or None when it is not one."""
    if not isinstance(value, dict) or value.get(TAG_FIELD) != REF_TAG:
        return None
    try:
        return msgspec.convert(value, ValueRef)
    except msgspec.ValidationError:
        return None


def contains_refs(value: Any) -> bool:
    """Whether a reference stands anywhere in ``value`` (a builtin encoding)."""
    if isinstance(value, dict):
        return value.get(TAG_FIELD) == REF_TAG or any(contains_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_refs(v) for v in value)
    return False


ITEMS_KEY = "items"  # of a stored list's reference: its number of items
INDEX_KEY = "index"  # of an item reference: which item of the stored list it stands for


def list_ref(ref: ValueRef, items: int) -> dict[str, Any]:
    """The builtin encoding of ``ref``, a stored list of ``items`` items, saying its length (so a map over it
    knows its items without reading it)."""
    return {**msgspec.to_builtins(ref), ITEMS_KEY: items}


def stored_list_length(value: Any) -> int:
    """The number of items of the stored list ``value`` refers to; -1 when ``value`` is no such reference, or one
    written without its length."""
    ref = as_ref(value)
    items = value.get(ITEMS_KEY) if ref is not None and ref.kind == "value" else None
    return items if isinstance(items, int) and not isinstance(items, bool) and items >= 0 else -1


def list_item(value: Any, index: int) -> Any:
    """Item ``index`` of a list, given inline or as a stored list's reference (then an item reference)."""
    if isinstance(value, list):
        return value[index]
    item = {key: part for key, part in value.items() if key != ITEMS_KEY}
    return {**item, "kind": "item", INDEX_KEY: index}


def item_index(value: Any) -> int:
    """The index an item reference stands for (-1 when it holds none)."""
    index = value.get(INDEX_KEY) if isinstance(value, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else -1
