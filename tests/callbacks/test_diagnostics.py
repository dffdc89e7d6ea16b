"""Per-layer diagnostics at step 0 and every N steps: a few summary metrics, every value in one table artifact."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_d2l.callbacks import LayerDiagnostics
from lit_d2l.callbacks.diagnostics import FIGURE, TABLE, UNITS, read_table, summarize
from lit_d2l.data import GaussianClusters
from lit_d2l.models import MLP
from lit_d2l.tracking import TrackingLogger
from tests.conftest import only_run

LAYERS = ["net.1", "net.3", "net.5"]  # two hidden layers and the output layer, as PyTorch names them


def fit(tracking_uri: str, experiment: str, quiet_trainer: dict, epochs: int, **kwargs) -> MLP:
    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    model = MLP(hidden_sizes=[16, 16], activation="tanh", init="xavier_normal")
    data = GaussianClusters(num_train=320, num_val=64, batch_size=32)  # 10 steps an epoch
    trainer_args = kwargs.pop("trainer", {})
    checkpoints = any(isinstance(c, ModelCheckpoint) for c in trainer_args.get("callbacks", []))
    trainer_args = quiet_trainer | {"enable_checkpointing": checkpoints} | trainer_args
    trainer = L.Trainer(max_epochs=epochs, logger=logger, **trainer_args)
    trainer.fit(model, data, **kwargs.pop("fit", {}))
    return model


def table(client, run_id: str, tmp_path) -> list[dict]:
    return read_table((tmp_path / client.download_artifacts(run_id, TABLE, str(tmp_path))).read_text())


def test_summaries_are_metrics_and_every_layer_is_in_the_table(
    tracking_uri, client, experiment, quiet_trainer, tmp_path
):
    model = fit(tracking_uri, experiment, quiet_trainer, 1, trainer={"callbacks": [LayerDiagnostics(every_n_steps=4)]})
    run = only_run(client, experiment)
    keys = set(run.data.metrics)
    assert not [k for k in keys if k.count("/") > 1 or k.startswith(("act_mean/", "weight_norm/"))], keys
    assert {"grad_norm/min", "grad_norm/max", "act_std/min", "act_std/max", "distinct_units/min"} <= keys
    assert {"train/loss_epoch", "val/loss", "weight_norm"} <= keys and len(keys) <= 12, sorted(keys)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "grad_norm/max")]
    assert steps == [0, 4, 8]
    rows = table(client, run.info.run_id, tmp_path)
    assert [(r["step"], r["layer"]) for r in rows] == [(s, layer) for s in (0, 4, 8) for layer in LAYERS]
    assert all(r[c] is not None for r in rows for c in ("grad_norm", "weight_norm", "act_mean", "act_std"))
    first = [r for r in rows if r["step"] == 0]
    grad_max = client.get_metric_history(run.info.run_id, "grad_norm/max")[0].value
    assert grad_max == max(r["grad_norm"] for r in first) and min(r["act_std"] for r in first) > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "diagnostics")}
    assert {TABLE, FIGURE, UNITS} <= artifacts
    units = json.loads((tmp_path / client.download_artifacts(run.info.run_id, UNITS, str(tmp_path))).read_text())
    assert units == {"net.1": 16, "net.3": 16}
    assert all(not layer._forward_hooks for layer in model.modules()), "hooks are removed after each logging step"


def test_a_resumed_fit_keeps_the_rows_before_the_stop(tracking_uri, client, experiment, quiet_trainer, tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit(tracking_uri, experiment, quiet_trainer, 1, trainer={"callbacks": [LayerDiagnostics(4), checkpoints]})
    resumed = f"{experiment}-resumed"
    callbacks = [LayerDiagnostics(4), ModelCheckpoint(dirpath=tmp_path / "ckpt")]
    fit(
        tracking_uri,
        resumed,
        quiet_trainer,
        2,
        trainer={"callbacks": callbacks},
        fit={"ckpt_path": checkpoints.last_model_path},
    )
    rows = table(client, only_run(client, resumed).info.run_id, tmp_path)
    assert sorted({r["step"] for r in rows}) == [0, 4, 8, 12, 16], "the first fit's rows, then the resumed fit's"


def test_one_definition_of_summaries_and_rows() -> None:
    metrics, rows = summarize(3, {"W1": 2.0, "W2": float("nan")}, {"W1": 1.0, "W2": 1.5}, {})
    assert metrics["grad_norm/max"] != metrics["grad_norm/max"], "a NaN in any layer shows in the summary"
    assert rows == [
        {"step": 3, "layer": "W1", "grad_norm": 2.0, "weight_norm": 1.0},
        {"step": 3, "layer": "W2", "grad_norm": rows[1]["grad_norm"], "weight_norm": 1.5},
    ]
