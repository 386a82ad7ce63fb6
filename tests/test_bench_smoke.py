"""The benchmark suite keeps working: a tiny run of every workload (numbers are not checked here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parent.parent


def run_bench(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGV`` on an embedded stack of its own (no server given by URL)."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=REPO,
        env={**os.environ, "PLAIT_NATS_URL": "", "PLAIT_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_benchmark_suite_runs_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = run_bench(["--quick", "--sync", "default", "--json", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("lone execution", "fan-out", "chain", "executions", "cached rerun", "widest", "replay", "JetStream"):
        assert row in done.stdout, f"no {row!r} row in:\n{done.stdout}"
    [result] = msgspec.json.decode(out.read_bytes())["results"]
    widest = result["widest"]
    assert "failed" not in widest, widest
    assert widest["scheduler_peak_mb"] > 0 and 0 < widest["largest_record_kib"] < 1024, widest
    assert {"to_launch_decided_ms", "launch_to_last_decision_ms", "last_decision_to_outputs_ms"} <= set(result["lone"])
    assert result["replay"]["read_apply_per_s"]["n"] == 1, "replay measures reading and applying the stored events"


def test_the_dag_cli_and_dask_workloads_run_at_tiny_sizes(tmp_path: Path) -> None:
    compare = ["--compare", "dask"] if importlib.util.find_spec("distributed") else []
    done = run_bench(["--quick", "--sync", "default", "--only", "fan_out,chain,dag,cli", *compare])
    assert done.returncode == 0, done.stderr[-3000:]
    dask_rows = ["Dask distributed", "fan-out tasks/s, eager", "dag diamond tasks/s, eager"]
    rows = ["diamond", "through `plait run`", "CPU per task"] + (dask_rows if compare else [])
    for row in rows:
        assert row in done.stdout, f"no {row!r} row in:\n{done.stdout}"


def test_the_replicas_benchmark_runs_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "replicas.json"
    argv = ["--quick", "--sync", "default", "--replicas", "2", "--partitions", "0,2", "--json", str(out)]
    done = run_bench(argv)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("fan-out of 20", "10 executions", "confl/task", "per replica", "partitions held"):
        assert row in done.stdout, f"no {row!r} row in:\n{done.stdout}"
    results = msgspec.json.decode(out.read_bytes())["replicas"]
    assert [(r["replicas"], r["partitions"]) for r in results] == [(2, 0), (2, 2)]
    assert 0 < sum(results[1]["partitions_held"]) <= 2, "no partition is held by two replicas"
