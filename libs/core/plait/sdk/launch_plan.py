"""``LaunchPlan``: a named way to launch a workflow, with default inputs and inputs fixed for good."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.clusters import placement_problem
from plait.core.ids import content_version
from plait.core.model import LaunchPlanSpec
from plait.core.notifications import Notify
from plait.core.schedules import Schedule
from plait.core.types import Primitive, check_value, describe
from plait.errors import DefinitionError
from plait.sdk.child import launch_child
from plait.sdk.hints import encode_value
from plait.sdk.signatures import is_named_tuple
from plait.sdk.tracing import current_builder
from plait.sdk.workflow import Workflow


class LaunchPlan:
    """Launch ``workflow`` as ``name``: ``default_inputs`` may be overridden at launch, ``fixed_inputs`` may not.
    With ``schedule`` (a ``CronSchedule`` or ``FixedRate``), the plan also launches itself on that schedule once
    activated (``plait launch-plans activate``); with ``notify`` (a ``Notify``), its executions notify when they end
    (in addition to what their workflow asks).
    ``cluster`` is where its executions run (tasks that name their own cluster keep it; a launch may choose another);
    ``cluster_selector`` in its place: a cluster whose live executors have those labels, chosen at each launch.

    Checked when defined: every input must exist in the workflow and have the right type.
    """

    def __init__(
        self,
        workflow: Workflow[Any, Any],
        name: str,
        *,
        default_inputs: dict[str, Any] | None = None,
        fixed_inputs: dict[str, Any] | None = None,
        schedule: Schedule | None = None,
        notify: Notify | None = None,
        cluster: str | None = None,
        cluster_selector: dict[str, str] | None = None,
    ) -> None:
        self.workflow, self.name = workflow, name
        owner = f"launch plan '{name}' of workflow '{workflow.name}'"
        on: str | msgspec.UnsetType = msgspec.UNSET if cluster is None else cluster
        by_labels = msgspec.UNSET if cluster_selector is None else dict(cluster_selector)
        if (problem := placement_problem(on, by_labels, owner)) is not None:
            raise DefinitionError(problem)
        defaults = self._checked(default_inputs or {}, owner)
        fixed = self._checked(fixed_inputs or {}, owner)
        both = sorted(set(defaults) & set(fixed))
        if both:
            raise DefinitionError(f"{owner}: input {', '.join(map(repr, both))} is both defaulted and fixed")
        if schedule is not None:
            self._check_schedule(schedule, defaults, fixed, owner)
        unversioned = LaunchPlanSpec(
            name=name,
            version="",
            workflow=workflow.name,
            workflow_version=workflow.spec.version,
            default_inputs=defaults,
            fixed_inputs=fixed,
            schedule=msgspec.UNSET if schedule is None else schedule,
            notify=msgspec.UNSET if notify is None else notify,
            cluster=on,
            cluster_selector=by_labels,
        )
        self.spec = msgspec.structs.replace(unversioned, version=content_version(unversioned))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside a ``@workflow``: launch this plan as a child execution (see plait.sdk.child)."""
        builder = current_builder()
        if builder is None:
            raise DefinitionError(f"launch plan '{self.name}' is launched with `plait launch` or Client.launch()")
        return launch_child(
            builder, self.spec, self.workflow.spec, is_named_tuple(self.workflow.return_hint), args, kwargs
        )

    def _checked(self, inputs: dict[str, Any], owner: str) -> dict[str, Any]:
        encoded: dict[str, Any] = {}
        for name, value in inputs.items():
            param = self.workflow.interface.input(name)
            if param is None:
                known = ", ".join(p.name for p in self.workflow.interface.inputs) or "none"
                raise DefinitionError(f"{owner}: unknown input '{name}' (inputs: {known})")
            encoded[name] = encode_value(value)
            problem = check_value(param.type, encoded[name])
            if problem is not None:
                raise DefinitionError(f"{owner}: input '{name}' expects {describe(param.type)}: {problem}")
        return encoded

    def _check_schedule(self, schedule: Schedule, defaults: dict[str, Any], fixed: dict[str, Any], owner: str) -> None:
        """A scheduled launch gives no inputs of its own: each required input must have a value from the plan,
        its default, or the fire time (``kickoff_time_input``, a ``str`` input the plan does not fix)."""
        kickoff = schedule.kickoff_time_input
        if kickoff:
            param = self.workflow.interface.input(kickoff)
            if param is None or param.type != Primitive("str") or kickoff in fixed:
                raise DefinitionError(f"{owner}: kickoff_time_input '{kickoff}' must name a str input it does not fix")
        given = {*defaults, *fixed, kickoff}
        missing = [p.name for p in self.workflow.interface.inputs if p.required and p.name not in given]
        if missing:
            raise DefinitionError(f"{owner}: a scheduled launch has no value for input {', '.join(map(repr, missing))}")

    def __repr__(self) -> str:
        return f"<launch plan {self.name}@{self.spec.version[:12]} of {self.workflow.name}>"
