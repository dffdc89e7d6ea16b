"""Sweep specs: arms, seeds, and bad specs refused before any run starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lit_d2l.ablation.spec import load_spec
from lit_d2l.cli import main
from lit_d2l.errors import ConfigError
from tests.conftest import REPO

ABLATIONS = REPO / "experiments" / "ablations"


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("BASE", str(REPO / "experiments" / "weight_decay.yaml")))
    return path


def test_grid_and_arms_combine_and_seeds_multiply(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            """
name: t
base: BASE
arms: [{model.lr: 0.01}, {model.lr: 0.02}]
grid: {model.l2: [0.0, 3.0], data.num_train: [10, 20]}
seeds: [0, 1, 2]
""",
        )
    )
    assert len(spec.arms) == 2 * 2 * 2
    assert len(spec.pairs()) == 8 * 3
    assert spec.arms[0].key == "model.lr=0.01;model.l2=0.0;data.num_train=10"
    args = spec.fit_args(spec.arms[0], 2)
    assert args[:2] == ["--config", str(REPO / "experiments" / "weight_decay.yaml")]
    assert args[args.index("--model.lr") : args.index("--model.lr") + 2] == ["--model.lr", "0.01"]
    assert args[args.index("--seed_everything") : args.index("--seed_everything") + 2] == ["--seed_everything", "2"]
    assert spec.axes == ["model.l2", "data.num_train"]


def test_the_sweep_id_is_stable_and_changes_with_the_spec(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "name: t\nbase: BASE\ngrid: {model.l2: [0.0, 3.0]}\n")
    first = load_spec(path).sweep_id
    assert load_spec(path).sweep_id == first
    path.write_text(path.read_text() + "seeds: [1]\n")
    assert load_spec(path).sweep_id != first


@pytest.mark.parametrize("name", sorted(p.name for p in ABLATIONS.glob("*.yaml")))
def test_shipped_suites_load(name: str) -> None:
    spec = load_spec(ABLATIONS / name)
    assert spec.arms and spec.seeds and spec.metrics


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nbogus: 1\n", "unknown key.*bogus"),
        ("name: t\nbase: BASE\ngrid: {}\n", "empty sweep"),
        ("name: t\nbase: BASE\ngrid: {model.l2: []}\n", "non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: 3}\n", "non-empty list"),
        ("name: t\nbase: nowhere.yaml\ngrid: {model.l2: [0.0]}\n", "base config 'nowhere.yaml' not found"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [a]\n", "seeds must be a non-empty list of integers"),
        ("base: BASE\ngrid: {model.l2: [0.0]}\n", "missing 'name'"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]\n", "not valid YAML"),
    ],
)
def test_bad_specs_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(write_spec(tmp_path, text))


@pytest.mark.parametrize(
    ("grid", "pattern"),
    [
        ("{model.bogus: [1]}", r"Option 'bogus' is not accepted"),
        ("{model.l2: [zero]}", r"model.*zero"),
        ("{trainer.max_epochs: [1.5]}", r"trainer\.max_epochs"),
    ],
)
def test_bad_arm_values_fail_before_any_run_starts(tmp_path, grid, pattern, tracking_uri, client, capsys) -> None:
    spec = write_spec(tmp_path, f"name: never-started\nbase: BASE\ngrid: {grid}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("lit-d2l: error:")]
    assert len(errors) == 1 and "Traceback" not in err

    assert re.search(pattern, errors[0]), errors[0]
    assert client.get_experiment_by_name("never-started") is None


def test_dry_run_lists_arms_and_records_nothing(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(ABLATIONS / "initialization.yaml"), "--dry-run"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "45 arms x 2 seeds = 90 runs" in out
    assert "model.init=kaiming;model.activation=tanh;model.depth=30" in out
