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
        # the name becomes a folder under reports/ and an MLflow experiment
        ("name: ../../x\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "name '../../x' is not a safe name"),
        ("name: a/b\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "not a safe name"),
        ("name: .hidden\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "not a safe name"),
        ("name: ''\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "not a safe name"),
        ("name: [a]\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "not a safe name"),
        ("name: a b\nbase: BASE\ngrid: {model.l2: [0.0]}\n", "not a safe name"),
        # seeds
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: []\n", "seeds must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: 3\n", "seeds must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [1.5]\n", "seeds must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [true]\n", "seeds must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [-1]\n", "integers from 0 to 4294967295"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [4294967296]\n", "from 0 to 4294967295"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nseeds: [0, 1, 0]\n", "seeds must be distinct; repeated: 0"),
        # metrics
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmetrics: val/loss\n", "metrics must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmetrics: []\n", "metrics must be a non-empty list"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmetrics: [1]\n", "metrics must be a non-empty list"),
        # grid values and keys
        ("name: t\nbase: BASE\ngrid: {model.l2: {a: 1}}\n", "non-empty list"),
        ("name: t\nbase: BASE\ngrid: {lr: [0.1]}\n", "grid: 'lr' is not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {tracking.uri: [x]}\n", "'tracking.uri' is not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {config: [x.yaml]}\n", "'config' is not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {model.l2 x: [1]}\n", "'model.l2 x' is not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {1: [2]}\n", "grid: 1 is not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {seed_everything: [1]}\n", "not a dotted config key"),
        ("name: t\nbase: BASE\ngrid: {data.seed: [1, 2]}\n", "data.seed is set from seeds:"),
        ("name: t\nbase: BASE\narms: [{model..l2: 1}]\n", "arms: 'model..l2' is not a dotted config key"),
        ("name: t\nbase: BASE\narms: [{model.l2: 1}]\noverrides: {tracking.experiment: x}\n", "overrides: 'track"),
        ("name: t\nbase: BASE\narms: [{model.l2: 1}]\ngrid: {model.l2: [0.0]}\n", "model.l2 is both in grid and"),
        ("name: t\nbase: BASE\narms: [{model.l2: 1, model.lr: 2}, {model.lr: 2, model.l2: 1}]\n", "same settings"),
        # axes and the other settings
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\naxes: [model.lr]\n", "axes must be a list of swept keys"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\naxes: model.l2\n", "axes must be a list of swept keys"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\ndiagnostics_every: -1\n", "diagnostics_every must be"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\ndiagnostics_every: 2.5\n", "diagnostics_every must be"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmax_grad_norm: 0\n", "max_grad_norm must be a number > 0"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmax_grad_norm: .nan\n", "max_grad_norm must be"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nmax_grad_norm: big\n", "max_grad_norm must be"),
        ("name: t\nbase: BASE\ngrid: {model.l2: [0.0]}\nstability_demo: 'no'\n", "stability_demo must be true"),
    ],
)
def test_bad_specs_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_spec(write_spec(tmp_path, text))
    assert "\n" not in str(error.value)


def test_list_and_mapping_values_make_readable_canonical_arm_keys(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            """
name: 2024
base: BASE
grid: {model.hidden_sizes: [[16], [16, 16]]}
arms: [{trainer.callbacks: {b: 1, a: [2]}}]
max_grad_norm: 1.0e4
""",
        )
    )
    assert spec.name == "2024" and spec.max_grad_norm == 1e4  # YAML 1.1 reads 1.0e4 as a string
    assert [arm.key for arm in spec.arms] == [
        'trainer.callbacks={"a": [2], "b": 1};model.hidden_sizes=[16]',
        'trainer.callbacks={"a": [2], "b": 1};model.hidden_sizes=[16, 16]',
    ]
    args = spec.fit_args(spec.arms[1], 0)
    assert args[args.index("--model.hidden_sizes") + 1] == "[16, 16]"
    assert spec.axes == ["model.hidden_sizes"]


def test_a_hostile_name_is_one_line_and_records_nothing(tmp_path: Path, tracking_uri, client, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: ../../escaped\nbase: {REPO / 'experiments' / 'weight_decay.yaml'}\ngrid: {{model.l2: [0.0]}}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("lit-d2l: error:") and "not a safe name" in line
    ]
    assert client.get_experiment_by_name("../../escaped") is None
    assert not (tmp_path.parent.parent / "escaped").exists()


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


@pytest.mark.slow
def test_dry_run_lists_arms_and_records_nothing(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(ABLATIONS / "initialization.yaml"), "--dry-run"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "45 arms x 2 seeds = 90 runs" in out
    assert "model.init=kaiming;model.activation=tanh;model.depth=30" in out
