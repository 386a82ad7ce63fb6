"""One fsync setting's whole run on a fresh embedded stack (run in its own process by ``python -m bench``)."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import anyio

from bench import chain, fan_out, many, raw, replay, widest
from bench.measure import summary
from bench.stack import servers
from bench.workloads import make_chain, make_fan_out, small
from plait.cli.stack import embedded_services
from plait.client import AsyncClient
from plait.logging import configure_logging
from plait.settings import load_settings


def progress(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__module__}.{type(exc).__name__} {exc}".strip()


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: summary([run[key] for run in runs]) for key in runs[0]} if runs else {}


async def bench_stack(sync: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"sync": sync}
    log_at = 0
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as home:
        settings = load_settings(home=home, nats_sync=sync)
        async with servers(settings) as srv:
            groups = srv.groups()
            try:
                async with embedded_services(settings, srv.info):
                    async with await AsyncClient.connect(srv.info.nats_url) as client:
                        await anyio.sleep(2.0)  # let the services settle before the idle reading
                        result["idle_rss_mb"] = {name: g.rss_mb() for name, g in groups.items()}
                        fan_out_wf, chain_wf = make_fan_out(args.fan_out), make_chain(args.chain)
                        for wf in (fan_out_wf, chain_wf, small):
                            await client.register(wf)
                        await chain.run(client, chain_wf, args.chain)  # warm the worker pool
                        for g in groups.values():
                            g.reset_peak()
                        runs: dict[str, list[dict[str, float]]] = {"fan_out": [], "chain": [], "many": []}
                        for run in range(args.runs):
                            runs["fan_out"].append(await fan_out.run(client, fan_out_wf, args.fan_out))
                            runs["chain"].append(await chain.run(client, chain_wf, args.chain))
                            runs["many"].append(await many.run(client, args.many))
                            progress(
                                f"[{sync}] run {run + 1}/{args.runs}: fan-out {runs['fan_out'][-1]['tasks_per_s']:.0f} "
                                f"tasks/s, chain p50 {runs['chain'][-1]['step_p50_ms']:.1f} ms, "
                                f"{args.many} executions p50 {runs['many'][-1]['p50_ms']:.0f} ms"
                            )
                        result.update({name: summarize(values) for name, values in runs.items()})
                        result["peak_rss_mb"] = {name: g.peak_mb() for name, g in groups.items()}
                        if args.widest > 0:
                            progress(f"[{sync}] widest: one execution of {args.widest} nodes")
                            log_at = widest.log_size(args.log)
                            result["widest"] = await widest.run(client, args.widest, groups["plait"], args.log)
                            progress(f"[{sync}] widest: {result['widest']}")
            except Exception as exc:  # a service crashed: say so on the rows not measured yet, keep going
                if "widest" in result or "fan_out" not in result:
                    raise
                reason = f"the services crashed: {_leaf(exc)}; last error logged: {widest.last_error(args.log, log_at)}"
                result["widest"] = {"width": args.widest, "failed": reason, "plait_peak_mb": groups["plait"].peak_mb()}
                progress(f"[{sync}] widest: failed: {reason}")
            # services stopped: the broker floor and the replay have the server to themselves
            # (the replay's records stay in the stream, which denies purges; the server is thrown away after)
            async with await AsyncClient.connect(srv.info.nats_url) as client:
                raw_runs = [await raw.run(client.js, *args.raw) for _ in range(args.runs)]
                result["raw"] = summarize(raw_runs)
                progress(f"[{sync}] raw floor: {raw_runs[-1]}")
                if args.replay > 0:
                    # made here, after the idle and workload readings, so its memory is not counted as plait's
                    history = replay.generate(args.replay)
                    result["replay_history"] = {
                        "events": history.events,
                        "decisions": len(history.records),
                        "width": history.width,
                        "retries": history.retries,
                        "generate_s": history.generate_s,
                    }
                    result["replay_store_s"] = await replay.store(client.js, history)
                    replay_runs = []
                    for _ in range(args.runs):
                        rate, decoded = await replay.read_and_apply(client.js, history)
                        replay_runs.append(
                            {"read_apply_per_s": rate, "apply_per_s": replay.apply_only(decoded, history.events)}
                        )
                        del decoded
                    result["replay"] = summarize(replay_runs)
                    progress(f"[{sync}] replay: {replay_runs[-1]}")
            result["peak_rss_end_mb"] = {name: g.peak_mb() for name, g in groups.items()}
    return result


def _child(sync: str, args: argparse.Namespace, conn: Connection) -> None:
    configure_logging("json", "warning", file=args.log)
    try:
        conn.send(("ok", anyio.run(bench_stack, sync, args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_mode(sync: str, args: argparse.Namespace) -> dict[str, Any]:
    """``bench_stack`` in a fresh process (not a daemon: the executor starts worker processes)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sync, args, sender), name=f"bench-{sync}")
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "error", "the benchmark process exited without a result"
    process.join()
    if status != "ok":
        raise RuntimeError(f"fsync {sync}: {payload}")
    result: dict[str, Any] = payload
    return result
