"""Arm settings as the report reads them: each child's swept values, in a readable order and as text."""

from __future__ import annotations

import json
from typing import Any

from lit_d2l.ablation.spec import canonical
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


def arm_name(child: Child) -> str:
    """A short name of the child's arm: ``l2=3``, ``init=normal init_std=1 activation=tanh`` (a key's last part,
    the whole key where two swept keys end alike); the arm key itself when the child has no settings."""
    arm = settings(child)
    if not arm:
        return child.arm
    names = [short(key) for key in arm]
    return " ".join(
        f"{name if names.count(name) == 1 else key}={label(value)}"
        for name, (key, value) in zip(names, arm.items(), strict=True)
    )


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
