"""The models and DataModules lit-d2l ships, as the help texts and error lines list them.

Written out rather than read from the classes: importing ``lit_d2l.models`` loads torch and Lightning
(~5 s), and ``lit-d2l --help`` should answer at once. ``tests/test_catalog.py`` checks that these are
exactly the concrete classes the packages export, each with the first line of its docstring: a new
model or DataModule gets its line here.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    """One usable class: its short name and the first line of its docstring."""

    name: str
    summary: str


MODELS = (
    Entry("MLP", "Flatten, then Linear → activation → dropout per hidden layer, then a Linear to the logits."),
    Entry(
        "LeNet", "Two convolution + sigmoid + 2×2 average-pooling blocks, then three dense layers, on 1×28×28 images."
    ),
    Entry("LinearRegression", "nn.Linear with mean squared error and torch.optim.SGD (D2L 3.5)."),
    Entry(
        "LinearRegressionScratch", "Explicit w and b, squared loss ½(ŷ − y)² and the SGD update written out (D2L 3.4)."
    ),
    Entry("MLPScratch", "Hand-written forward and backward pass of a 1-hidden-layer MLP with an optional L2 term."),
    Entry("SoftmaxRegression", "Flatten + nn.Linear, cross-entropy on the logits (D2L 4.5)."),
    Entry(
        "SoftmaxRegressionScratch",
        "Explicit W ~ N(0, σ²) and b, softmax and cross-entropy written out, SGD written out (D2L 4.4).",
    ),
)

DATAMODULES = (
    Entry(
        "Digits", "sklearn.datasets.load_digits: pixels 0–16 scaled to [0, 1], shaped (B, 1, 8, 8); stratified splits."
    ),
    Entry(
        "FashionMNIST",
        "The 60,000 training images split into train/val (stratified, seeded); test = the official 10,000.",
    ),
    Entry("GaussianClusters", "x = centre[y] + N(0, I), centres ~ N(0, separation²·I), classes balanced; seeded."),
    Entry(
        "HighDimLinearData", "y = 0.05 + Σ 0.01·xᵢ + ε over d = 200 inputs, with only 20 training examples (D2L 3.7)."
    ),
    Entry(
        "PolynomialData",
        "y = Σ wᵢ·φᵢ(x) + b + ε over powers of x ~ N(0, 1), noise ε ~ N(0, noise²) (D2L 1st ed. 3.11 / 4.4).",
    ),
    Entry(
        "SyntheticRegressionData",
        "y = Xw + b + ε with X ~ N(0, I) and ε ~ N(0, noise²); the same seed gives the same data (D2L 3.3).",
    ),
)


def listing(title: str, entries: tuple[Entry, ...] | list[Entry], indent: str = "  ") -> str:
    """``title:`` then one aligned ``name  summary`` line per entry."""
    width = max((len(entry.name) for entry in entries), default=0) + 2
    lines = [f"{indent}{entry.name.ljust(width)}{entry.summary}".rstrip() for entry in entries]
    return "\n".join([f"{title}:", *lines])


# Help of fit's own options: the parser (fit.run) and the torch-free help (cli.usage) print the same words.
CKPT_PATH_HELP = "checkpoint to resume (fit) or evaluate (validate, test)"
TEST_AFTER_FIT_HELP = "after fit, also test, in the same MLflow run"
LOG_GRAPH_HELP = "log graph.svg/graph.png, J's computation graph (D2L 5.3), at step 0 (off unless the config sets it)"
