"""The printed report: one table (median [min-max] over the runs), broker fractions, Prefect ratios, targets."""

from __future__ import annotations

from typing import Any

from bench.report_more import print_cli, print_cpu, print_dags, print_lone

Row = tuple[str, tuple[str, ...], str]

ROWS: list[Row] = [
    ("0. lone execution x{lone}: launch→outputs p50 (ms)", ("lone", "p50_ms"), "{:.2f}"),
    ("0. lone execution x{lone}: launch→outputs p99 (ms)", ("lone", "p99_ms"), "{:.2f}"),
    ("1. fan-out {fan_out} + join (tasks/s)", ("fan_out", "tasks_per_s"), "{:.0f}"),
    ("2. chain {chain}: step p50 (ms)", ("chain", "step_p50_ms"), "{:.2f}"),
    ("2. chain {chain}: step p99 (ms)", ("chain", "step_p99_ms"), "{:.2f}"),
    ("2. chain {chain}: succeeded→next started p50 (ms)", ("chain", "overhead_p50_ms"), "{:.2f}"),
    ("2. chain {chain}: wall (s)", ("chain", "wall_s"), "{:.2f}"),
    ("3. {many} executions at once (executions/s)", ("many", "executions_per_s"), "{:.1f}"),
    ("3. {many} executions: launch→done p50 (ms)", ("many", "p50_ms"), "{:.0f}"),
    ("3. {many} executions: launch→done p99 (ms)", ("many", "p99_ms"), "{:.0f}"),
]
ROWS_CACHED: list[Row] = [
    ("4. cached rerun {cached}: first run wall (s)", ("cached", "first_s"), "{:.2f}"),
    ("4. cached rerun {cached}: rerun wall (s)", ("cached", "second_s"), "{:.3f}"),
    ("4. cached rerun {cached}: rerun / first", ("cached", "ratio"), "{:.3f}"),
    ("4. cached {cached_sleepy} x 0.2 s tasks: first run wall (s)", ("cached", "sleep_first_s"), "{:.2f}"),
    ("4. cached {cached_sleepy} x 0.2 s tasks: rerun wall (s)", ("cached", "sleep_second_s"), "{:.3f}"),
    ("4. cached {cached_sleepy} x 0.2 s tasks: rerun / first", ("cached", "sleep_ratio"), "{:.3f}"),
]
ROWS_AFTER: list[Row] = [
    ("6. replay {replay_events} events: read+apply (events/s)", ("replay", "read_apply_per_s"), "{:,.0f}"),
    ("6. replay: read only (events/s)", ("replay", "read_per_s"), "{:,.0f}"),
    ("6. replay: apply only (events/s)", ("replay", "apply_per_s"), "{:,.0f}"),
    ("7. JetStream publish+ack, sync (msgs/s)", ("raw", "sync_msgs_per_s"), "{:,.0f}"),
    ("7. JetStream publish+ack, pipelined (msgs/s)", ("raw", "pipelined_msgs_per_s"), "{:,.0f}"),
]
WIDTH = 58
CELL = 32


def _get(result: dict[str, Any], path: tuple[str, ...]) -> dict[str, float] | None:
    value: Any = result
    for key in path:
        if isinstance(value, dict) and "failed" in value:
            return {"failed": 1.0}
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, dict) else None


def _cell(s: dict[str, float] | None, fmt: str) -> str:
    if s is None:
        return "-"
    if "failed" in s:
        return "failed (see below)"
    if s.get("n", 1) == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"


def _widest(result: dict[str, Any]) -> tuple[str, str]:
    w = result.get("widest")
    if w is None:
        return "-", "-"
    rss = f"{w['plait_peak_mb']:.0f}"
    if "scheduler_peak_mb" in w:
        rss = f"scheduler {w['scheduler_peak_mb']:.0f}, all {rss}"
    if "failed" in w:
        return "failed (see below)", rss
    largest = f", largest record {w['largest_record_kib']:.0f} KiB" if "largest_record_kib" in w else ""
    return f"{w['nodes_per_s']:.0f} ({w['wall_s']:.1f} s{largest})", rss


def _mb(result: dict[str, Any], key: str, name: str | None) -> str:
    readings = result.get(key)
    if not readings:
        return "-"
    return f"{sum(readings.values()) if name is None else readings[name]:.0f}"


def _line(label: str, cells: list[str]) -> str:
    return f"{label:<{WIDTH}}" + "".join(f"{c:>{CELL}}" for c in cells)


def print_report(meta: dict[str, Any], results: list[dict[str, Any]], prefect: dict[str, Any] | None) -> None:
    sizes = dict(meta["sizes"])
    sizes["replay_events"] = f"{meta['replay_history']['events']:,}" if meta["replay_history"] else "0"
    print(
        f"\nplait {meta['commit']}, {meta['date']}, {meta['nats_server']}, {meta['runs']} runs, "
        f"services {meta.get('services', 'in-process')}, local executor, no-op tasks (median [min-max])"
    )
    columns = [f"fsync {r['sync']}" for r in results]
    if prefect is not None and "failed" not in prefect:
        columns.append(f"Prefect {prefect['prefect']}")
    print(_line("workload", columns))

    def rows(table: list[Row]) -> None:
        for label, path, fmt in table:
            cells = [_cell(_get(r, path), fmt) for r in results]
            if len(columns) > len(results):
                cells.append(_cell(_get(prefect or {}, path), fmt))
            print(_line(label.format(**sizes), cells))

    rows(ROWS)
    rows(ROWS_CACHED)
    widest = [_widest(r) for r in results]
    print(_line(f"5. widest: {sizes['widest']} map items (items/s)", [w[0] for w in widest]))
    print(_line("5. widest: peak RSS, scheduler and all plait (MB)", [w[1] for w in widest]))
    rows(ROWS_AFTER)
    for name in ("plait", "nats-server", "postgres"):
        print(_line(f"idle RSS, {name} (MB)", [_mb(r, "idle_rss_mb", name) for r in results]))
    print(_line("idle RSS, total (MB)", [_mb(r, "idle_rss_mb", None) for r in results]))
    for name in ("plait", "nats-server", "postgres"):
        print(_line(f"idle PSS, {name} (MB)", [_mb(r, "idle_pss_mb", name) for r in results]))
    print(_line("idle PSS, total (MB)", [_mb(r, "idle_pss_mb", None) for r in results]))
    for name in ("plait", "nats-server", "postgres"):
        print(_line(f"peak RSS in 1-4, {name} (MB)", [_mb(r, "peak_rss_mb", name) for r in results]))
    print(_line("peak RSS to the end, nats-server (MB)", [_mb(r, "peak_rss_end_mb", "nats-server") for r in results]))
    if prefect is not None and "failed" not in prefect:
        print(
            f"{'peak RSS, Prefect flow process (MB)':<{WIDTH}}{prefect['peak_rss_mb']:>{CELL * (len(results) + 1)}.0f}"
        )
    for r in results:
        if "failed" in (r.get("cached") or {}):
            print(f"  4. cached rerun, fsync {r['sync']}: failed: {r['cached']['failed']}")
        if "failed" in (r.get("widest") or {}):
            print(f"  5. widest, fsync {r['sync']}: failed: {r['widest']['failed']}")
    if prefect is not None and "failed" in (prefect.get("cached") or {}):
        print(f"  4. cached rerun, Prefect: failed: {prefect['cached']['failed']}")
    _print_broker(results)
    if prefect is not None:
        _print_prefect(results, prefect)
        for failure in (prefect or {}).get("many_failures", []):
            print(f"  Prefect, {sizes['many']} flows at once: {failure}")
        for failure in (prefect or {}).get("dag_failures", []):
            print(f"  Prefect, a DAG run failed: {failure}")
    print_lone(results)
    print_dags(results, prefect)
    print_cli(results)
    print_cpu(results)
    _print_targets(results, prefect)


def _median(result: dict[str, Any], *path: str) -> float | None:
    s = _get(result, path)
    return None if s is None or "median" not in s else s["median"]


def _print_broker(results: list[dict[str, Any]]) -> None:
    print("\nas a fraction of the broker (same server, pipelined / sync publish+ack of 300-byte messages):")
    for r in results:
        pipelined, sync = _median(r, "raw", "pipelined_msgs_per_s"), _median(r, "raw", "sync_msgs_per_s")
        if not pipelined or not sync:
            continue
        parts = []
        if (v := _median(r, "fan_out", "tasks_per_s")) is not None:
            parts.append(f"fan-out tasks/s = {v / pipelined:.1%} of pipelined msgs/s")
        if (v := _median(r, "many", "executions_per_s")) is not None:
            parts.append(f"executions/s = {v / pipelined:.2%}")
        if (v := _median(r, "chain", "step_p50_ms")) is not None:
            parts.append(f"chain step p50 = {v / (1000 / sync):.1f}x one sync publish+ack ({1000 / sync:.2f} ms)")
        w = r.get("widest") or {}
        if "nodes_per_s" in w:
            parts.append(f"widest nodes/s = {w['nodes_per_s'] / pipelined:.1%}")
        print(f"  fsync {r['sync']}: " + "; ".join(parts))


def _print_prefect(results: list[dict[str, Any]], prefect: dict[str, Any]) -> None:
    if "failed" in prefect:
        print(f"\nPrefect: failed: {prefect['failed']}")
        return
    source = prefect["chain_source"]
    print(f"\nplait / Prefect {prefect['prefect']} (medians; >1 means plait is better; Prefect chain from {source}):")
    for r in results:
        ratios = []
        for label, path, higher_better in (
            ("fan-out tasks/s", ("fan_out", "tasks_per_s"), True),
            ("chain step p50", ("chain", "step_p50_ms"), False),
            ("chain wall", ("chain", "wall_s"), False),
            ("executions/s", ("many", "executions_per_s"), True),
            ("launch→done p50", ("many", "p50_ms"), False),
            ("cached rerun wall", ("cached", "second_s"), False),
            ("cached 0.2 s rerun wall", ("cached", "sleep_second_s"), False),
        ):
            a, b = _median(r, *path), _median(prefect, *path)
            if a and b:
                ratios.append(f"{label} {a / b if higher_better else b / a:.1f}x")
        print(f"  fsync {r['sync']}: " + ", ".join(ratios))


def _check(label: str, value: float | None, target: float, higher_better: bool, unit: str) -> str:
    if value is None:
        return f"{label}: not measured"
    met = value >= target if higher_better else value <= target
    gap = "" if met else f" (gap {abs(value - target):,.1f} {unit}, {value / target:.2f}x the target)"
    sign = ">=" if higher_better else "<="
    return f"{label}: {value:,.1f} {unit} vs {sign} {target:,.0f}: {'met' if met else 'NOT met'}{gap}"


def _print_targets(results: list[dict[str, Any]], prefect: dict[str, Any] | None) -> None:
    print("\ntargets (medians):")
    for r in results:
        print(f"  fsync {r['sync']}:")
        checks = [
            _check("fan-out tasks/s", _median(r, "fan_out", "tasks_per_s"), 1000, True, "tasks/s"),
            _check("lone execution launch→outputs p50", _median(r, "lone", "p50_ms"), 5, False, "ms"),
            _check("lone execution launch→outputs p99", _median(r, "lone", "p99_ms"), 15, False, "ms"),
            _check("chain step p50", _median(r, "chain", "step_p50_ms"), 5, False, "ms"),
            _check("chain step p99", _median(r, "chain", "step_p99_ms"), 20, False, "ms"),
            _check("executions launch→done p50", _median(r, "many", "p50_ms"), 50, False, "ms"),
            _check("replay read+apply", _median(r, "replay", "read_apply_per_s"), 500_000, True, "events/s"),
            _check(
                "idle stack RSS total", sum(r["idle_rss_mb"].values()) if "idle_rss_mb" in r else None, 300, False, "MB"
            ),
            _check(
                "idle stack PSS total (shared pages counted once)",
                sum(r["idle_pss_mb"].values()) if "idle_pss_mb" in r else None,
                300,
                False,
                "MB",
            ),
        ]
        pf = _median(prefect or {}, "fan_out", "tasks_per_s")
        fo = _median(r, "fan_out", "tasks_per_s")
        checks.append(_check("fan-out vs Prefect", fo / pf if fo and pf else None, 20, True, "x"))
        w = r.get("widest")
        if w is not None:
            if "failed" in w:
                checks.append(f"widest {w['width']}: NOT met: failed: {w['failed']}")
            else:
                rss = w.get("scheduler_peak_mb")
                checks.append(_check(f"widest {w['width']}: scheduler peak RSS", rss, 300, False, "MB"))
                record = w["largest_record_kib"]
                checks.append(_check(f"widest {w['width']}: largest record", record, 1024, False, "KiB"))
        for line in checks:
            print(f"    {line}")
