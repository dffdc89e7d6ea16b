"""Sweep specs: arms, seeds, and bad specs refused before any run starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lit_d2l.cli.main import main
from lit_d2l.errors import ConfigError
from lit_d2l.sweeps.arm_values import sortable, unique_short_names
from lit_d2l.sweeps.spec import load_spec
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


@pytest.mark.parametrize(("overrides", "tested"), [("", False), ("overrides: {test_after_fit: true}\n", True)])
def test_arms_are_not_tested_even_where_the_base_config_tests_unless_the_spec_says_so(
    tmp_path: Path, overrides: str, tested: bool
) -> None:
    """The test split is used once, on the arm report --select picks (D2L 3.6.3), not to compare arms."""
    from lit_d2l.fit.parse import parse_fit

    base = REPO / "experiments" / "linear_regression.yaml"
    assert "test_after_fit: true" in base.read_text()
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: t\nbase: {base}\ngrid: {{model.l2: [0.0, 3.0]}}\n{overrides}")
    spec = load_spec(path)
    for arm in spec.arms:
        assert parse_fit([*spec.fit_args(arm, 0), "--trainer.logger", "false"]).config.test_after_fit is tested


@pytest.mark.parametrize("name", sorted(p.name for p in ABLATIONS.glob("*.yaml")))
def test_another_seed_s_config_set_on_the_first_s_is_the_config_its_arguments_parse_to(name: str) -> None:
    """A sweep parses each arm once: its other seeds' configs are the first's with the seeds set."""
    from lit_d2l.fit.parse import fit_parser, with_values
    from lit_d2l.sweeps.spec import SEED_KEYS

    spec, parser = load_spec(ABLATIONS / name), fit_parser()
    for arm in spec.arms[:2]:
        first = parser.parse_args(spec.fit_args(arm, spec.seeds[0]))
        for seed in (spec.seeds[0] + 1, 12345):
            derived = with_values(first, dict.fromkeys(SEED_KEYS, seed))
            assert derived == parser.parse_args(spec.fit_args(arm, seed))
            assert derived.data.init_args.seed == derived.seed_everything == seed
        assert first.seed_everything == spec.seeds[0]  # a copy: the first is unchanged


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
    assert errors[0].startswith(f"lit-d2l: error: {spec}, arm "), errors[0]  # which spec, which arm
    assert client.get_experiment_by_name("never-started") is None


def test_a_bad_override_names_the_spec_and_its_overrides(tmp_path, tracking_uri, client, capsys) -> None:
    spec = write_spec(
        tmp_path, "name: never-started\nbase: BASE\ngrid: {model.lr: [0.1, 0.2]}\noverrides: {trainer.max_epoch: 1}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert err == (
        f"lit-d2l: error: {spec}, overrides: unrecognized arguments: --trainer.max_epoch 1; "
        "did you mean --trainer.max_epochs?"
    )
    assert client.get_experiment_by_name("never-started") is None
    # The overrides need a value the grid gives (StepLR's step_size): a bad one is the arm's, not the overrides'.
    spec.write_text(
        spec.read_text()
        .replace("{model.lr: [0.1, 0.2]}", "{lr_scheduler.step_size: [0, 1]}")
        .replace("{trainer.max_epoch: 1}", "{lr_scheduler: StepLR}")
    )
    with pytest.raises(SystemExit):
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lit-d2l: error: {spec}, arm lr_scheduler.step_size=0: lr_scheduler: ") and "divides" in err


@pytest.mark.slow
def test_dry_run_lists_arms_and_records_nothing(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(ABLATIONS / "initialization.yaml"), "--dry-run"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "45 arms x 2 seeds = 90 runs" in out
    assert "model.init=kaiming;model.activation=tanh;model.depth=30" in out


@pytest.mark.parametrize(
    "values",
    [
        "[1, 1.0, 1e0]",
        "[0.01, 1.0e-2]",
        "[1e-1, 0.1]",  # 1e-1 is text to YAML 1.1, the float 0.1 to the fit
        "[0.001, 1e-3]",
        "['3', 3]",
        "[1_000, 1000.0]",
        "[[16, 16], [16.0, 16]]",
        "[.inf, inf]",
    ],
)
def test_values_equal_as_numbers_are_one_value(tmp_path: Path, values: str) -> None:
    """``1``, ``1.0`` and ``1e0`` (which YAML 1.1 reads as text) all reach the fit as 1.0: one arm, not three."""
    with pytest.raises(ConfigError, match=r"grid key 'model.lr' lists one value twice \(.+ and .+ are equal\)") as e:
        load_spec(write_spec(tmp_path, f"name: t\nbase: BASE\ngrid: {{model.lr: {values}}}\n"))
    assert "\n" not in str(e.value)


def test_explicit_arms_equal_as_numbers_are_refused(tmp_path: Path) -> None:
    text = "name: t\nbase: BASE\narms: [{model.lr: 1, model.l2: 0}, {model.l2: 0.0, model.lr: 1e0}]\n"
    with pytest.raises(ConfigError, match=r"two arms have the same settings \(model.lr=1;model.l2=0 and "):
        load_spec(write_spec(tmp_path, text))


def test_values_that_differ_are_kept(tmp_path: Path) -> None:
    text = "name: t\nbase: BASE\ngrid: {model.lr: [1, 1.5, '1/2', true, 'one', [1], 0.1]}\n"
    assert len(load_spec(write_spec(tmp_path, text)).arms) == 7


def huge_spec(folder: Path, keys: int, values: int, seeds: int = 1) -> Path:
    """``keys`` grid keys of ``values`` values each: values ** keys arms in a small file."""
    grid = "".join(f"  {key}: [{', '.join(str(v + 1) for v in range(values))}]\n" for key in ALL_KEYS[:keys])
    folder.mkdir(exist_ok=True)
    return write_spec(folder, f"name: huge\nbase: BASE\nseeds: {list(range(seeds))}\ngrid:\n{grid}")


ALL_KEYS = ["trainer.max_epochs", "data.num_train", "data.batch_size"]
CAPPED = "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "


def test_a_billion_arms_are_refused_from_their_counts_in_little_memory(tmp_path: Path) -> None:
    """3 keys x 1,000 values (a 20 KB file) once raised MemoryError: now the counts are refused, no arm made.
    In a process capped at 2 GB of address space, so that a regression fails instead of taking the machine."""
    spec = huge_spec(tmp_path, keys=3, values=1000, seeds=3)
    assert spec.stat().st_size < 25_000
    code = CAPPED + (
        "import tracemalloc; tracemalloc.start(); from lit_d2l.sweeps.spec import load_spec; "
        "from lit_d2l.errors import ConfigError\ntry: load_spec(sys.argv[1])\n"
        "except ConfigError as e: print(e); print(tracemalloc.get_traced_memory()[1])"
    )
    done = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    message, peak = done.stdout.splitlines()
    assert message == (
        f"{spec}: 1,000,000,000 arms x 3 seeds = 3,000,000,000 runs, more than the limit of 10,000;"
        " sweep fewer values, or pass --max-runs 3000000000 to run them all"
    )
    assert int(peak) < 20e6  # bytes: the spec's values, never its arms


def test_the_run_limit_counts_seeds_and_can_be_raised(tmp_path: Path) -> None:
    spec = huge_spec(tmp_path, keys=2, values=80, seeds=2)  # 6,400 arms x 2 seeds = 12,800 runs
    with pytest.raises(ConfigError, match=r"6,400 arms x 2 seeds = 12,800 runs, more than the limit of 10,000"):
        load_spec(spec)
    assert len(load_spec(spec, max_runs=12_800).pairs()) == 12_800


@pytest.mark.slow
def test_ablate_and_its_dry_run_refuse_a_huge_grid_in_one_line(tmp_path: Path) -> None:
    """The CLI as a user runs it, capped at 2 GB: 10^6 arms once printed 1,000,005 dry-run lines, 10^9 ran out
    of memory."""
    million, billion = huge_spec(tmp_path / "m", keys=2, values=1000), huge_spec(tmp_path / "b", keys=3, values=1000)
    for spec, runs, extra in [(million, "1,000,000", ["--dry-run"]), (billion, "1,000,000,000", [])]:
        done = subprocess.run(
            [sys.executable, "-c", CAPPED + "from lit_d2l.cli.main import main; main()", "ablate", str(spec), *extra],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/never.db"},
        )
        assert done.returncode == 2 and not done.stdout, done.stderr[-2000:]
        assert re.fullmatch(
            rf"lit-d2l: error: {spec}: .* = {runs} runs, more than the limit of 10,000; sweep fewer values,"
            rf" or pass --max-runs {runs.replace(',', '')} to run them all\n",
            done.stderr,
        ), done.stderr[-2000:]
    assert not (tmp_path / "never.db").exists()


def test_a_small_limit_refuses_and_a_large_one_lets_the_dry_run_list(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, "name: t\nbase: BASE\ngrid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--dry-run", "--max-runs", "3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "pass --max-runs 4 to run them all" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--dry-run", "--max-runs", "4"])
    assert exit_info.value.code == 0 and "2 arms x 2 seeds = 4 runs" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["spec", "base"])
def test_a_spec_or_base_that_is_not_utf8_is_one_line(which: str, tmp_path: Path, tracking_uri, client, capsys) -> None:
    """A Latin-1 comment in the spec, or in the base config it names: one line naming the file, exit 2."""
    base = tmp_path / "base.yaml"
    latin1 = b"# r\xe9sum\xe9\n" if which == "base" else b""
    base.write_bytes(latin1 + (REPO / "experiments" / "weight_decay.yaml").read_bytes())
    spec = tmp_path / "spec.yaml"
    comment = b"# caf\xe9\n" if which == "spec" else b""
    spec.write_bytes(b"name: not-utf8\nbase: base.yaml\n" + comment + b"grid: {model.l2: [0.0]}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    bad = spec if which == "spec" else base
    assert err.startswith(f"lit-d2l: error: {bad}: not UTF-8 text (byte 0xe9 at offset "), err
    assert client.get_experiment_by_name("not-utf8") is None


def test_a_description_is_kept_as_one_paragraph_and_shown_above_the_verdict(tmp_path: Path) -> None:
    from lit_d2l.sweeps.reports.verdict import sweep_verdict

    head = "name: t\nbase: BASE\n"
    path = write_spec(tmp_path, head + "grid: {model.l2: [0.0, 3.0]}\ndescription: |\n  Weight decay,\n  D2L 3.7.\n")
    spec = load_spec(path)
    assert spec.description == "Weight decay, D2L 3.7."
    assert (
        sweep_verdict([], ["val/loss"], ["model.l2"], spec.description)
        .markdown()
        .startswith(
            "## Verdict: no arm is best on val/loss: no run has finished yet\n\n"
            "Expected (the spec's description): Weight decay, D2L 3.7.\n"
        )
    )
    with pytest.raises(ConfigError, match="description must be one paragraph of text"):
        load_spec(write_spec(tmp_path, head + "grid: {model.l2: [0.0]}\ndescription: [not, text]\n"))


def test_a_number_in_e_notation_is_a_number_as_the_fit_reads_it(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1e-3`` (no dot) as text; a spec reads it as the fit does, a float, so that its arms name,
    sort and plot as numbers (as text, ``1e-1`` sorted before ``1e-3``). Quoted, it stays text."""
    spec = load_spec(
        write_spec(tmp_path, "name: t\nbase: BASE\ngrid: {model.lr: [1e-1, 1e-3, 1E-2], data.name: ['1e5']}\n")
    )
    values = [dict(arm.settings) for arm in spec.arms]
    assert [v["model.lr"] for v in values] == [0.1, 0.001, 0.01] and {v["data.name"] for v in values} == {"1e5"}
    assert unique_short_names([{"model.lr": v["model.lr"]} for v in values]) == ["lr=0.1", "lr=0.001", "lr=0.01"]
    assert sorted((v["model.lr"] for v in values), key=sortable) == [0.001, 0.01, 0.1]
