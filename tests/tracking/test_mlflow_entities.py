"""MLflow's own entities, filled in: every run's dataset input, a fit's loadable model, the Model Registry and
MLflow's system metrics."""

from __future__ import annotations

import importlib.util
import json
import threading
import time

import lightning as L
import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_d2l.cli.main import main
from lit_d2l.cli.main import run as lit_d2l
from lit_d2l.data import Digits, FashionMNIST, SyntheticRegressionData
from lit_d2l.data.fashion_mnist import BASE_URL, FILES
from lit_d2l.errors import ConfigError
from lit_d2l.fit.run import build, execute, run_configured
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking import system_metrics
from lit_d2l.tracking.datasets import dataset_of
from lit_d2l.tracking.sweeps import SweepStore
from tests.conftest import linear_fit_args, only_run
from tests.sweeps.test_sweep import spec_file
from tests.test_cli import assert_one_error_line, run_main


def dataset_input(client: MlflowClient, run_id: str):
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    return inputs[0]


def test_a_fit_records_its_dataset_and_a_model_that_loads_and_predicts_alike(
    tracking_uri, client, experiment, monkeypatch
) -> None:
    cli = build("fit", linear_fit_args(tracking_uri, experiment, "--trainer.max_epochs", "1"))
    assert cli is not None
    result = execute(cli, "fit")
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED" and result.model_uri == f"runs:/{run.info.run_id}/model"

    recorded = dataset_input(client, run.info.run_id)
    dataset = recorded.dataset
    assert dataset.name == "SyntheticRegressionData"
    assert dataset.digest == dataset_of(SyntheticRegressionData(num_test=1000)).digest, "the config's data: w, b, seed"
    assert dataset.source_type == "code" and "synthetic:SyntheticRegressionData" in dataset.source
    assert json.loads(dataset.profile) == {"train": 1000, "val": 1000, "test": 1000}
    assert "float32" in dataset.schema and {(t.key, t.value) for t in recorded.tags} == {
        ("mlflow.data.context", "training")
    }

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # where runs:/ URIs are looked up
    loaded = mlflow.pytorch.load_model(result.model_uri)
    assert type(loaded) is type(cli.model)
    X = cli.datamodule.splits["val"][0][:64]
    cli.model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(X), cli.model(X)), "the trained weights, not the initial ones"
    assert not any(key.startswith("system/") for key in run.data.metrics), "system metrics are off by default"


def test_the_digest_names_the_examples_of_every_split_not_how_they_are_served() -> None:
    def digest(**settings) -> str:
        return dataset_of(SyntheticRegressionData(num_train=40, num_val=20, **settings)).digest

    assert digest() == digest(batch_size=7, loader="dataloader", shuffle_seed=3)
    assert len({digest(), digest(seed=1), digest(noise=0.1), digest(num_folds=4, fold=1)}) == 4
    folded = dataset_of(SyntheticRegressionData(num_train=40, num_val=20, num_folds=4, fold=1))
    assert json.loads(folded.profile) == {"train": 45, "val": 15, "test": 0, "fold": 1, "num_folds": 4}


def test_real_datasets_name_their_source_and_their_files_checksums(tmp_path) -> None:
    digits = dataset_of(Digits())
    assert digits.name == "Digits" and "sklearn.datasets.load_digits" in digits.source
    assert json.loads(digits.profile) == {"train": 1077, "val": 360, "test": 360}
    fashion = FashionMNIST(data_dir=str(tmp_path), download=False)  # identity and source need no files
    assert fashion.dataset_source() == BASE_URL
    assert fashion.dataset_identity()["md5"] == dict(FILES.values())
    moved = FashionMNIST(data_dir=str(tmp_path / "elsewhere"), download=False, base_url="http://mirror.example/")
    assert moved.dataset_identity() == fashion.dataset_identity(), "the same files, wherever they are"


def test_a_bad_registered_model_name_is_one_line_and_records_nothing(tracking_uri, client, experiment, capsys) -> None:
    argv = ["fit", *linear_fit_args(tracking_uri, experiment, "--tracking.register_model", "team/best")]
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(code, err, r"tracking\.register_model must be a registered model name without '/'")
    assert client.get_experiment_by_name(experiment) is None
    with pytest.raises(SystemExit):
        main(["report", "some-sweep", "--register", "best"])
    assert "--register needs --select METRIC --test" in capsys.readouterr().err


def test_system_metrics_without_psutil_is_one_line(monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"tracking\.system_metrics needs psutil: pip install psutil"):
        system_metrics.check_system_metrics()


class _UntilSampled(L.Callback):
    """Holds the fit's end until MLflow's monitor has stored a sample (a condition, with a generous deadline)."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        client, run_id = MlflowClient(trainer.logger.tracking_uri), trainer.logger.run_id
        deadline = time.monotonic() + 60
        while "system/cpu_utilization_percentage" not in client.get_run(run_id).data.metrics:
            assert time.monotonic() < deadline, "no system metrics within 60 s at a 1 s interval"
            time.sleep(0.2)


def test_system_metrics_are_sampled_while_the_run_runs(tracking_uri, client, experiment, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # MLflow's own setting (default 10 s)
    extra = ["--tracking.system_metrics", "true", "--tracking.log_model", "false", "--trainer.max_epochs", "1"]
    result = run_configured("fit", linear_fit_args(tracking_uri, experiment, *extra), callbacks=[_UntilSampled()])
    assert result is not None and result.model_uri is None
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"], "stopped with the run"


@pytest.mark.slow
def test_sweep_arms_log_no_model_and_the_tested_selection_is_registered(
    tmp_path, tracking_uri, client, experiment, monkeypatch
) -> None:
    body = "grid: {model.l2: [0.0, 3.0]}\nseeds: [0]\noverrides: {data.num_test: 50}\n"
    spec = load_spec(spec_file(tmp_path, experiment, body))
    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None, pack="off")
    store = SweepStore(tracking_uri)
    parent = store.client.get_run(result.parent_run_id)
    for child in store.children(parent):
        run = client.get_run(child.run_id)
        assert not run.outputs or not run.outputs.model_outputs, "no model per arm by default"
        assert dataset_input(client, child.run_id).dataset.name == "HighDimLinearData"

    name = f"{experiment}-selected"
    args = [result.sweep_id, "--out", str(tmp_path / "report"), "--tracking-uri", tracking_uri]
    assert lit_d2l(["report", *args, "--select", "val/loss", "--test", "--register", name]) == 0
    (test_run,) = store.selection_tests(parent.info.run_id, parent.info.experiment_id)
    assert client.get_registered_model(name).name == name
    versions = client.search_model_versions(f"name = '{name}'")
    assert [(int(v.version), v.run_id) for v in versions] == [(1, test_run.run_id)]
    again = [*args, "--select", "val/loss", "--test", "--register"]
    assert lit_d2l(["report", *again, name]) == 0 and lit_d2l(["report", *again, f"{name}-too"]) == 0, (
        "not tested again"
    )
    assert len(store.selection_tests(parent.info.run_id, parent.info.experiment_id)) == 1
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [1], "once"
    assert [v.run_id for v in client.search_model_versions(f"name = '{name}-too'")] == [test_run.run_id]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert isinstance(mlflow.pytorch.load_model(f"models:/{name}/1"), torch.nn.Module)
