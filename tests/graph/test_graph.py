"""The computation graph of J = L + s (D2L 5.3.2), read off autograd: structure, not pixels."""

from __future__ import annotations

import torch

from lit_d2l.graph import computation_graph, graph_figure, save_figure
from lit_d2l.models import MLP, LeNet, MLPScratch, built


def names(graph) -> set[str]:
    """The ids of every node but the operators: ``{"x", "W1", "z", ..., "J"}``."""
    return {node.id for node in graph.nodes.values() if node.kind != "operator"}


def batch(n: int = 8, inputs: int = 12, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, inputs, generator=generator), torch.randint(classes, (n,), generator=generator)


def test_mlp_scratch_with_a_penalty_draws_d2ls_figure() -> None:
    model = built(MLPScratch(num_hiddens=5, num_inputs=12, num_outputs=3, l2=0.1, init_seed=0))
    graph = computation_graph(model, batch())
    assert names(graph) >= {"x", "W1", "z", "h", "W2", "o", "y", "L", "s", "J"}
    kinds = {node.id: node.kind for node in graph.nodes.values()}
    assert {kinds[n] for n in ("W1", "W2", "b1", "b2")} == {"parameter"}
    assert {kinds[n] for n in ("z", "h", "o")} == {"variable"} and {kinds[n] for n in "LsJ"} == {"objective"}
    assert kinds["x"] == kinds["y"] == "input"
    # x → [×] ← W1 → z → [φ] → h → [×] ← W2 → o → [ℓ] ← y → L; W1, W2 → [λ/2‖·‖²] → s; L, s → [+] → J
    assert set(graph.inputs_of("op:z")) == {"x", "W1", "b1"} and graph.outputs_of("op:z") == ["z"]
    assert graph.inputs_of("op:h") == ["z"] and graph.outputs_of("op:h") == ["h"]
    assert set(graph.inputs_of("op:o")) == {"h", "W2", "b2"}
    assert set(graph.inputs_of("op:L")) == {"o", "y"}
    assert set(graph.inputs_of("op:s")) == {"W1", "W2"}, "the penalty reads the weights, never the biases"
    assert set(graph.inputs_of("op:J")) == {"L", "s"} and graph.outputs_of("op:J") == ["J"]
    assert graph.nodes["op:h"].note == "relu"
    assert graph.describe()[0] == "x, W1, b1 → [mm, add] → z"


def test_an_mlp_gets_d2ls_layer_names_and_without_a_penalty_j_is_l() -> None:
    model = built(MLP(hidden_sizes=[6, 6], dropout=0.5, num_inputs=12, num_outputs=3))
    graph = computation_graph(model, batch())
    layers = {"z1", "h1", "h'1", "z2", "h2", "h'2"}  # linear, activation, dropout per hidden layer
    assert names(graph) == {"x", "W1", "b1", "W2", "b2", "W3", "b3", *layers, "o", "y", "L"}
    assert graph.nodes["L"].label == "$L = J$"
    assert graph.nodes["op:h'1"].note == "dropout"
    order = list(graph.nodes)
    assert order.index("x") < order.index("z1") < order.index("h2") < order.index("o") < order.index("L")


def test_the_side_pass_leaves_training_as_it_was() -> None:
    model = built(MLPScratch(num_hiddens=5, num_inputs=12, num_outputs=3, l2=0.1))
    dropout = built(MLP(hidden_sizes=[6], dropout=0.5, num_inputs=12, num_outputs=3))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    computation_graph(model, batch())
    computation_graph(dropout, batch())  # draws dropout masks inside
    assert torch.equal(torch.rand(3), expected), "the global random stream (dropout's) is untouched"
    assert not any(p.requires_grad for p in model.parameters()), "MLPScratch's parameters stay untracked"
    assert all(p.grad is None for p in [*model.parameters(), *dropout.parameters()])


def test_the_figure_is_written_as_svg_and_png(tmp_path) -> None:
    model = built(MLPScratch(num_hiddens=5, num_inputs=12, num_outputs=3, l2=0.1))
    graph, figure = graph_figure(model, batch())
    assert graph.title.startswith("MLPScratch: the computation graph") and "s = λ/2 Σ‖W‖²" in graph.subtitle
    unpenalised, _ = graph_figure(built(MLPScratch(num_hiddens=5, num_inputs=12, num_outputs=3)), batch())
    assert "no penalty" in unpenalised.subtitle and "s" not in unpenalised.nodes
    paths = save_figure(figure, tmp_path / "out")
    assert [p.name for p in paths] == ["graph.svg", "graph.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


def test_other_architectures_keep_their_pytorch_names() -> None:
    graph = computation_graph(built(LeNet(num_outputs=10)), (torch.randn(2, 1, 28, 28), torch.tensor([3, 7])))
    assert {"x", "net.0.weight", "net.0", "net.11.weight", "o", "y", "L"} <= names(graph)
    assert "W1" not in names(graph) and "net.6" not in names(graph), "no D2L names, no node for a flatten"
    assert graph.nodes["net.0.weight"].kind == "parameter" and graph.nodes["net.0"].kind == "variable"
