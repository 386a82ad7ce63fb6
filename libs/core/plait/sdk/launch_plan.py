"""``LaunchPlan``: a named way to launch a workflow, with default inputs and inputs fixed for good."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.clusters import cluster_problem
from plait.core.ids import content_version
from plait.core.model import LaunchPlanSpec
from plait.core.types import check_value, describe
from plait.errors import DefinitionError
from plait.sdk.hints import encode_value
from plait.sdk.workflow import Workflow


class LaunchPlan:
    """Launch ``workflow`` as ``name``: ``default_inputs`` may be overridden at launch, ``fixed_inputs`` may not;
    ``cluster`` is where its executions run (tasks that name their own cluster keep it; a launch may choose another).

    Checked when defined: every input must exist in the workflow and have the right type.
    """

    def __init__(
        self,
        workflow: Workflow[Any, Any],
        name: str,
        *,
        default_inputs: dict[str, Any] | None = None,
        fixed_inputs: dict[str, Any] | None = None,
        cluster: str | None = None,
    ) -> None:
        self.workflow, self.name = workflow, name
        owner = f"launch plan '{name}' of workflow '{workflow.name}'"
        if cluster is not None and (problem := cluster_problem(cluster, owner)) is not None:
            raise DefinitionError(problem)
        on: str | msgspec.UnsetType = msgspec.UNSET if cluster is None else cluster
        defaults = self._checked(default_inputs or {}, owner)
        fixed = self._checked(fixed_inputs or {}, owner)
        both = sorted(set(defaults) & set(fixed))
        if both:
            raise DefinitionError(f"{owner}: input {', '.join(map(repr, both))} is both defaulted and fixed")
        unversioned = LaunchPlanSpec(
            name=name,
            version="",
            workflow=workflow.name,
            workflow_version=workflow.spec.version,
            default_inputs=defaults,
            fixed_inputs=fixed,
            cluster=on,
        )
        self.spec = LaunchPlanSpec(
            name=name,
            version=content_version(unversioned),
            workflow=workflow.name,
            workflow_version=workflow.spec.version,
            default_inputs=defaults,
            fixed_inputs=fixed,
            cluster=on,
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

    def __repr__(self) -> str:
        return f"<launch plan {self.name}@{self.spec.version[:12]} of {self.workflow.name}>"
