"""The objective's computation graph, read off the autograd graph of one training step (D2L 5.3.2).

Autograd records one node per elementary operation (a cross-entropy alone is nine). Here every tensor
with a name is a variable node (the input x, the parameters, the forward pass's z, h, o, and L, s, J),
and the operations between two named tensors become one operator node. The labels y enter the loss
but carry no gradient, so autograd records nothing for them: y is added as the loss's second input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from lit_d2l.graph.model import ComputationGraph, Node
from lit_d2l.graph.naming import OBJECTIVE, operator_label, shape_note, variable_label
from lit_d2l.models.activations import CONCISE
from lit_d2l.models.mlp import DropoutScratch
from lit_d2l.models.probe import autograd_probe, objective_of

ACTIVATIONS = tuple(set(CONCISE.values()) - {nn.Identity})
DROPOUTS = (nn.Dropout, DropoutScratch)


def computation_graph(model: nn.Module, batch: tuple[Tensor, ...]) -> ComputationGraph:
    """The graph of J = L + s for one minibatch of a :class:`~lit_d2l.models.D2LModule` (training mode).

    Intermediate variables are named as D2L names them: a model with ``named_variables(X)``
    (``MLPScratch``) names its own; an MLP's layers give z⁽ˡ⁾ (linear), h⁽ˡ⁾ (activation), h′⁽ˡ⁾
    (dropout) and o (the output); other layers keep their PyTorch names.
    """
    *inputs, y = batch
    X = inputs[0].detach().clone()
    if X.is_floating_point():  # x joins the autograd graph as a leaf of its own
        X.requires_grad_(True)
    with autograd_probe(model), _module_outputs(model) as recorded:
        named = getattr(model, "named_variables", None)
        layers = None
        if callable(named):
            variables = dict(named(X, *inputs[1:]))
        else:
            output = model(X, *inputs[1:])
            layers = _layer_names(recorded)
            modules = {name: out for name, module, out in recorded if not isinstance(module, nn.Flatten)}
            variables = {**(modules if layers is None else layers), "o": output}
        d2l_names = callable(named) or layers is not None
        parts = objective_of(model, variables["o"], y)
        tensors = {**variables, "L": parts.L, **({"s": parts.s, "J": parts.J} if parts.s is not None else {})}
        return _trace(model, X, y, tensors, d2l_names)


def _trace(model: nn.Module, X: Tensor, y: Tensor, tensors: dict[str, Tensor], d2l_names: bool) -> ComputationGraph:
    """Walk back from J, one operator per stretch of autograd nodes between two named tensors."""
    marked = {t.grad_fn: name for name, t in tensors.items() if t.grad_fn is not None}
    parameter_names = _parameter_names(model) if d2l_names else dict(model.named_parameters())
    parameters = {id(p): name for name, p in parameter_names.items()}
    graph = ComputationGraph()
    sink = "J" if "J" in tensors else "L"
    pending, done = [sink], set()
    tensor_of = dict(tensors)
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        kind = "objective" if name in OBJECTIVE else "parameter" if name in parameter_names else "variable"
        graph.add(Node(name, "input" if name == "x" else kind, variable_label(name, sink), shape_note(tensor_of[name])))
        grad_fn = tensor_of[name].grad_fn
        if grad_fn is None:
            continue
        ops, sources = _operator(grad_fn, marked)
        op = f"op:{name}"
        symbol, note = operator_label(name, ops, getattr(model, "activation", None))
        graph.add(Node(op, "operator", symbol, note))
        names = [marked.get(source) or _leaf_name(source, parameters, X) for source in sources]
        for source, source_name in sorted(zip(sources, names, strict=True), key=_inputs_first):
            if source_name not in tensor_of:
                tensor_of[source_name] = source.variable
            graph.connect(source_name, op)
            pending.append(source_name)
        if name == "L":
            graph.add(Node("y", "input", variable_label("y", sink), shape_note(y)))
            graph.connect("y", op)
        graph.connect(op, name)
    return _in_forward_order(graph)


def _operator(grad_fn: Any, marked: dict[Any, str]) -> tuple[list[str], list[Any]]:
    """The autograd nodes from ``grad_fn`` back to the named tensors (or leaves) it reads: (op names, sources)."""
    ops: list[str] = []
    sources: list[Any] = []
    stack, seen = [grad_fn], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        ops.append(node.name())
        for parent, _ in node.next_functions:
            if parent is None:
                continue
            if parent in marked or hasattr(parent, "variable"):  # a named tensor, or a leaf (AccumulateGrad)
                if parent not in sources:
                    sources.append(parent)
            else:
                stack.append(parent)
    return ops[::-1], sources[::-1]


def _inputs_first(item: tuple[Any, str]) -> int:
    """Sort an operator's inputs: data and variables, then weights, then biases."""
    source, name = item
    if not hasattr(source, "variable") or name == "x":
        return 0
    return 1 if source.variable.ndim > 1 else 2


def _leaf_name(node: Any, parameters: dict[int, str], X: Tensor) -> str:
    variable = node.variable
    if variable is X:
        return "x"
    return parameters.get(id(variable), f"leaf {tuple(variable.shape)}")


def _parameter_names(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by D2L's names: W⁽ˡ⁾, b⁽ˡ⁾ for the l-th ``nn.Linear``, the PyTorch name for the rest."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    d2l = {f"{letter}{i}": p for i, m in enumerate(linears, 1) for letter, p in (("W", m.weight), ("b", m.bias))}
    d2l = {name: p for name, p in d2l.items() if p is not None}
    taken = {id(p) for p in d2l.values()}
    return {name: p for name, p in model.named_parameters() if id(p) not in taken} | d2l


@contextmanager
def _module_outputs(model: nn.Module) -> Iterator[list[tuple[str, nn.Module, Tensor]]]:
    """Record (name, module, output) of every leaf module run during the block, in the order they ran."""
    recorded: list[tuple[str, nn.Module, Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if not any(True for _ in module.children()):

            def hook(module: nn.Module, args: Any, output: Any, name: str = name) -> None:
                if isinstance(output, Tensor):
                    recorded.append((name, module, output))

            handles.append(module.register_forward_hook(hook))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def _layer_names(recorded: list[tuple[str, nn.Module, Tensor]]) -> dict[str, Tensor] | None:
    """D2L's names for an MLP's layer outputs (z1, h1, h'1, ... or z, h with one hidden layer); None for any
    other architecture (its layers keep their PyTorch names)."""
    if not all(isinstance(m, (nn.Linear, nn.Flatten, *ACTIVATIONS, *DROPOUTS)) for _, m, _ in recorded):
        return None
    linears = sum(isinstance(m, nn.Linear) for _, m, _ in recorded)
    hidden = linears - 1
    names: dict[str, Tensor] = {}
    layer = 0
    for _, module, output in recorded:
        if isinstance(module, nn.Linear):
            layer += 1
            prefix = "o" if layer == linears else "z"
            if prefix == "o":
                names["o"] = output
                continue
        elif isinstance(module, DROPOUTS):
            prefix = "h'"
        elif isinstance(module, ACTIVATIONS):
            prefix = "h"
        else:
            continue
        names[prefix if hidden == 1 else f"{prefix}{layer}"] = output
    return names


def _in_forward_order(graph: ComputationGraph) -> ComputationGraph:
    """The same graph with its nodes in forward order: farthest from the objective first (a topological order,
    since every edge leads one step closer to it)."""
    to_sink = graph.to_sink()
    ordered = ComputationGraph(title=graph.title, subtitle=graph.subtitle)
    for node in sorted(graph.nodes, key=lambda node: -to_sink[node]):
        ordered.add(graph.nodes[node])
    ordered.edges = list(graph.edges)
    return ordered
