"""Report sections of this round's workloads: the DAG files, the CPU per task per process, the CLI and Dask."""

from __future__ import annotations

from typing import Any

from bench.cpu import ROLES


def _median(summary: dict[str, Any] | None, key: str) -> float | None:
    value = (summary or {}).get(key)
    return value["median"] if isinstance(value, dict) and "median" in value else None


def print_lone(results: list[dict[str, Any]]) -> None:
    """Where a lone execution's time goes (medians of each run's medians, from the decisions' timestamps)."""
    rows = [(r["sync"], r["lone"]) for r in results if "lone" in r]
    if not rows:
        return
    print("\nlone execution, where the time goes (ms, medians; from the decisions' timestamps):")
    print(f"  {'fsync':<8}{'launch→decided':>16}{'decided→returned':>18}{'decided→last decision':>23}{'→outputs':>10}")
    for sync, lone in rows:
        cells = [
            _median(lone, key)
            for key in (
                "to_launch_decided_ms",
                "launch_returned_ms",
                "launch_to_last_decision_ms",
                "last_decision_to_outputs_ms",
            )
        ]
        widths = (16, 18, 23, 10)
        print(
            f"  {sync:<8}"
            + "".join(f"{c:>{w}.2f}" if c is not None else f"{'-':>{w}}" for c, w in zip(cells, widths, strict=True))
        )


def print_cpu(results: list[dict[str, Any]]) -> None:
    """CPU per task (ms, medians over the runs) per process role, for the fan-out and each DAG; and per execution
    of the many executions launched at once."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for r in results:
        if "fan_out_cpu_ms" in r:
            rows.append((r["sync"], "fan-out", r["fan_out_cpu_ms"]))
        for name, d in (r.get("dag") or {}).items():
            rows.append((r["sync"], name, d["cpu_ms"]))
        if "many_cpu_ms" in r:
            rows.append((r["sync"], "many (per exec.)", r["many_cpu_ms"]))
    if not rows:
        return
    print("\nCPU per task (ms, median over the runs; user+system from /proc, processes by role):")
    print(f"  {'fsync':<8}{'workload':<18}" + "".join(f"{role:>12}" for role in (*ROLES, "total")))
    for sync, name, cpu in rows:
        cells = [_median(cpu, role) for role in (*ROLES, "total")]
        print(f"  {sync:<8}{name:<18}" + "".join(f"{c:>12.3f}" if c is not None else f"{'-':>12}" for c in cells))


def print_dags(results: list[dict[str, Any]], prefect: dict[str, Any] | None) -> None:
    """Tasks/s on each DAG file, and the ratio to Prefect's where it ran the same file."""
    names = list(dict.fromkeys(name for r in results for name in (r.get("dag") or {})))
    if not names:
        return
    print("\nDAG files (tasks/s from launch to outputs, median [min-max]; Prefect's and plait / Prefect):")
    other = (prefect or {}).get("dag") or {}
    for name in names:
        for r in results:
            d = (r.get("dag") or {}).get(name)
            if d is None:
                continue
            s = d["tasks_per_s"]
            line = f"  {name:<18} fsync {r['sync']:<8} {d['tasks']:>6} tasks {s['median']:>8.0f}"
            line += f" [{s['min']:.0f}-{s['max']:.0f}]"
            theirs = _median(other.get(name), "tasks_per_s")
            if theirs:
                line += f"   Prefect {theirs:.0f}, {s['median'] / theirs:.1f}x"
            print(line)


def print_dask(results: list[dict[str, Any]], dask: dict[str, Any]) -> None:
    """Dask distributed's figures on the same workloads, and plait / Dask (>1: plait is better)."""
    if "failed" in dask:
        print(f"\nDask: failed: {dask['failed']}")
        return
    print(f"\nDask distributed {dask['dask']} (LocalCluster, 1 worker process x 2 threads; median [min-max];")
    print("  as it comes, then `eager`: worker-saturation inf, every ready task sent to the worker at once):")
    eager = dask.get("eager", {})
    for label, path, fmt, higher_better, side in (
        ("fan-out tasks/s", ("fan_out", "tasks_per_s"), "{:.0f}", True, dask),
        ("fan-out tasks/s, eager", ("fan_out", "tasks_per_s"), "{:.0f}", True, eager),
        ("chain step p50 (ms)", ("chain", "step_p50_ms"), "{:.2f}", False, dask),
        ("chain step p99 (ms)", ("chain", "step_p99_ms"), "{:.2f}", False, dask),
        *((f"dag {name} tasks/s", ("dag", name, "tasks_per_s"), "{:.0f}", True, dask) for name in dask.get("dag", {})),
        *(
            (f"dag {name} tasks/s, eager", ("dag", name, "tasks_per_s"), "{:.0f}", True, eager)
            for name in eager.get("dag", {})
        ),
    ):
        theirs = _at(side, path)
        if theirs is None:
            continue
        line = f"  {label:<38} {fmt.format(theirs['median'])} [{fmt.format(theirs['min'])}-{fmt.format(theirs['max'])}]"
        for r in results:
            ours = _at(r, path)
            if ours is not None and ours["median"] and theirs["median"]:
                ratio = ours["median"] / theirs["median"] if higher_better else theirs["median"] / ours["median"]
                line += f"   plait fsync {r['sync']} / Dask {ratio:.1f}x"
        print(line)


def _at(result: dict[str, Any], path: tuple[str, ...]) -> dict[str, float] | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, dict) and "median" in value else None


def print_cli(results: list[dict[str, Any]]) -> None:
    """The fan-out and the chain through ``plait run`` (live view on), against the bench client's figures."""
    rows = [r for r in results if "cli" in r]
    if not rows:
        return
    print("\nthrough `plait run` (live view on a pseudo-terminal; median [min-max]; vs the bench client's median):")
    for r in rows:
        c = r["cli"]
        for label, key, client_path, fmt in (
            ("fan-out tasks/s (launch→last decision)", "fan_out_tasks_per_s", ("fan_out", "tasks_per_s"), "{:.0f}"),
            ("fan-out: whole command (s)", "fan_out_command_s", None, "{:.2f}"),
            ("fan-out: the command's CPU per task (ms)", "fan_out_command_cpu_ms", None, "{:.3f}"),
            ("chain step p50 (ms)", "chain_step_p50_ms", ("chain", "step_p50_ms"), "{:.2f}"),
            ("chain step p99 (ms)", "chain_step_p99_ms", ("chain", "step_p99_ms"), "{:.2f}"),
            ("chain: whole command (s)", "chain_command_s", None, "{:.2f}"),
        ):
            s = c[key]
            line = f"  fsync {r['sync']:<8} {label:<42} {fmt.format(s['median'])} [{fmt.format(s['min'])}-"
            line += f"{fmt.format(s['max'])}]"
            ours = _at(r, client_path) if client_path else None
            if ours is not None and ours["median"]:
                ratio = s["median"] / ours["median"]
                line += f"   bench client {fmt.format(ours['median'])}, plait run / client {ratio:.2f}"
            print(line)
