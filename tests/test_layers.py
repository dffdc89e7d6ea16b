"""The package's layers: each module imports only from its own layer or the layers below, with no cycles.

docs/architecture.md describes the layers; this test keeps the code and that page in step.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lit_d2l"

#: Bottom to top. A module's layer is named by its first part below ``lit_d2l``.
LAYERS = (
    ("__init__", "errors", "seeding", "processes"),
    ("models", "data", "tracking"),
    ("graph",),
    ("callbacks",),
    ("fit",),
    ("sweeps",),
    ("cli", "__main__"),
)


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """The lit_d2l modules ``module`` imports (at its top level only, or anywhere, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_d2l"):
            for alias in node.names:  # ``from package import module`` needs the module, not the package's names
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in _modules() else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lit_d2l"))
    return {name for name in found if name in _modules() or f"{name}.__init__" in _modules()} - {module}


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if part in names)


def test_every_module_belongs_to_a_layer() -> None:
    for module in _modules():
        _layer(module)  # raises StopIteration for a module outside every layer


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_imports_from_a_layer_above_its_own(module: str) -> None:
    above = {
        name for name in _imports(_modules()[module], module, top_level_only=False) if _layer(name) > _layer(module)
    }
    assert not above, f"{module} (layer {_layer(module)}) imports from above: {sorted(above)}"


def test_the_top_level_imports_have_no_cycle() -> None:
    modules = _modules()
    graph = {m: {n if n in modules else f"{n}.__init__" for n in _imports(p, m, True)} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
