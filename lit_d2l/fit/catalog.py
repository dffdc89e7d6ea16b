"""The models and DataModules lit-d2l ships, read from the package's source (for help texts).

Read with :mod:`ast`, not imported: importing ``lit_d2l.models`` loads torch and Lightning (~5 s),
and ``lit-d2l --help`` should answer at once. A class is listed when its package's ``__all__``
exports it, it derives from Lightning's base class, and every method that raises
``NotImplementedError`` somewhere above it is overridden (so ``D2LModule`` and ``Classifier`` are not).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Entry:
    """One usable class: its short name and the first line of its docstring."""

    name: str
    summary: str


def models(package: Path = PACKAGE / "models") -> list[Entry]:
    """The LightningModules of ``lit_d2l.models`` a config can name."""
    return usable_classes(package, "LightningModule")


def datamodules(package: Path = PACKAGE / "data") -> list[Entry]:
    """The LightningDataModules of ``lit_d2l.data`` a config can name."""
    return usable_classes(package, "LightningDataModule")


def usable_classes(package: Path, root: str) -> list[Entry]:
    """Classes exported by ``package/__init__.py`` that derive from ``root`` and are not abstract, in
    ``__all__`` order."""
    classes: dict[str, _Class] = {}
    for file in sorted(package.glob("*.py")):
        for node in ast.parse(file.read_text(encoding="utf-8"), str(file)).body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] = _Class.of(node)
    entries = []
    for name in _exported(package / "__init__.py"):
        if name in classes and _derives(name, root, classes) and not _abstract(name, classes):
            entries.append(Entry(name, classes[name].summary))
    return entries


def listing(title: str, entries: list[Entry], indent: str = "  ") -> str:
    """``title:`` then one aligned ``name  summary`` line per entry."""
    width = max((len(entry.name) for entry in entries), default=0) + 2
    lines = [f"{indent}{entry.name.ljust(width)}{entry.summary}".rstrip() for entry in entries]
    return "\n".join([f"{title}:", *lines])


@dataclass
class _Class:
    bases: list[str]
    summary: str
    methods: set[str] = field(default_factory=set)
    unimplemented: set[str] = field(default_factory=set)  # methods whose body raises NotImplementedError

    @classmethod
    def of(cls, node: ast.ClassDef) -> _Class:
        bases = [base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases]
        doc = (ast.get_docstring(node) or "").strip()
        found = cls(bases, doc.splitlines()[0].replace("``", "") if doc else "")
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                found.methods.add(item.name)
                if any(_raises_not_implemented(statement) for statement in item.body):
                    found.unimplemented.add(item.name)
        return found


def _raises_not_implemented(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.Raise) or statement.exc is None:
        return False
    exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _exported(init: Path) -> list[str]:
    for node in ast.parse(init.read_text(encoding="utf-8"), str(init)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def _derives(name: str, root: str, classes: dict[str, _Class]) -> bool:
    return any(base == root or (base in classes and _derives(base, root, classes)) for base in classes[name].bases)


def _abstract(name: str, classes: dict[str, _Class]) -> bool:
    """Some method raises NotImplementedError where it is defined nearest to ``name`` (depth-first, as the
    MRO of single-inheritance chains)."""
    seen: set[str] = set()
    order = [name]
    for current in order:
        order.extend(base for base in classes[current].bases if base in classes and base not in order)
    for current in order:
        info = classes[current]
        if info.unimplemented - seen:
            return True
        seen |= info.methods
    return False


# Help of fit's own options: the parser (fit.run) and the torch-free help (cli.usage) print the same words.
CKPT_PATH_HELP = "checkpoint to resume (fit) or evaluate (validate, test)"
TEST_AFTER_FIT_HELP = "after fit, also test, in the same MLflow run"
LOG_GRAPH_HELP = "log graph.svg/graph.png, J's computation graph (D2L 5.3), at step 0 (off unless the config sets it)"
