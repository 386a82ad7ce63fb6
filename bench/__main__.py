"""Benchmarks on the embedded stack, per fsync setting: a lone execution, fan-out, chain, many executions, widest
execution, replay, and the broker's own floor; DAG files (bench/dags), the fan-out and chain through `plait run`, and
the CPU per task of each process; optionally the same workloads on Prefect 3 and on Dask distributed.

python -m bench                          # 5 runs of each workload, fsync always and default
python -m bench --quick --sync default   # CI smoke: tiny sizes, one run
python -m bench --runs 3 --sync always --json results.json --compare prefect
python -m bench --runs 5 --sync always --only fan_out,chain,dag,cli --compare prefect,dask
python -m bench --replicas 1,2,4 --partitions 0,8 --runs 3 --sync always   # scheduler replicas (docs/scaling.md)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from bench import dag
from bench.replicas import bench_replicas, print_replicas
from bench.report import print_report
from bench.report_more import print_dask
from bench.stack import nats_server_version
from bench.suite import WORKLOADS, progress, run_mode, summarize
from plait.logging import configure_logging

FULL = {
    "lone": 200,
    "fan_out": 1000,
    "chain": 100,
    "many": 200,
    "cached": 500,
    "cached_sleepy": 20,
    "widest": 100_000,
    "replay": 1_000_000,
    "raw": (2000, 20_000),
    "dags": "montage-1000,epigenomics-1000,cycles-1000,montage-5000,epigenomics-5000,cycles-5000",
}
QUICK = {
    "lone": 10,
    "fan_out": 20,
    "chain": 5,
    "many": 10,
    "cached": 10,
    "cached_sleepy": 2,
    "widest": 200,
    "replay": 5000,
    "raw": (200, 2000),
    "dags": "diamond",
}
DEFAULT_SERVICES = "processes"  # as plait run starts them
SIZED = ("lone", "fan_out", "chain", "many", "cached", "cached_sleepy", "widest", "replay", "dags")


def run_prefect(args: argparse.Namespace) -> dict[str, Any]:
    """The Prefect side in subprocesses of a Python that has prefect: the workloads, then the DAG files in a second
    one (a fresh ephemeral server: either part left it overloaded, answering 503s, for what followed);
    {"failed": reason} when it cannot run."""
    dags = [str(path.resolve()) for path in dag.files(args.dags)] if "dag" in args.only else []
    result = _prefect_side(args, dags=[])
    if dags and "failed" not in result:
        of_dags = _prefect_side(args, dags=dags)
        if "failed" in of_dags:
            result["dag_failures"].append(f"the DAG files' run: {of_dags['failed']}")
        else:
            result["dag"], result["dag_failures"] = of_dags["dag"], result["dag_failures"] + of_dags["dag_failures"]
    return result


def _prefect_side(args: argparse.Namespace, dags: list[str]) -> dict[str, Any]:
    python = args.prefect_python
    with tempfile.TemporaryDirectory(prefix="plait-bench-prefect-") as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
        }
        env.pop("PREFECT_API_URL", None)
        argv = [python, str(Path(__file__).with_name("prefect_side.py"))]
        argv += ["--fan-out", str(args.fan_out), "--chain", str(args.chain)]
        argv += ["--many", str(args.many if "many" in args.only else 0)]
        argv += ["--cached", str(args.cached if "cached" in args.only else 0)]
        argv += ["--cached-sleepy", str(args.cached_sleepy if "cached" in args.only else 0)]
        argv += ["--runs", str(args.prefect_runs or args.runs)]
        if dags:
            argv += ["--dags-only", "--dags", *dags]
        try:
            done = subprocess.run(argv, env=env, cwd=home, stdout=subprocess.PIPE, timeout=3600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"failed": f"{type(exc).__name__}: {exc}"}
    if done.returncode != 0:
        return {"failed": f"{python} prefect_side.py exited with {done.returncode} (see its stderr above)"}
    data: dict[str, Any] = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return {
        "prefect": data["prefect"],
        "peak_rss_mb": data["peak_rss_mb"],
        "chain_source": data.get("chain_source", ""),
        "many_failures": data.get("many_failures", []),
        "dag_failures": data.get("dag_failures", []),
        **{name: summarize(data.get(name, [])) for name in ("fan_out", "chain", "many", "cached")},
        "dag": {name: summarize(runs) for name, runs in data.get("dag", {}).items() if runs},
    }


def run_dask(args: argparse.Namespace) -> dict[str, Any]:
    """The Dask side (bench/dask_side.py) in a subprocess; {"failed": reason} when it cannot run."""
    argv = [args.dask_python, str(Path(__file__).with_name("dask_side.py")), "--runs", str(args.runs)]
    argv += ["--fan-out", str(args.fan_out if "fan_out" in args.only else 0)]
    argv += ["--chain", str(args.chain if "chain" in args.only else 0)]
    if "dag" in args.only:
        argv += ["--dags", *(str(path.resolve()) for path in dag.files(args.dags))]
    with tempfile.TemporaryDirectory(prefix="plait-bench-dask-") as home:
        try:
            # TMPDIR: Dask's workers keep their scratch space in the temporary folder, which this one is.
            env = {**os.environ, "TMPDIR": home}
            done = subprocess.run(argv, cwd=home, env=env, stdout=subprocess.PIPE, timeout=3600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"failed": f"{type(exc).__name__}: {exc}"}
    if done.returncode != 0:
        return {"failed": f"{args.dask_python} dask_side.py exited with {done.returncode} (see its stderr above)"}
    data: dict[str, Any] = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return {"dask": data["dask"], **_dask_summary(data), "eager": _dask_summary(data.get("eager", {}))}


def _dask_summary(data: dict[str, Any]) -> dict[str, Any]:
    return {
        **{name: summarize(data.get(name, [])) for name in ("fan_out", "chain")},
        "dag": {name: summarize(runs) for name, runs in data.get("dag", {}).items() if runs},
    }


def default_prefect_python() -> str:
    for candidate in (os.environ.get("PLAIT_BENCH_PREFECT_PYTHON", ""), "/tmp/prefect-venv/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs of each workload (default 5; 1 with --quick)")
    parser.add_argument("--sync", choices=["always", "default", "both"], default="both")
    parser.add_argument(
        "--services",
        choices=["processes", "in-process"],
        default=DEFAULT_SERVICES,
        help=f"the services as child processes or on this process's loop (default {DEFAULT_SERVICES})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run: a CI smoke run")
    parser.add_argument("--lone", type=int, help="one-task executions run one at a time (default 200; 0 skips)")
    parser.add_argument("--fan-out", type=int, help="width of the fan-out (default 1000)")
    parser.add_argument("--chain", type=int, help="length of the chain (default 100)")
    parser.add_argument("--many", type=int, help="small executions launched at once (default 200)")
    parser.add_argument("--cached", type=int, help="cached no-op tasks run twice (default 500; 0 skips)")
    parser.add_argument("--cached-sleepy", type=int, help="cached 0.2 s tasks run twice (default 20; 0 skips)")
    parser.add_argument("--widest", type=int, help="nodes of the widest execution (default 100000; 0 skips)")
    parser.add_argument("--replay", type=int, help="events to replay (default 1000000; 0 skips)")
    parser.add_argument(
        "--only",
        type=lambda text: [part.strip().replace("-", "_") for part in text.split(",") if part.strip()],
        help=f"comma-separated workloads to run (default all: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--dags", help="comma-separated DAG files for the dag workload (names under bench/dags or paths)"
    )
    parser.add_argument(
        "--replicas",
        type=_numbers,
        help="scheduler replicas, comma-separated (1,2,4): only the fan-out and many executions, on each count",
    )
    parser.add_argument(
        "--partitions",
        type=_numbers,
        default=[0],
        help="with --replicas: command partitions, comma-separated (0: not partitioned; default 0)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--compare",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=[],
        help="run the same workloads on prefect (Prefect 3) and/or dask (distributed), comma-separated",
    )
    parser.add_argument("--dask-python", default=sys.executable, help="a Python that has distributed")
    parser.add_argument("--prefect-json", type=Path, help="use the Prefect figures of an earlier --json file's run")
    parser.add_argument("--prefect-runs", type=int, help="runs on Prefect (default: --runs)")
    parser.add_argument("--prefect-python", default=default_prefect_python(), help="a Python that has prefect")
    args = parser.parse_args()
    args.only = args.only or list(WORKLOADS)
    if unknown := set(args.compare) - {"prefect", "dask"}:
        parser.error(f"--compare: unknown {', '.join(sorted(unknown))} (choose from prefect, dask)")
    if unknown := set(args.only) - set(WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))} (choose from {', '.join(WORKLOADS)})")
    sizes = QUICK if args.quick else FULL
    for name in SIZED:
        if getattr(args, name) is None:
            setattr(args, name, sizes[name])
    args.raw = sizes["raw"]
    args.dags = [name.strip() for name in args.dags.split(",") if name.strip()]
    args.runs = args.runs or (1 if args.quick else 5)
    if args.replicas and args.services != "processes":
        parser.error("--replicas runs each scheduler replica as a process: leave --services at processes")
    with tempfile.TemporaryDirectory(prefix="plait-bench-log-") as logs:
        args.log = Path(logs) / "plait-bench.log"
        configure_logging("json", "warning", file=args.log)
        if args.replicas:
            run_replicas(args)
        else:
            run(args)


def _numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not numbers or min(numbers) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers of 0 or more, got {text!r}")
    return numbers


def run_replicas(args: argparse.Namespace) -> None:
    """Each (fsync, partitions, replicas) configuration on a fresh stack, in its own process."""
    started = time.perf_counter()
    load_before = _load()
    results = []
    for mode in ["always", "default"] if args.sync == "both" else [args.sync]:
        for partitions in args.partitions:
            for count in args.replicas:
                args.replica_count, args.partition_count = count, partitions
                progress(f"{count} scheduler replicas, {partitions or 'no'} partitions, fsync {mode}")
                results.append(run_mode(mode, args, bench_replicas))
    meta = {
        **_meta(args, started),
        "fan_out": args.fan_out,
        "many": args.many,
        "load_before": load_before,
        "load_after": _load(),
    }
    print_replicas(meta, results)
    if args.json:
        args.json.write_bytes(msgspec.json.encode({"meta": meta, "replicas": results}))


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _meta(args: argparse.Namespace, started: float) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return {
        "commit": (commit or "unknown") + ("+dirty" if dirty.stdout.strip() else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nats_server": nats_server_version(),
        "runs": args.runs,
        "elapsed_s": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    modes = ["always", "default"] if args.sync == "both" else [args.sync]
    results = []
    for mode in modes:
        progress(f"benchmarking with fsync {mode} ({args.runs} runs)")
        # each fsync setting in a fresh process, so one's memory does not show in the other's RSS readings
        results.append(run_mode(mode, args))
    prefect = None
    if args.prefect_json is not None:
        earlier = msgspec.json.decode(args.prefect_json.read_bytes())
        prefect = earlier["prefect"] if isinstance(earlier.get("prefect"), dict) else earlier  # a --json file
        progress(f"Prefect figures read from {args.prefect_json}")
    elif "prefect" in args.compare:
        progress(f"benchmarking Prefect with {args.prefect_python}")
        prefect = run_prefect(args)
    meta = {
        **_meta(args, started),
        "sizes": {k: getattr(args, k) for k in SIZED},
        "services": args.services,
        "replay_history": results[0].get("replay_history"),
    }
    dask = None
    if "dask" in args.compare:
        progress(f"benchmarking Dask distributed with {args.dask_python}")
        dask = run_dask(args)
    print_report(meta, results, prefect)
    if dask is not None:
        print_dask(results, dask)
    if args.json:
        args.json.write_bytes(msgspec.json.encode({"meta": meta, "results": results, "prefect": prefect, "dask": dask}))


if __name__ == "__main__":
    main()
