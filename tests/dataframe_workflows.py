"""Tasks passing dataframes, for the dataframe tests (module level, so executor workers can import them)."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import pyarrow as pa

from plait import task, workflow


@task
def frame_of(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"n": list(range(rows)), "square": [i * i for i in range(rows)], "name": [f"r{i}" for i in range(rows)]}
    )


@task
def squares_total(table: pa.Table) -> int:
    """Reads as an Arrow table what the task before wrote as a pandas frame."""
    return int(pa.compute.sum(table.column("square")).as_py())


@task
def evens(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["n"] % 2 == 0].reset_index(drop=True)


class Summary(NamedTuple):
    total: int
    evens: pd.DataFrame


@workflow
def frames(rows: int) -> Summary:
    made = frame_of(rows=rows)
    return Summary(squares_total(table=made), evens(frame=made))
