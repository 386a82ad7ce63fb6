"""The ``plait`` command."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import anyio

from plait.errors import DefinitionError, InputError, NotFound, PlaitError
from plait_cli import (
    aside_commands,
    audit_signing_parsers,
    catalog_commands,
    cluster_commands,
    config_commands,
    logs,
    nats_commands,
    signal_command,
    stream_commands,
)
from plait_cli.home import usable_home
from plait_cli.run_options import add_run_options, run_options, without_run_options
from plait_cli.top_command import add_parsers as add_top_parser
from plait_cli.top_command import run as run_top

DESCRIPTION = """\
plait: typed workflows scheduled from an event log on NATS JetStream.

Without PLAIT_NATS_URL, commands use a running `plait dev`, or start the embedded stack
(local nats-server + PostgreSQL + scheduler, executor and catalog) for their own run."""

EPILOG = """\
environment:
  PLAIT_NATS_URL       NATS server of an existing deployment (nats://host:4222)
  PLAIT_DATABASE_URL   PostgreSQL for the catalog (postgresql://user@host/db)
  PLAIT_PROJECT, PLAIT_DOMAIN   where entities and executions live (default/development)
  PLAIT_HOME           data of the embedded stack (default ~/.plait)
  PLAIT_NATS_SYNC      'always' (default: fsync every write) or 'default' (nats-server's 2-minute sync)
  PLAIT_CONCURRENCY    executor worker processes (default: one per core)
  PLAIT_EXECUTOR_BACKEND  local (default) or kubernetes (with PLAIT_KUBERNETES_NAMESPACE, _IMAGE, _CONTEXT)
  PLAIT_CLUSTER        the cluster an executor takes work of (default local)
  PLAIT_DEFAULT_CLUSTER   a scheduler's: where work that names no cluster runs (default: PLAIT_CLUSTER)
  PLAIT_LOG_FORMAT, PLAIT_LOG_LEVEL   json|console, debug|info|warning|error (debug: errors show their traceback)
  PLAIT_METRICS_PORT   a service's /metrics, /livez and /readyz (default 0: none; PLAIT_METRICS_ADDRESS 127.0.0.1)
  PLAIT_CONFIG, PLAIT_PROFILE   the config file of named profiles (~/.config/plait/config.toml), and the one to use;
                       PLAIT_* variables win over the profile (`plait config show` says where each setting came from)

examples:
  plait run examples/etl.py:etl --days 3
  plait register examples/etl.py:etl --fast   # with its source bundle: runs anywhere, as registered
  plait dev                      # keep a local stack running for other commands
  plait executions list
  plait replay ID --timeline     # who did what, when, caused by which command
  plait audit verify --all       # hash chains, invariants, and the catalog against a replay
  plait schema export schemas/   # JSON Schemas of the wire format
  plait lineage ID --dot | dot -Tsvg > lineage.svg   # where an execution's data came from and went
  plait logs ID [NODE]           # what its tasks printed and logged (--attempt N, --follow)
  plait deadletter count         # refused commands (alert when > 0); list, show, redrive
  plait quarantine list          # stored messages a service could not read; replay after an upgrade
  plait clusters list            # clusters, their live executors and queued attempts
  plait streams ensure --replicas 3   # the operator makes the streams (before the services, after upgrades)
"""


class _Parser(argparse.ArgumentParser):
    """A parser (and, as its class, every sub-parser) that takes options only by their full names: a prefix
    would change meaning when an option is added, and would shadow workflow inputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``plait`` parser, and its ``run`` sub-parser (whose inputs depend on the workflow)."""
    parser = _Parser(
        prog="plait", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"plait {version('plait')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="register, launch and follow a workflow",
        description="Register FILE.py:WORKFLOW (and its tasks), launch it with the given inputs, follow it "
        "live and print its outputs. `plait run FILE.py:WORKFLOW --help` lists the workflow's inputs. "
        "Options before FILE.py:WORKFLOW are plait's; after it, the workflow's inputs win over plait's options "
        "of the same name.",
        usage="plait run [OPTIONS] FILE.py:WORKFLOW [--INPUT VALUE ...] [OPTIONS]",
        add_help=False,
    )
    add_run_options(run, help_action="store_true")
    run.add_argument(
        "workflow",
        nargs="?",
        metavar="FILE.py:WORKFLOW",
        help="the workflow (or launch plan) to run; FILE.py alone when it defines just one",
    )
    run.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    commands.add_parser("dev", help="run the embedded stack in the foreground for other commands to use").add_argument(
        "--secure", action="store_true", help="NATS authenticates and confines its users (docs/security.md)"
    )
    commands.add_parser("scheduler", help="run a scheduler replica (needs PLAIT_NATS_URL)")
    executor = commands.add_parser("executor", help="run an executor for PLAIT_QUEUE (needs PLAIT_NATS_URL)")
    executor.add_argument(
        "--backend", choices=["local", "kubernetes"], help="run attempts as local processes or Kubernetes Jobs"
    )
    executor.add_argument("--cluster", help="the cluster whose work it takes (PLAIT_CLUSTER)")
    executor.add_argument("--namespace", help="the Kubernetes namespace of its Jobs (PLAIT_KUBERNETES_NAMESPACE)")
    executor.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="a label it announces (repeatable; PLAIT_EXECUTOR_LABELS, comma-separated)",
    )
    catalog = commands.add_parser("catalog", help="run a catalog replica (needs PLAIT_NATS_URL and PLAIT_DATABASE_URL)")
    catalog.add_argument(
        "action", nargs="?", choices=["rebuild"], help="rebuild: empty the catalog and replay the event log into it"
    )
    catalog.add_argument("--json", action="store_true", help="rebuild: print the result as JSON")

    executions = commands.add_parser("executions", help="list, show and follow executions").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = executions.add_parser("list", help="recent executions, newest first")
    listing.add_argument("--status", choices=["running", "succeeded", "failed", "aborted"])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    show = executions.add_parser("show", help="one execution: status, timings, nodes, attempts, outputs")
    show.add_argument("execution_id", metavar="ID")
    show.add_argument("--json", action="store_true")
    follow = executions.add_parser(
        "follow",
        help="the live view of an execution until it ends (after Ctrl-C, --no-follow, or from another terminal)",
    )
    follow.add_argument("execution_id", metavar="ID")
    follow.add_argument("--json", action="store_true", help="print the result as JSON")
    outputs = executions.add_parser(
        "outputs",
        help="a succeeded execution's outputs; --save DIR reads those stored by reference and downloads its files",
    )
    outputs.add_argument("execution_id", metavar="ID")
    outputs.add_argument(
        "--save",
        metavar="DIR",
        help="read large values, and download files and directories under DIR (printed with their local paths)",
    )
    outputs.add_argument("--json", action="store_true", help="print the outputs as one JSON object")
    abort = executions.add_parser("abort", help="abort a running execution: its attempts are stopped")
    abort.add_argument("execution_id", metavar="ID")
    abort.add_argument("--reason", default="aborted by request", help="recorded with who aborted it")
    abort.add_argument("--json", action="store_true", help="print what came of it as JSON")
    relaunch = executions.add_parser("relaunch", help="run an execution's workflow version and inputs again")
    relaunch.add_argument("execution_id", metavar="ID")
    relaunch.add_argument("--json", action="store_true", help="print the new execution as JSON")
    recover = executions.add_parser(
        "recover", help="run a failed or aborted execution again, reusing the outputs of the nodes that succeeded"
    )
    recover.add_argument("execution_id", metavar="ID")
    recover.add_argument("--json", action="store_true", help="print the new execution as JSON")

    replay = commands.add_parser(
        "replay",
        help="rebuild an execution's state from its events, at any point",
        description="Rebuild the execution's state from the decisions stored in the log, with the same "
        "code the scheduler decides with. --at stops at a stream sequence or a time.",
    )
    replay.add_argument("execution_id", metavar="ID")
    replay.add_argument("--at", metavar="SEQUENCE|TIME", help="a stream sequence, or an ISO 8601 time with offset")
    replay.add_argument("--timeline", action="store_true", help="every transition: who, what, when, caused by")
    replay.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="verify executions' histories").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check hash chains, invariants, and the catalog against a replay; exits 1 on any problem",
        description="For each execution: every record decodes, belongs to its subject, is unchanged and chains "
        "to the one before it; its history keeps plait's invariants (nothing after an end, one end per node, "
        "attempts numbered 1..n, no node queued before its inputs); then the catalog's row equals the replayed "
        "state.",
    )
    verify.add_argument("execution_id", nargs="?", metavar="ID")
    verify.add_argument("--all", action="store_true", help="every execution of the project and domain")
    verify.add_argument("--no-catalog", action="store_true", help="check the chains and invariants only")
    verify.add_argument(
        "--ended", action="store_true", help="every execution must have ended (once the system has finished its work)"
    )
    verify.add_argument("--json", action="store_true", help="print the executions checked and the problems as JSON")
    audit_signing_parsers.add_parsers(commands, audit, verify)

    schema = commands.add_parser("schema", help="the wire format as JSON Schema").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    export = schema.add_parser(
        "export", help="write the JSON Schemas of commands, decisions, dispatches, registrations"
    )
    export.add_argument("directory", nargs="?", default="schemas", metavar="DIR", help="default: ./schemas")
    catalog_commands.add_parsers(commands)
    aside_commands.add_parsers(commands)
    config_commands.add_parsers(commands)
    logs.add_parsers(commands)
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script",
        description="Print a completion script for SHELL: `plait completion bash > "
        '~/.local/share/bash-completion/completions/plait`, or `eval "$(plait completion bash)"` in ~/.bashrc.',
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], metavar="SHELL", help="bash, zsh or tcsh")
    cluster_commands.add_parsers(commands)
    stream_commands.add_parsers(commands)
    nats_commands.add_parsers(commands)
    signal_command.add_parsers(commands)
    add_top_parser(commands)
    register = commands.add_parser(
        "register",
        help="register a workflow (and its tasks) without running it; print its version",
        description="Register FILE.py:WORKFLOW and its tasks as immutable versions. --fast also uploads the "
        "workflow's source as a code bundle to the PLAIT_CODE object store: executors (local or Kubernetes pods) "
        "import its tasks from that bundle, so this version runs the same code on any machine, whatever becomes "
        "of the files.",
    )
    register.add_argument(
        "workflow",
        metavar="FILE.py:WORKFLOW",
        help="the workflow (or launch plan) to register; FILE.py alone when it defines just one",
    )
    register.add_argument("--fast", action="store_true", help="register it with its source bundle")
    register.add_argument("--json", action="store_true", help="print what was registered as JSON")
    return parser, run


def _run_command(run_parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from plait.logging import configure_logging
    from plait.settings import profile_settings
    from plait.telemetry import configure_tracing
    from plait_cli.inputs import input_parser
    from plait_cli.references import runnable
    from plait_cli.run import run_workflow

    if args.workflow is None:
        run_parser.print_help()
        return 0 if run_options(args)["help"] else 2
    workflow = runnable(args.workflow)
    parser = input_parser(workflow, f"plait run {args.workflow}")
    if run_options(args)["help"]:
        parser.print_help()
        return 0
    given = parser.parse_args(args.arguments)
    options = run_options(args, given)
    settings = profile_settings()
    configure_logging(settings.log_format, settings.log_level, file=usable_home(settings) / "logs" / "plait.log")
    configure_tracing("plait-client")
    return anyio.run(
        lambda: run_workflow(
            settings,
            workflow,
            without_run_options(given),
            follow=not (options["detach"] or options["no_follow"]),
            as_json=options["json"],
            overwrite_cache=options["overwrite_cache"],
            cluster=options["cluster"],
            fast=not options["no_bundle"],
            cluster_selector=options["cluster_selector"],
        )
    )


def dispatch(argv: Sequence[str]) -> int:
    parser, run_parser = build_parser()
    args = parser.parse_args(argv)  # exits for --help before logging's modules are imported below

    from plait.logging import configure_logging
    from plait.settings import profile_settings
    from plait.telemetry import configure_tracing

    if args.command == "completion":
        import shtab

        print(shtab.complete(parser, shell=args.shell))
        return 0
    if args.command == "run":
        return _run_command(run_parser, args)
    if args.command in config_commands.COMMANDS:
        return config_commands.run(args)
    if args.command == "register":
        from plait_cli.register import register_workflow

        settings = profile_settings()
        configure_logging(settings.log_format, "warning", file=usable_home(settings) / "logs" / "plait.log")
        return anyio.run(register_workflow, settings, args.workflow, args.fast, args.json)
    settings = (
        profile_settings(
            executor_backend=args.backend,
            cluster=args.cluster,
            kubernetes_namespace=args.namespace,
            labels=",".join(args.label) if args.label else None,
        )
        if args.command == "executor"
        else profile_settings()
    )
    if args.command not in ("scheduler", "executor", "catalog", "schema") or getattr(args, "action", None) == "rebuild":
        usable_home(settings)  # the embedded stack's data and the command's log are there
    if args.command == "catalog" and args.action == "rebuild":
        from plait_cli.rebuild import rebuild_catalog

        configure_logging(settings.log_format, "warning", file=settings.home_path / "logs" / "plait.log")
        return anyio.run(rebuild_catalog, settings, args.json)
    if args.command in ("scheduler", "executor", "catalog", "dev"):
        from plait_cli import serve

        configure_logging("console" if args.command == "dev" else settings.log_format, settings.log_level)
        configure_tracing(f"plait-{args.command}")
        runner = {
            "scheduler": serve.serve_scheduler,
            "executor": serve.serve_executor,
            "catalog": serve.serve_catalog,
            "dev": serve.serve_dev,
        }[args.command]
        anyio.run(functools.partial(serve.serve_dev, secure=args.secure) if args.command == "dev" else runner, settings)
        return 0
    if args.command == "schema":
        from pathlib import Path

        from plait_cli.schema import export_schemas

        for path in export_schemas(Path(args.directory)):
            print(path)
        return 0
    configure_logging(settings.log_format, "warning", file=settings.home_path / "logs" / "plait.log")
    configure_tracing("plait-client")
    if args.command in catalog_commands.COMMANDS:
        return catalog_commands.run(settings, args)
    if args.command in aside_commands.COMMANDS:
        return aside_commands.run(settings, args)
    if args.command in cluster_commands.COMMANDS:
        return cluster_commands.run(settings, args)
    if args.command in stream_commands.COMMANDS:
        return stream_commands.run(settings, args)
    if args.command in nats_commands.COMMANDS:
        return nats_commands.run(settings, args)
    if args.command in logs.COMMANDS:
        return anyio.run(logs.print_logs, settings, args.execution_id, args.node, args.attempt, args.follow, args.json)
    if args.command in signal_command.COMMANDS:
        return signal_command.run(settings, args)
    if args.command == "top":
        return run_top(settings, args)
    if (
        args.command in audit_signing_parsers.COMMANDS
        or getattr(args, "action", "") in audit_signing_parsers.AUDIT_ACTIONS
    ):
        from plait_cli import audit_signing

        return audit_signing.run(settings, args)
    if args.command in ("replay", "audit"):
        from plait_cli import audit_signing, history

        if args.command == "replay":
            return anyio.run(history.replay_execution, settings, args.execution_id, args.at, args.json, args.timeline)
        checks = audit_signing.checks_of(settings, args)
        return anyio.run(
            lambda: history.audit_verify(
                settings, args.execution_id, args.all, not args.no_catalog, args.ended, args.json, checks=checks
            )
        )
    from plait_cli import executions

    if args.action == "list":
        return anyio.run(executions.list_executions, settings, args.status, args.limit, args.json)
    if args.action == "follow":
        return anyio.run(executions.follow_execution, settings, args.execution_id, args.json)
    if args.action == "outputs":
        from plait_cli.outputs import print_outputs

        return anyio.run(print_outputs, settings, args.execution_id, args.save, args.json)
    if args.action in ("abort", "relaunch", "recover"):
        from plait_cli import execution_actions

        if args.action == "abort":
            return anyio.run(execution_actions.abort_execution, settings, args.execution_id, args.reason, args.json)
        recover = args.action == "recover"
        return anyio.run(
            lambda: execution_actions.launch_again(settings, args.execution_id, recover=recover, as_json=args.json)
        )
    return anyio.run(executions.show_execution, settings, args.execution_id, args.json)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; a plait error (also from inside a task group) is one line on stderr, with its
    traceback only when PLAIT_LOG_LEVEL=debug."""
    try:
        code = dispatch(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BaseException as exc:
        errors = _plait_errors(exc)
        if not errors or os.environ.get("PLAIT_LOG_LEVEL") == "debug":
            raise
        print(f"plait: {_one_line(errors[0])}", file=sys.stderr)
        code = 2 if isinstance(errors[0], (DefinitionError, InputError, NotFound)) else 1
    sys.exit(code)


def _plait_errors(exc: BaseException) -> list[PlaitError]:
    """The plait errors ``exc`` is, or holds as an exception group; none if it holds anything else."""
    if isinstance(exc, PlaitError):
        return [exc]
    if not isinstance(exc, BaseExceptionGroup):
        return []
    found = [_plait_errors(inner) for inner in exc.exceptions]
    return [error for errors in found for error in errors] if all(found) else []


def _one_line(error: PlaitError) -> str:
    from plait_cli.embedded import ServerStartError

    first, *details = str(error).splitlines() or [""]
    if isinstance(error, ServerStartError) and error.log_path is not None:
        first += f"; see {error.log_path}"
    elif details:
        first += " (PLAIT_LOG_LEVEL=debug shows more)"
    return first if type(error) in (PlaitError, ServerStartError) else f"{type(error).__name__}: {first}"


if __name__ == "__main__":
    main()
