"""pandas and Arrow dataframes as task inputs and outputs: each travels as one Parquet file through the values
bucket, the events carry a reference with its content hash, and the next task (and the client) gets the type it
asks for. Against a real nats-server and PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from plait import codec
from plait.core.events import NodeSucceeded
from plait.core.values import as_ref
from tests import dataframe_workflows
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


def frames_left() -> list[Path]:
    """Parquet files written for outputs, or downloaded for a result, still on disk."""
    temporary = Path(tempfile.gettempdir())
    return [*temporary.glob("plait-frames-*"), *temporary.glob("plait-values-*/*/frame.parquet")]


async def test_a_pandas_frame_is_read_as_an_arrow_table_and_back(nats_url: str, database_url: str) -> None:
    rows = 5_000
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(dataframe_workflows.frames, {"rows": rows})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        result = await handle.result(timeout=DEADLINE)
        records = await client.records(handle.id)
    assert state.status == "succeeded", state.error
    assert result.total == sum(i * i for i in range(rows))
    assert isinstance(result.evens, pd.DataFrame)
    assert list(result.evens.columns) == ["n", "square", "name"]
    assert result.evens["n"].tolist() == list(range(0, rows, 2))
    made = next(
        e
        for r in records
        for e in codec.decision_decoder.decode(r.data).events
        if isinstance(e, NodeSucceeded) and e.node == "frame_of"
    )
    ref = as_ref(made.outputs["result"])
    assert ref is not None and ref.kind == "dataframe" and ref.size > 0  # a reference, whatever its size
    assert max(len(r.data) for r in records) < 64 * 1024
    assert frames_left() == []  # each Parquet file is removed once uploaded, and once the result is read


def test_a_frame_round_trips_through_its_encoding_as_either_type() -> None:
    from plait.sdk.hints import decode_value, encode_value, type_spec

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    encoded = encode_value(frame)
    assert type_spec(pd.DataFrame, "x").name == "dataframe" and type_spec(pa.Table, "x").name == "dataframe"
    assert decode_value(encoded, pd.DataFrame).equals(frame)
    assert decode_value(encoded, pa.Table).column("b").to_pylist() == ["x", "y", "z"]
    shutil.rmtree(Path(encoded["path"]).parent)
