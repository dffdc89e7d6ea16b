"""lit-d2l builds on the public APIs of Lightning, torch and MLflow only: no private module, no internal hook."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lit_d2l"
WATCHED = {"lightning", "pytorch_lightning", "lightning_fabric", "torch", "torchmetrics", "mlflow"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """Private names or modules of the watched packages that ``source`` imports or reaches by attribute."""
    found: list[str] = []
    bound: set[str] = set()  # local names bound to a watched package, module or object
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in WATCHED:
                    bound.add((alias.asname or alias.name).split(".")[0])
                    found += check_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in WATCHED:
            found += check_module(node.module)
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if is_private(alias.name) or f"{node.module}.{alias.name}".startswith("mlflow.store"):
                    found.append(f"{node.module}.{alias.name}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(f"{ast.unparse(node)}")
    return found


def check_module(module: str) -> list[str]:
    parts = module.split(".")
    if any(is_private(part) for part in parts) or module.startswith("mlflow.store"):
        return [module]
    return []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_names_of_lightning_torch_or_mlflow(path: Path) -> None:
    assert private_uses(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "from mlflow.utils.validation import _validate_metric",
        "from mlflow.store.tracking.dbmodels.models import SqlMetric",
        "import lightning.pytorch.trainer.connectors._x",
        "from lightning.pytorch.loops._loop import Loop",
        "import torch\ntorch._C._get_tracing_state()",
        "from lightning.pytorch import Trainer\nTrainer._run",
    ],
)
def test_the_check_catches_private_uses(source: str) -> None:
    assert private_uses(source)


def test_the_check_allows_public_and_own_names() -> None:
    source = "import torch\nfrom lightning.pytorch.cli import LightningCLI\nself._own = torch.nn.Linear(2, 2).__class__"
    assert private_uses(source) == []
