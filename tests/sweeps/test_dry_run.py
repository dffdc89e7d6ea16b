"""``ablate --dry-run`` names, per arm, the model class and the optimizer a run would train with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_d2l.errors import UserError
from lit_d2l.sweeps.dry_run import dry_run
from lit_d2l.sweeps.spec import load_spec

OWN_MODELS = '''
import torch

from lit_d2l.models import MLP


class AdamNet(MLP):
    """A researcher's MLP whose own default optimizer is Adam."""

    def default_optimizer(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
'''


def listed(tmp_path: Path, model: str, arms: list[dict], lines: list[str] | None = None) -> list[str]:
    base = tmp_path / f"{model}.yaml"
    config = {
        "trainer": {"max_epochs": 1, "accelerator": "cpu"},
        "model": {"class_path": model, "init_args": {"hidden_sizes": [8]}},
        "data": {"class_path": "lit_d2l.data.Digits", "init_args": {"batch_size": 16}},
    }
    base.write_text(yaml.safe_dump(config))
    spec = tmp_path / f"{model}-spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "dry", "base": base.name, "arms": arms}, sort_keys=False))
    lines = [] if lines is None else lines
    dry_run(load_spec(spec), echo=lines.append)
    return lines


def test_each_arm_names_its_model_class_and_the_optimizer_it_resolved(tmp_path: Path, monkeypatch) -> None:
    schedule = {"optimizer": "SGD", "lr_scheduler": "StepLR", "lr_scheduler.step_size": 2}
    lines = listed(tmp_path, "lit_d2l.models.MLP", [{"model.lr": 0.1}, {"optimizer": "Adam"}, schedule])
    assert "  model.lr=0.1: MLP, SGD" in lines  # the model's own default
    assert "  optimizer=Adam: MLP, Adam" in lines  # the spec's --optimizer
    assert "  optimizer=SGD;lr_scheduler=StepLR;lr_scheduler.step_size=2: MLP, SGD, StepLR" in lines

    (tmp_path / "own_models_dry.py").write_text(OWN_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = listed(tmp_path, "own_models_dry.AdamNet", [{"model.lr": 0.01}])
    assert "  model.lr=0.01: own_models_dry.AdamNet, Adam" in lines  # the user's class, found where it lives


def test_arms_that_vary_the_models_sgd_settings_under_another_optimizer_are_refused(tmp_path: Path) -> None:
    """``model.lr`` is the model's own SGD's: with ``optimizer: Adam`` every arm would train alike."""
    arms = [{"optimizer": "Adam", "model.lr": lr} for lr in (0.1, 0.01)]
    with pytest.raises(UserError, match=r"^model\.lr varies between arms, but they train with optimizer Adam.*"):
        listed(tmp_path, "lit_d2l.models.MLP", arms)
    lines = listed(tmp_path, "lit_d2l.models.MLP", [{"optimizer": "Adam", "optimizer.lr": lr} for lr in (0.1, 0.01)])
    assert any("1 pack of 2 runs" in line for line in lines), lines


def test_the_settings_that_set_packs_apart_are_named(tmp_path: Path) -> None:
    """Four arms, two widths x two learning rates: two packs (one per width), and the line says why."""
    arms = [{"model.hidden_sizes": [width], "model.lr": lr} for width in (8, 16) for lr in (0.1, 0.2)]
    lines = listed(tmp_path, "lit_d2l.models.MLP", arms)
    assert "--pack auto: 2 packs (4 runs in all), 0 runs alone" in lines, lines
    assert any(line.startswith("  arms that differ in model.hidden_sizes train in separate packs: ") for line in lines)
    lines = listed(tmp_path, "lit_d2l.models.MLP", [{"model.lr": lr} for lr in (0.1, 0.2)])
    assert "--pack auto: 1 pack of 2 runs, 0 runs alone" in lines and not any("differ in" in line for line in lines)


def test_a_bad_arm_is_the_one_thing_said(tmp_path: Path) -> None:
    """A misspelt key in the second arm: no header or first arm listed before the error line."""
    lines: list[str] = []
    with pytest.raises(Exception, match=r"Option 'l22' is not accepted; did you mean model\.l2\?"):
        listed(tmp_path, "lit_d2l.models.MLP", [{"model.l2": 0.1}, {"model.l22": 0.1}], lines)
    assert lines == []


@pytest.mark.slow  # a sweep of two fits
def test_data_that_cannot_be_fetched_fails_the_sweep_in_one_line_and_the_dry_run_fetches_nothing(
    tmp_path: Path, tracking_uri: str, capsys
) -> None:
    """Fashion-MNIST from a mirror that refuses (port 9 on this machine): the dry run plans without it and writes
    nothing; the sweep says so once, before any run, as ``fit`` does (it failed every arm, one by one)."""
    from lit_d2l.cli.main import main

    data_dir = tmp_path / "fashion"
    base = tmp_path / "fashion.yaml"
    data = {"data_dir": str(data_dir), "base_url": "http://127.0.0.1:9/", "download_timeout": 5}
    config = {
        "trainer": {"max_epochs": 1},
        "model": {"class_path": "lit_d2l.models.MLP", "init_args": {"hidden_sizes": [8]}},
        "data": {"class_path": "lit_d2l.data.FashionMNIST", "init_args": data},
    }
    base.write_text(yaml.safe_dump(config))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "offline", "base": base.name, "grid": {"model.lr": [0.1, 0.2]}}))
    lines: list[str] = []
    dry_run(load_spec(spec), echo=lines.append)
    assert lines[0] == f"{lines[0].split(':')[0]}: 2 arms x 1 seed = 2 runs"
    assert "pack 1: 2 runs" in "\n".join(lines)
    assert not data_dir.exists(), "a dry run downloads nothing"
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert (
        err.startswith("lit-d2l: error: cannot download http://127.0.0.1:9/") and "Fashion-MNIST is not complete" in err
    )
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri).get_experiment_by_name("offline") is None, "no run recorded"
