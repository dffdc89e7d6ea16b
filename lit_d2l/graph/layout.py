"""Where each node of a computation graph goes: columns in forward order, rows by role (D2L's figure 5.3.1).

The longest chain from the input x to the objective runs along row 0 (x → z → h → o → L → J); weights sit
one row above the operator that reads them first, biases and the labels y one row below, and the
penalty's branch (s) two rows above. Each node's column is set by its longest path to the objective, so
every arrow points right.
"""

from __future__ import annotations

from lit_d2l.graph.model import ComputationGraph

Position = tuple[int, int]  # (column, row)


def layout(graph: ComputationGraph) -> dict[str, Position]:
    """A (column, row) for every node; no two nodes share one."""
    successors = {node: graph.outputs_of(node) for node in graph.nodes}
    to_sink = graph.to_sink().__getitem__
    width = max(map(to_sink, graph.nodes), default=0)
    column = {node: width - to_sink(node) for node in graph.nodes}
    spine = _spine(graph, successors, to_sink)
    rows: dict[str, int] = {}
    for node_id, node in graph.nodes.items():
        if node_id in spine:
            rows[node_id] = 0
        elif not graph.inputs_of(node_id):  # a leaf: next to the operator that reads it first
            column[node_id] = min(column[nxt] for nxt in successors[node_id]) - 1
            rows[node_id] = 1 if node.kind == "parameter" and "×" in node.note else -1
        else:
            rows[node_id] = 2
    taken: set[Position] = set()
    positions: dict[str, Position] = {}
    for node_id in graph.nodes:
        col, row = column[node_id], rows[node_id]
        step = -1 if row < 0 else 1
        while (col, row) in taken:
            row += step
        taken.add((col, row))
        positions[node_id] = (col, row)
    return positions


def _spine(graph: ComputationGraph, successors: dict[str, list[str]], to_sink) -> set[str]:
    """The longest chain from the input x (or the node farthest from the sink) to the sink."""
    start = "x" if "x" in graph.nodes else max(graph.nodes, key=to_sink, default=None)
    chain: set[str] = set()
    node = start
    while node is not None:
        chain.add(node)
        node = max(successors[node], key=to_sink, default=None)
    return chain
