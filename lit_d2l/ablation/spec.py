"""Sweep specs: a base config, a grid and/or explicit arms, seeds and the metrics to summarise.

```yaml
name: overfitting                 # MLflow experiment of the sweep
base: ../polynomial.yaml          # a `lit-d2l fit` config, relative to this file
grid:                             # dotted keys -> values; every combination is an arm
  data.degree: [2, 4, 20]
  data.num_train: [2, 10, 100, 1000]
arms:                             # optional explicit arms, combined with every grid point
  - {model.init: normal, model.init_std: 0.01}
overrides: {trainer.max_epochs: 400}   # applied to every arm
seeds: [0, 1, 2]                  # each arm runs once per seed (seed_everything and data.seed)
metrics: [train/loss_epoch, val/loss]  # summarised as mean ± std over seeds
axes: [data.degree, data.num_train]    # plotted along (default: the grid keys)
diagnostics_every: 0              # > 0: per-layer gradient/weight/activation stats every N steps
max_grad_norm: 1.0e6              # divergence bound
stability_demo: false             # log D2L 5.4's numerical-stability figures on the parent run
```
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_d2l.errors import ConfigError, require

_KNOWN_KEYS = {
    "name",
    "base",
    "grid",
    "arms",
    "overrides",
    "seeds",
    "metrics",
    "axes",
    "diagnostics_every",
    "max_grad_norm",
    "stability_demo",
}
SEED_KEYS = ("seed_everything", "data.seed")


@dataclass(frozen=True)
class Arm:
    """One setting of the swept keys; ``key`` names it in MLflow and in reports."""

    settings: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        return ";".join(f"{k}={_text(v)}" for k, v in self.settings) or "base"

    @property
    def settings_json(self) -> str:
        return json.dumps(dict(self.settings))

    def value(self, dotted_key: str) -> Any:
        return dict(self.settings).get(dotted_key)


@dataclass
class SweepSpec:
    """A parsed, validated sweep spec."""

    path: Path
    name: str
    base: Path
    arms: list[Arm]
    seeds: list[int]
    metrics: list[str]
    axes: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    diagnostics_every: int = 0
    max_grad_norm: float = 1e6
    stability_demo: bool = False

    @property
    def sweep_id(self) -> str:
        """Stable for the same spec and base config: re-running it resumes the same sweep."""
        digest = hashlib.sha256(self.path.read_bytes() + self.base.read_bytes()).hexdigest()[:10]
        return f"{self.name}-{digest}"

    def pairs(self) -> list[tuple[Arm, int]]:
        return [(arm, seed) for arm in self.arms for seed in self.seeds]

    def fit_args(self, arm: Arm, seed: int) -> list[str]:
        """The ``lit-d2l fit`` arguments of one arm and seed: base config, overrides, arm, seed."""
        args = ["--config", str(self.base)]
        settings = {**self.overrides, **dict(arm.settings), **dict.fromkeys(SEED_KEYS, seed)}
        for key, value in settings.items():
            args += [f"--{key}", _text(value)]
        return args


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec; every problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    require(isinstance(raw, dict), f"{path}: a sweep spec is a mapping with name, base, grid/arms, seeds")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    require(not unknown, f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for required in ("name", "base"):
        require(required in raw, f"{path}: missing {required!r}")
    base = (path.parent / str(raw["base"])).resolve()
    require(base.is_file(), f"{path}: base config {raw['base']!r} not found (looked at {base})")

    grid = raw.get("grid") or {}
    explicit = raw.get("arms") or []
    require(isinstance(grid, dict), f"{path}: grid must map dotted keys to lists of values")
    require(isinstance(explicit, list), f"{path}: arms must be a list of mappings")
    require(bool(grid) or bool(explicit), f"{path}: empty sweep: give a grid or a list of arms")
    for key, values in grid.items():
        require(
            isinstance(values, list) and len(values) > 0, f"{path}: grid key {key!r} needs a non-empty list of values"
        )
    for arm in explicit:
        require(isinstance(arm, dict) and arm, f"{path}: each arm must be a non-empty mapping, got {arm!r}")

    seeds = raw.get("seeds", [0])
    require(
        isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds),
        f"{path}: seeds must be a non-empty list of integers, got {seeds!r}",
    )
    metrics = raw.get("metrics", ["train/loss_epoch", "val/loss"])
    require(isinstance(metrics, list) and all(isinstance(m, str) for m in metrics), f"{path}: metrics: list of names")
    overrides = raw.get("overrides") or {}
    require(isinstance(overrides, dict), f"{path}: overrides must map dotted keys to values")

    grid_points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]
    arms = [Arm(tuple({**extra, **point}.items())) for extra in (explicit or [{}]) for point in grid_points]
    require(len({a.key for a in arms}) == len(arms), f"{path}: two arms have the same settings")
    axes = raw.get("axes") or list(grid) or sorted({k for a in explicit for k in a})
    try:
        return SweepSpec(
            path=path.resolve(),
            name=str(raw["name"]),
            base=base,
            arms=arms,
            seeds=list(seeds),
            metrics=list(metrics),
            axes=list(axes),
            overrides=dict(overrides),
            diagnostics_every=int(raw.get("diagnostics_every", 0)),
            max_grad_norm=float(raw.get("max_grad_norm", 1e6)),
            stability_demo=bool(raw.get("stability_demo", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _text(value: Any) -> str:
    """A value as LightningCLI reads it on the command line (JSON for lists and mappings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
