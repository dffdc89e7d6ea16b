"""Help as a new user meets it: short, naming lit-d2l's models and DataModules, and short class names."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields

import pytest

from lit_d2l.cli.commands import HANDLERS
from lit_d2l.cli.usage import TRACKING_KEYS
from lit_d2l.fit import catalog
from lit_d2l.tracking.settings import TrackingSettings
from tests.conftest import REPO
from tests.test_cli import assert_one_error_line, run_main

NO_TORCH = """
import sys
from lit_d2l.cli.main import run
assert run(sys.argv[1:]) == 0
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "lightning", "mlflow"})
assert not heavy, f"help imported {heavy}"
"""


def test_top_help_lists_commands_models_and_datamodules(capsys) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for command in HANDLERS:
        assert re.search(rf"\n +{re.escape(command)}\s", out), command
    for entry in [*catalog.MODELS, *catalog.DATAMODULES]:
        assert any(line.split() == [entry.name, *entry.summary.split()] for line in out.splitlines()), entry
    assert "LinearRegressionScratch" in out and "FashionMNIST" in out


def test_fit_help_is_short_and_names_the_lit_d2l_sections(capsys) -> None:
    code, out, _ = run_main(["fit", "--config", "experiments/linear_regression.yaml", "--help"], capsys)
    assert code == 0
    assert len(out.splitlines()) < 60, "not Lightning's 500 lines"
    for option in ("--model MODEL", "--model.help", "--data DATAMODULE", "--data.help", "--trainer.KEY", "--tracking"):
        assert option in out, option
    for option in ("--optimizer", "--lr_scheduler", "--ckpt_path", "--test_after_fit", "--print_config", "--help full"):
        assert option in out, option
    assert "SoftmaxRegressionScratch" in out and "SyntheticRegressionData" in out
    assert "--trainer.gradient_clip_algorithm" not in out


def test_test_help_says_where_the_weights_come_from(capsys) -> None:
    code, out, _ = run_main(["test", "-h"], capsys)
    assert code == 0
    assert "lit-d2l test --run RUN_ID" in out and "--ckpt_path FILE" in out
    assert "--test_after_fit" not in out


def test_help_full_is_lightning_clis_with_lit_d2ls_classes(capsys) -> None:
    code, out, _ = run_main(["fit", "--help", "full"], capsys)
    assert code == 0
    assert "--trainer.gradient_clip_algorithm" in out
    assert "lit_d2l.models.LinearRegressionScratch" in out, "the models are known subclasses"


def test_the_tracking_keys_in_the_help_are_the_settings() -> None:
    assert list(TRACKING_KEYS) == [f.name for f in fields(TrackingSettings)]


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["test", "--help"]])
def test_help_answers_without_importing_torch_lightning_or_mlflow(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_short_class_names_for_model_and_data(capsys) -> None:
    args = ["fit", "--model", "LinearRegressionScratch", "--data", "SyntheticRegressionData", "--print_config"]
    code, out, _ = run_main(args, capsys)
    assert code == 0
    assert "class_path: lit_d2l.models.LinearRegressionScratch" in out
    assert "class_path: lit_d2l.data.SyntheticRegressionData" in out
    code, out, _ = run_main(["fit", "--model.help", "LinearRegressionScratch"], capsys)
    assert code == 0 and "--model.sigma" in out
    code, out, _ = run_main(["fit", "--data.help", "FashionMNIST"], capsys)
    assert code == 0 and "--data.val_size" in out


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--model", "Bogus"], "model"),
        (["--data.help", "Bogus"], "data.help"),
        (["--config", "model: {class_path: lit_d2l.models.Bogus}"], "model"),  # as a config file gives it
    ],
)
def test_an_unknown_class_name_lists_the_known_ones(args: list[str], key: str, capsys) -> None:
    code, _, err = run_main(["fit", *args], capsys)
    assert_one_error_line(code, err, rf"^lit-d2l: error: {key}: no class [\w.]*Bogus; expected one of \w+, ")
    names = catalog.MODELS if key == "model" else catalog.DATAMODULES
    assert all(entry.name in err for entry in names)


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["--model", "LeNett"], "model: no class LeNett; did you mean LeNet?"),
        (["--model", "tests.sweeps.packs.own_models.ItemMlp"], "did you mean tests.sweeps.packs.own_models.ItemMLP?"),
        (["--config", "model: {class_path: lit_d2l.models.LeNett}"], "did you mean lit_d2l.models.LeNet?"),
        (["--optimizer", "Adamm"], "optimizer: no class Adamm; did you mean Adam?"),
        (["--lr_scheduler", "StepLr"], "lr_scheduler: no class StepLr; did you mean StepLR?"),
    ],
)
def test_a_misspelt_class_name_says_the_class_it_likely_meant(args: list[str], meant: str, capsys) -> None:
    code, _, err = run_main(["fit", "--config", str(REPO / "experiments" / "mlp.yaml"), *args], capsys)
    assert_one_error_line(code, err, rf"^lit-d2l: error: .*{re.escape(meant)}$")


REGISTRATION = """
import sys
from lit_d2l.fit.run import build
args = ["--model", "LinearRegressionScratch", "--data", "SyntheticRegressionData", "--print_config"]
assert build("fit", args) is None
assert build("fit", ["--model.help", "MLP"]) is None
assert build("fit", ["--data.help", "FashionMNIST"]) is None
"""


@pytest.mark.slow
def test_short_class_names_work_in_a_fresh_process() -> None:
    """No other import has registered the classes: lit-d2l's runner does."""
    result = subprocess.run([sys.executable, "-c", REGISTRATION], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lit_d2l.models.LinearRegressionScratch" in result.stdout
    assert "--model.hidden_sizes" in result.stdout and "--data.val_size" in result.stdout
