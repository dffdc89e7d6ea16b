"""The package's layers: each module imports only from its own layer or the layers below, with no cycles.

docs/architecture.md describes the same layers, in a table: change it with ``LAYERS``.
"""

from __future__ import annotations

import ast
import functools
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


@functools.cache
def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _module_of(name: str) -> str | None:
    """``name`` as a module of the package (a package by its ``__init__``), or None."""
    modules = _modules()
    return name if name in modules else f"{name}.__init__" if f"{name}.__init__" in modules else None


def _import_nodes(tree: ast.AST, at_import_time: bool) -> list[ast.stmt]:
    """Every import statement, or only those that run when the module is imported (not inside a function)."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            elif not (at_import_time and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)):
                visit(child)

    visit(tree)
    return found


def _imports(path: Path, module: str, at_import_time: bool) -> set[str]:
    """The lit_d2l modules ``module`` imports: anywhere (lazy imports included), or when it is imported."""
    package = module.rsplit(".", 1)[0] if not module.endswith(".__init__") else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), at_import_time):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the module's own package upwards
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        for alias in node.names:  # ``from package import module`` needs the module, not the package's names
            submodule = f"{base}.{alias.name}"
            found.add(submodule if _module_of(submodule) else base)
    resolved = {_module_of(name) for name in found if name.startswith("lit_d2l")}
    return {name for name in resolved if name is not None} - {module}


def _layer(module: str) -> int:
    part = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if part in names)


def test_every_module_belongs_to_a_layer() -> None:
    for module in _modules():
        _layer(module)  # raises StopIteration for a module outside every layer


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_imports_from_a_layer_above_its_own(module: str) -> None:
    above = {
        name for name in _imports(_modules()[module], module, at_import_time=False) if _layer(name) > _layer(module)
    }
    assert not above, f"{module} (layer {_layer(module)}) imports from above: {sorted(above)}"


def test_the_imports_at_import_time_have_no_cycle() -> None:
    modules = _modules()
    graph = {m: _imports(p, m, at_import_time=True) for m, p in modules.items()}
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
