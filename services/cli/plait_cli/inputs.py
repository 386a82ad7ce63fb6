"""Command-line values for workflow inputs, parsed by the inputs' type hints."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from plait.core.model import Param
from plait.core.types import Primitive, describe
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow
from plait_cli.run_options import add_run_options

_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def parse_value(text: str, hint: Any, name: str) -> Any:
    """``text`` as a value of ``hint``: plain for scalars, JSON for lists, dicts and records."""
    optional = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if optional and type(None) in optional:
        if text.lower() in ("none", "null"):
            return None
        hint = next(a for a in optional if a is not type(None))
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError("expected true or false")
        if hint in (int, float):
            return hint(text)
        if hint is str:
            return text
        if hint is bytes:
            return text.encode()
        return msgspec.json.decode(text.encode(), type=hint, strict=False)
    except (ValueError, msgspec.DecodeError) as exc:
        raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}: {exc}") from None


def _converter(hint: Any, name: str) -> Callable[[str], Any]:
    return lambda text: parse_value(text, hint, name)


def _help_for(param: Param) -> str:
    kind = describe(param.type)
    needs_json = not isinstance(param.type, Primitive)
    default = "" if param.required else f" (default: {msgspec.json.encode(param.default).decode()})"
    return f"{kind}{', as JSON' if needs_json else ''}{default}"


def input_parser(target: Workflow[Any, Any] | LaunchPlan, prog: str) -> argparse.ArgumentParser:
    """Options for the inputs of a workflow, or of a launch plan (less its fixed inputs, with its defaults),
    then ``plait run``'s own options whose flags no input has."""
    workflow = target.workflow if isinstance(target, LaunchPlan) else target
    plan = target.spec if isinstance(target, LaunchPlan) else None
    what = f"launch plan {plan.name} of workflow {workflow.name}" if plan else f"workflow {workflow.name}"
    parser = argparse.ArgumentParser(prog=prog, description=f"Inputs of {what}", add_help=False, allow_abbrev=False)
    group = parser.add_argument_group("workflow inputs")
    flags: set[str] = set()
    for param in workflow.interface.inputs:
        if plan is not None and param.name in plan.fixed_inputs:
            continue
        if plan is not None and param.name in plan.default_inputs:
            param = msgspec.structs.replace(param, default=plan.default_inputs[param.name])
        flags.add(flag := f"--{param.name.replace('_', '-')}")
        group.add_argument(
            flag,
            dest=param.name,
            required=param.required,
            metavar=describe(param.type).upper() if isinstance(param.type, Primitive) else "JSON",
            type=_converter(workflow.input_hints[param.name], param.name),
            help=_help_for(param),
            default=argparse.SUPPRESS,
        )
    add_run_options(parser.add_argument_group("plait run options (an input of the same name wins)"), frozenset(flags))
    return parser
