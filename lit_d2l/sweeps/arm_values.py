"""Arm settings as the report reads them: each child's swept values, in a readable order and as text."""

from __future__ import annotations

import json
from typing import Any

from lit_d2l.sweeps.spec import canonical
from lit_d2l.tracking.sweeps import Child


def settings(child: Child) -> dict[str, Any]:
    """The arm's swept ``{dotted key: value}``, as the runner tagged it."""
    return json.loads(child.tags.get("arm_settings", "{}"))


def sortable(value: Any) -> tuple:
    """Numbers numerically, then text, then lists (shorter first, then element by element), then mappings."""
    if isinstance(value, (int, float)):
        return (0, value, "", ())
    if isinstance(value, list):
        return (2, len(value), "", tuple(sortable(v) for v in value))
    if isinstance(value, dict):
        return (3, 0, canonical(value), ())
    return (1, 0, str(value), ())


def label(value: Any) -> str:
    """A value as the arm key shows it: ``0.01``, ``relu``, ``[16, 16]``."""
    return value if isinstance(value, str) else canonical(value)


def short(key: str) -> str:
    """``model.init_std`` → ``init_std``: the dotted key's last part, as figures label it."""
    return key.split(".")[-1]


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each key's :func:`short` form, or, where keys share one, as many of its last parts as tell it apart:
    ``optimizer.lr`` and ``model.lr`` stay whole, ``model.l2`` becomes ``l2``."""
    names = {}
    for key in keys:
        parts, n = key.split("."), 1
        while n < len(parts) and any(k != key and k.split(".")[-n:] == parts[-n:] for k in keys):
            n += 1
        names[key] = ".".join(parts[-n:])
    return names


#: Short forms of keys often swept, as D2L writes them (σ for an init's standard deviation).
ABBREVIATIONS = {"init_std": "σ", "init_value": "c", "weight_decay": "wd", "num_train": "n"}


def short_name(arm: dict[str, Any]) -> str:
    """A short name of an arm from its swept settings: a text value stands alone (``normal``, ``tanh``), a number
    goes with its key's last part or D2L's letter (``l2=3``, ``σ=1``, ``depth=30``): ``normal σ=1 tanh depth=30``.
    Two keys with one last part keep enough of the key to tell them apart: ``optimizer.lr=0.1 model.lr=0.01``."""
    names, parts = short_keys(list(arm)), []
    for key, value in arm.items():
        alone = isinstance(value, str) and value and names[key] == short(key)  # a text value of an ambiguous key: keyed
        parts.append(value if alone else f"{ABBREVIATIONS.get(names[key], names[key])}={_compact(value)}")
    return " ".join(parts) or "base"


def unique_short_names(arms: list[dict[str, Any]]) -> list[str]:
    """:func:`short_name` of each arm; where two arms would share one, those two are named in full
    (``model.init=normal``, values as written), which distinct arms never share."""
    names = [short_name(arm) for arm in arms]
    return [
        name if names.count(name) == 1 else " ".join(f"{k}={label(v)}" for k, v in arm.items())
        for name, arm in zip(names, arms, strict=True)
    ]


def swept_params(arm: dict[str, Any]) -> dict[str, str]:
    """The swept settings as top-level MLflow params (``l2``, ``activation``): the runs table's first columns,
    where the full dotted names sit among a hundred others."""
    names = [short(key) for key in arm]
    return {
        name if names.count(name) == 1 else key.replace(".", "_"): label(value)
        for name, (key, value) in zip(names, arm.items(), strict=True)
    }


def arm_name(child: Child) -> str:
    """The child's arm by its :func:`short_name` (the arm key itself when the child has no settings)."""
    arm = settings(child)
    return short_name(arm) if arm else child.arm


def _compact(value: Any) -> str:
    """``3`` for 3.0, ``0.01``, ``1e-05``, ``[16, 16]``: numbers as %g, the rest as their canonical text."""
    return f"{value:g}" if isinstance(value, float) else label(value)


def arm_sort_key(arm: str) -> tuple:
    """Order arm keys ``a=1;b=10`` by their values, numbers numerically."""
    values = []
    for part in arm.split(";"):
        text = part.split("=", 1)[-1]
        try:
            values.append(sortable(json.loads(text)))
        except ValueError:
            values.append(sortable(text))
    return tuple(values)


def first_seed_runs(children: list[Child]) -> list[Child]:
    """The run of each arm with the lowest seed, in arm order."""
    first: dict[str, Child] = {}
    for child in sorted(children, key=lambda c: c.seed):
        first.setdefault(child.arm, child)
    return [first[arm] for arm in sorted(first, key=arm_sort_key)]
