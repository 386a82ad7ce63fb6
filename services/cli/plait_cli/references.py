"""What ``plait run`` and ``plait register`` take: a workflow or launch plan named as ``FILE.py:NAME`` or
``module:NAME``, or a file alone when it defines just one."""

from __future__ import annotations

from typing import Any

from plait.errors import DefinitionError, NotFound
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.loader import load_location
from plait.sdk.workflow import Workflow

Runnable = Workflow[Any, Any] | LaunchPlan


def runnable(reference: str) -> Runnable:
    """The workflow or launch plan ``reference`` names; a ``FILE.py`` alone names the one it defines. The error of a
    name that is not there, or of a file with several, lists those it has."""
    location, colon, name = reference.rpartition(":")
    if not colon:
        location, name = reference, ""
    if not location or (colon and not name) or (not name and not location.endswith(".py")):
        raise DefinitionError(f"'{reference}' is not of the form FILE.py, FILE.py:NAME or module:NAME")
    module = load_location(location)
    found = {attribute: value for attribute, value in vars(module).items() if isinstance(value, Workflow | LaunchPlan)}
    if not name:
        if len(found) == 1:
            return next(iter(found.values()))
        if not found:
            raise NotFound(f"{location} defines no @workflow or LaunchPlan")
        several = f"{location} has several workflows and launch plans"
        raise DefinitionError(f"{several}: name one as {_choices(location, found)}")
    entity = getattr(module, name, None)
    if entity is None:
        raise NotFound(f"{location} has no '{name}'" + (f"; try {_choices(location, found)}" if found else ""))
    if not isinstance(entity, Workflow | LaunchPlan):
        raise DefinitionError(f"{reference} is not a @workflow or a LaunchPlan (it is {type(entity).__name__})")
    return entity


def _choices(location: str, found: dict[str, Runnable]) -> str:
    return ", ".join(f"{location}:{attribute}" for attribute in sorted(found))
