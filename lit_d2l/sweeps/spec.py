"""Sweep specs: a base config, a grid and/or explicit arms, seeds and the metrics to summarise.

```yaml
name: overfitting                 # MLflow experiment and reports/ folder: letters, digits, - _ .
base: ../polynomial.yaml          # a `lit-d2l fit` config, relative to this file
grid:                             # dotted keys -> values; every combination is an arm
  data.degree: [2, 4, 20]
  data.num_train: [2, 10, 100, 1000]
arms:                             # optional explicit arms, combined with every grid point
  - {model.init: normal, model.init_std: 0.01}
overrides: {trainer.max_epochs: 400}   # applied to every arm
seeds: [0, 1, 2]                  # each arm runs once per seed (seed_everything and data.seed)
metrics: [train/loss_epoch, val/loss]  # summarised as mean ± std over seeds
axes: [data.degree, data.num_train]    # swept keys to plot along (default: the grid keys)
diagnostics_every: 0              # > 0: per-layer gradient/weight/activation stats every N steps
max_grad_norm: 1.0e6              # divergence bound
stability_demo: false             # log D2L 5.4's numerical-stability figures on the parent run
```
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from lit_d2l.errors import ConfigError, not_utf8, require
from lit_d2l.sweeps.progress import plural

_KNOWN_KEYS = {
    "name",
    "description",
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
#: A description is stored as an MLflow param, whose values MLflow caps at 6,000 characters.
MAX_DESCRIPTION = 6000
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
# What an arm may set: the run's own config, never where it is recorded (tracking.*) or another --config.
_SETTING_KEY = re.compile(
    r"(model|data|trainer|optimizer|lr_scheduler)(\.[A-Za-z_][A-Za-z0-9_]*)+|optimizer|lr_scheduler|test_after_fit|log_graph"
)
_MAX_SEED = 2**32 - 1  # seed_everything's bound (numpy's uint32)
#: The most arm × seed runs a spec may make unless ``lit-d2l ablate --max-runs N`` allows more. Every run
#: is an MLflow run that takes about 0.1-0.35 s of store work even for a tiny model (1,010 packed runs of
#: linear regression: 6 min on 2 cores), so 10,000 runs are already ~1 h of bookkeeping; a grid that
#: goes past it is far more often a typo (a list pasted into every key) than a plan.
MAX_RUNS = 10_000
#: ``lit-d2l ablate --pack``: train packable arms side by side (auto), or every pair alone (off).
PACK_MODES = ("auto", "off")


def is_setting_key(key: str) -> bool:
    """Whether ``key`` is a run setting a spec may give (``model.lr``, ``optimizer``, ``test_after_fit``, ...)."""
    return _SETTING_KEY.fullmatch(key) is not None


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
    description: str = ""  # one paragraph on what the sweep studies, shown above its verdict

    @property
    def sweep_id(self) -> str:
        """Stable for the same spec and base config: re-running it resumes the same sweep."""
        digest = hashlib.sha256(self.path.read_bytes() + self.base.read_bytes()).hexdigest()[:10]
        return f"{self.name}-{digest}"

    def pairs(self) -> list[tuple[Arm, int]]:
        return [(arm, seed) for arm in self.arms for seed in self.seeds]

    def size(self) -> str:
        """``4 arms x 2 seeds = 8 runs``."""
        runs = plural(len(self.pairs()), "run")
        return f"{plural(len(self.arms), 'arm')} x {plural(len(self.seeds), 'seed')} = {runs}"

    def fit_args(self, arm: Arm, seed: int) -> list[str]:
        """The ``lit-d2l fit`` arguments of one arm and seed: base config, overrides, arm, seed. Arms are compared on
        validation and not tested (unless the overrides say so): the test split is used once, on the arm that
        ``lit-d2l report --select --test`` picks (D2L 3.6.3)."""
        args = ["--config", str(self.base), "--test_after_fit", "false"]
        for key, value in self.settings(arm, seed).items():
            args += [f"--{key}", _text(value)]
        return args

    def settings(self, arm: Arm, seed: int) -> dict[str, Any]:
        """The settings of one arm and seed the spec gives: its overrides, then the arm's values, then the seed."""
        return {**self.overrides, **dict(arm.settings), **dict.fromkeys(SEED_KEYS, seed)}


class SpecLoader(yaml.SafeLoader):
    """YAML as PyYAML's safe loader reads it, but ``1e-3`` is the float 0.001, as YAML 1.2 and the command line
    read it (YAML 1.1 wants a dot: ``1.0e-3``), so a learning rate written so sorts, plots and names as a number."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_spec(path: str | Path, max_runs: int = MAX_RUNS) -> SweepSpec:
    """Read and validate a spec; every problem is a :class:`ConfigError` naming the file. A spec of more
    than ``max_runs`` arm × seed runs is refused before its arms are made."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=SpecLoader)  # a SafeLoader
    except OSError as exc:
        raise ConfigError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    require(isinstance(raw, dict), f"{path}: a sweep spec is a mapping with name, base, grid/arms, seeds")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    require(not unknown, f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for required in ("name", "base"):
        require(required in raw, f"{path}: missing {required!r}")
    name = _check_name(path, raw["name"])
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
    for key, values in grid.items():
        _check_distinct(path, key, values)
    for arm in explicit:
        require(isinstance(arm, dict) and arm, f"{path}: each arm must be a non-empty mapping, got {arm!r}")
    overrides = raw.get("overrides") or {}
    require(isinstance(overrides, dict), f"{path}: overrides must map dotted keys to values")
    for where, keys in [("grid", grid), *(("arms", arm) for arm in explicit), ("overrides", overrides)]:
        for key in keys:
            _check_setting_key(path, where, key)
    both = sorted({k for arm in explicit for k in arm} & set(grid))
    require(not both, f"{path}: {', '.join(both)} is both in grid and in arms; sweep each key in one place")

    seeds = _check_seeds(path, raw.get("seeds", [0]))
    _check_size(path, len(explicit or [{}]) * math.prod(len(values) for values in grid.values()), len(seeds), max_runs)
    metrics = raw.get("metrics", ["train/loss_epoch", "val/loss"])
    require(
        isinstance(metrics, list) and metrics and all(isinstance(m, str) and m for m in metrics),
        f"{path}: metrics must be a non-empty list of metric names, got {metrics!r}",
    )

    grid_points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]
    arms = [Arm(tuple({**extra, **point}.items())) for extra in (explicit or [{}]) for point in grid_points]
    _check_distinct_arms(path, arms)
    in_arms = sorted({k for a in explicit for k in a})
    swept = [*grid, *in_arms]
    axes = raw.get("axes") or list(grid) or in_arms
    require(
        isinstance(axes, list) and all(isinstance(a, str) and a in swept for a in axes),
        f"{path}: axes must be a list of swept keys ({', '.join(swept)}), got {axes!r}",
    )
    diagnostics_every, max_grad_norm, stability_demo = _check_flags(path, raw)
    description = raw.get("description") or ""
    require(
        isinstance(description, str) and len(description) <= MAX_DESCRIPTION,
        f"{path}: description must be one paragraph of text (at most {MAX_DESCRIPTION} characters)",
    )
    return SweepSpec(
        path=path.resolve(),
        name=name,
        base=base,
        arms=arms,
        seeds=list(seeds),
        metrics=list(metrics),
        axes=list(dict.fromkeys(axes)),
        overrides=dict(overrides),
        diagnostics_every=diagnostics_every,
        max_grad_norm=max_grad_norm,
        stability_demo=stability_demo,
        description=" ".join(description.split()),
    )


def canonical(value: Any) -> str:
    """One string per value, equal for equal values (lists and mappings too): for grouping and comparing."""
    return json.dumps(value, sort_keys=True)


def same_value(value: Any) -> tuple:
    """A value as the fit reads it, for telling equal settings apart: numbers by their value (``1``, ``1.0``
    and ``1e0``, which YAML 1.1 reads as text, are one setting), lists and mappings element by element."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, (int, float)):
        return ("number", Fraction(value) if math.isfinite(value) else repr(float(value)))
    if isinstance(value, str):
        try:  # text the command line reads as a number: "1e0", "1_000", "nan"; "1e-1" is the float 0.1
            number = float(value)
        except ValueError:
            return ("text", value)
        if not math.isfinite(number):
            return ("number", repr(number))
        digits = value.strip().replace("_", "")
        return ("number", Fraction(int(digits)) if digits.lstrip("+-").isdigit() else Fraction(number))
    if isinstance(value, list):
        return ("list", tuple(same_value(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((k, same_value(v)) for k, v in value.items()))
    return ("other", canonical(value))


def _check_distinct(path: Path, key: str, values: list[Any]) -> None:
    """A grid key lists each value once."""
    seen: dict[tuple, Any] = {}
    for value in values:
        same = same_value(value)
        if same in seen:
            raise ConfigError(
                f"{path}: grid key {key!r} lists one value twice ({_text(seen[same])} and {_text(value)} are equal);"
                " list each value once"
            )
        seen[same] = value


def _check_distinct_arms(path: Path, arms: list[Arm]) -> None:
    """No two arms (explicit arms × grid points) set the same values, or have the same name."""
    seen: dict[Any, Arm] = {}
    for arm in arms:
        for same in (frozenset((k, same_value(v)) for k, v in arm.settings), arm.key):
            if same in seen:
                raise ConfigError(
                    f"{path}: two arms have the same settings ({seen[same].key} and {arm.key}); give each arm once"
                )
            seen[same] = arm


def _check_size(path: Path, arms: int, seeds: int, max_runs: int) -> None:
    """Refuse a sweep of more than ``max_runs`` runs from its counts, before any arm is made."""
    runs = arms * seeds
    require(
        runs <= max_runs,
        f"{path}: {arms:,} arms x {seeds:,} seed{'' if seeds == 1 else 's'} = {runs:,} runs, more than the limit"
        f" of {max_runs:,}; sweep fewer values, or pass --max-runs {runs} to run them all",
    )


def _check_name(path: Path, name: Any) -> str:
    """The sweep name names an MLflow experiment and a folder under ``reports/``: letters, digits, ``-_.``."""
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    require(
        isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None,
        f"{path}: name {name!r} is not a safe name: use up to 100 letters, digits, '-', '_' or '.',"
        " not starting with '.' (it names a folder under reports/)",
    )
    return name


def _check_setting_key(path: Path, where: str, key: Any) -> None:
    """Arms and overrides set config keys such as ``model.lr``; seeds come from ``seeds:``."""
    require(
        isinstance(key, str) and is_setting_key(key),
        f"{path}: {where}: {key!r} is not a dotted config key such as model.lr, data.batch_size or"
        " trainer.max_epochs (sections: model, data, trainer, optimizer, lr_scheduler; or test_after_fit)",
    )
    require(key not in SEED_KEYS, f"{path}: {where}: {key} is set from seeds:, list the seeds there instead")


def _check_seeds(path: Path, seeds: Any) -> list[int]:
    """A non-empty list of distinct integers that ``seed_everything`` accepts."""
    require(
        isinstance(seeds, list)
        and len(seeds) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= _MAX_SEED for s in seeds),
        f"{path}: seeds must be a non-empty list of integers from 0 to {_MAX_SEED}, got {seeds!r}",
    )
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    require(not repeated, f"{path}: seeds must be distinct; repeated: {', '.join(map(str, repeated))}")
    return list(seeds)


def _check_flags(path: Path, raw: dict[str, Any]) -> tuple[int, float, bool]:
    """``diagnostics_every`` an integer >= 0, ``max_grad_norm`` a number > 0, ``stability_demo`` true/false."""
    every = _number(raw.get("diagnostics_every", 0), int)
    require(
        every is not None and every >= 0,
        f"{path}: diagnostics_every must be an integer >= 0 (0 = off), got {raw.get('diagnostics_every')!r}",
    )
    bound = _number(raw.get("max_grad_norm", 1e6), float)
    require(
        bound is not None and bound > 0, f"{path}: max_grad_norm must be a number > 0, got {raw.get('max_grad_norm')!r}"
    )
    demo = raw.get("stability_demo", False)
    require(isinstance(demo, bool), f"{path}: stability_demo must be true or false, got {demo!r}")
    assert every is not None and bound is not None
    return int(every), float(bound), demo


def _number(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or None; YAML 1.1 reads ``1.0e4`` (no exponent sign) as a string, so strings count."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if kind is float or number == float(value) else None


def _text(value: Any) -> str:
    """A value as LightningCLI reads it on the command line (JSON for lists and mappings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, sort_keys=isinstance(value, dict))
