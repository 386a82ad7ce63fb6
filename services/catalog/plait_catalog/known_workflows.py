"""The workflow specs a projection has read, kept between its batches."""

from __future__ import annotations

from collections import OrderedDict

from plait.core.branches import interface_of_node
from plait.core.model import Interface, WorkflowSpec

WorkflowKey = tuple[str, str, str, str]  # (project, domain, name, version)

DEFAULT_LIMIT = 64


class KnownWorkflows:
    """Workflow specs, and the interfaces of their nodes, both by (project, domain, name, version).

    A version is the hash of its spec's content (when the SDK made it), so a spec read once never changes: the
    batches of one long execution reuse it, instead of reading and decoding it (and typing each of its nodes) again.
    The ``limit`` most recently used specs are kept.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._specs: OrderedDict[WorkflowKey, WorkflowSpec] = OrderedDict()
        self._interfaces: OrderedDict[WorkflowKey, dict[str, Interface]] = OrderedDict()

    def get(self, key: WorkflowKey) -> WorkflowSpec | None:
        spec = self._specs.get(key)
        if spec is not None:
            self._specs.move_to_end(key)
        return spec

    def add(self, key: WorkflowKey, spec: WorkflowSpec) -> None:
        self._specs[key] = spec
        self._specs.move_to_end(key)
        if len(self._specs) > self._limit:
            self._specs.popitem(last=False)

    def node_interfaces(self, tenant: tuple[str, str], spec: WorkflowSpec) -> dict[str, Interface]:
        """The interface of each node of ``spec``, launched in ``tenant`` (project, domain): its task's, or a map
        node's lists of them. Another tenant's workflow of the same name and version may be another spec: nothing
        checks that a version registered or launched over the wire is its content's hash."""
        key = (*tenant, spec.name, spec.version)
        interfaces = self._interfaces.get(key)
        if interfaces is None:
            interfaces = {node.id: interface_of_node(spec, node) for node in spec.nodes}
            self._interfaces[key] = interfaces
            if len(self._interfaces) > self._limit:
                self._interfaces.popitem(last=False)
        else:
            self._interfaces.move_to_end(key)
        return interfaces
