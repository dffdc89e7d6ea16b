"""The computation graph as a plain structure: variables, parameters and operators joined by edges (D2L 5.3.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: input: data (x, y); parameter: what training learns; variable: an intermediate value (z, h, o);
#: objective: L, s and J; operator: what computes a variable from its inputs.
Kind = Literal["input", "parameter", "variable", "objective", "operator"]


@dataclass(frozen=True)
class Node:
    """One node: ``id`` is its plain name (``W1``, ``z``, ``op:z``), ``label`` its mathtext, ``note`` a line
    under it (a shape, or what an operator computes)."""

    id: str
    kind: Kind
    label: str
    note: str = ""


@dataclass
class ComputationGraph:
    """Nodes by id and edges (source id, target id) in the direction of forward propagation."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    title: str = ""
    subtitle: str = ""

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.id, node)

    def connect(self, source: str, target: str) -> None:
        if (source, target) not in self.edges:
            self.edges.append((source, target))

    def inputs_of(self, node_id: str) -> list[str]:
        return [source for source, target in self.edges if target == node_id]

    def outputs_of(self, node_id: str) -> list[str]:
        return [target for source, target in self.edges if source == node_id]

    def to_sink(self) -> dict[str, int]:
        """Every node's longest path to the objective, in edges (0 for the sink)."""
        distance: dict[str, int] = {}

        def walk(node: str) -> int:
            if node not in distance:
                distance[node] = max((walk(target) + 1 for target in self.outputs_of(node)), default=0)
            return distance[node]

        return {node: walk(node) for node in self.nodes}

    def describe(self) -> list[str]:
        """One line per operator, in forward order: ``x, W1, b1 → [× +] → z``."""
        lines = []
        for node in self.nodes.values():
            if node.kind == "operator":
                inputs = ", ".join(self.inputs_of(node.id))
                outputs = ", ".join(self.outputs_of(node.id))
                what = f"{node.note} " if node.note else ""
                lines.append(f"{inputs} → [{what}] → {outputs}".replace(" ]", "]"))
        return lines
