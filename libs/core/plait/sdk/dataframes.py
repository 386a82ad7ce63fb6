"""Dataframes as task inputs and outputs: a ``pandas.DataFrame`` or a ``pyarrow.Table`` travels as one Parquet file
through the values bucket (kind ``dataframe``), whatever its size, and reaches the next task as the type that task
asks for (a pandas frame written by one task may be read as an Arrow table by the next, and back).

Neither library is needed by plait: a hint is recognised by its class's module and name, and pyarrow is imported
only to write or read a frame (it is needed then: ``pip install 'plait[dataframe]'``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from plait.core.values import FRAMES_FOLDER_PREFIX, TAG_FIELD
from plait.errors import DefinitionError

DATAFRAME_TAG = "dataframe"

_PANDAS = ("pandas", "DataFrame")
_ARROW = ("pyarrow", "Table")


def _kind(cls: Any) -> tuple[str, str] | None:
    """Which frame class ``cls`` is (by its package and name: pandas writes either ``pandas`` or
    ``pandas.core.frame`` as its module), or None."""
    if not isinstance(cls, type):
        return None
    for klass in cls.__mro__:
        key = (klass.__module__.split(".", 1)[0], klass.__name__)
        if key in (_PANDAS, _ARROW):
            return key
    return None


def is_dataframe_hint(hint: Any) -> bool:
    """Whether ``hint`` is ``pandas.DataFrame`` or ``pyarrow.Table`` (or a subclass)."""
    return _kind(hint) is not None


def is_dataframe(value: Any) -> bool:
    return _kind(type(value)) is not None


def encode_dataframe(value: Any) -> dict[str, Any]:
    """``value`` written as a Parquet file in a new folder of its own, as the tagged path the values bucket uploads
    (and then removes)."""
    parquet = _parquet()
    import pyarrow as pa

    table = value if _kind(type(value)) == _ARROW else pa.Table.from_pandas(value, preserve_index=True)
    path = Path(tempfile.mkdtemp(prefix=FRAMES_FOLDER_PREFIX)) / "frame.parquet"
    parquet.write_table(table, path)
    return {TAG_FIELD: DATAFRAME_TAG, "path": str(path)}


def decode_dataframe(encoded: Any, hint: Any) -> Any:
    """The frame of ``hint``'s type read from a downloaded dataframe value (a tagged local path)."""
    if not isinstance(encoded, dict) or encoded.get(TAG_FIELD) != DATAFRAME_TAG or "path" not in encoded:
        raise ValueError(f"expected a dataframe, got {type(encoded).__name__}")
    table = _parquet().read_table(encoded["path"])
    return table if _kind(hint) == _ARROW else table.to_pandas()


def _parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise DefinitionError(
            "a dataframe input or output needs pyarrow, which is not installed here: pip install 'plait[dataframe]'"
        ) from None
    return pyarrow.parquet


def forget_downloaded(values: Any) -> None:
    """Remove the Parquet files of the dataframes among ``values`` (downloaded, tagged paths) and their folders once
    empty: a frame is read whole into memory, so once decoded nothing refers to its file any more."""
    if isinstance(values, list):
        for value in values:
            forget_downloaded(value)
    elif isinstance(values, dict):
        if values.get(TAG_FIELD) == DATAFRAME_TAG and isinstance(values.get("path"), str):
            path = Path(values["path"])
            path.unlink(missing_ok=True)
            for folder in (path.parent, path.parent.parent):
                try:
                    folder.rmdir()
                except OSError:  # not empty: other values were downloaded beside it
                    return
        else:
            for value in values.values():
                forget_downloaded(value)
