"""CUDA: data held on the GPU, bf16 mixed precision, DDP over NCCL, ablation workers and Ray tasks on a GPU.

Skipped on machines without a CUDA device (CI has none); run them on one with
``python -m pytest tests/test_gpu.py``. Figures from such a run are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_d2l.fit.run import run_configured
from tests.conftest import LINEAR_CONFIG, REPO, only_run
from tests.test_cli import QUIET

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CLUSTERS = REPO / "experiments" / "init_classification.yaml"
GPU = ["--trainer.accelerator", "gpu", "--trainer.devices", "1"]


class DeviceSpy(L.Callback):
    """Records where batches, parameters and the data's split tensors live, and the process group's backend."""

    def __init__(self) -> None:
        self.batch_devices: set[str] = set()
        self.param_devices: set[str] = set()
        self.split_devices: set[str] = set()
        self.backend: str | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.param_devices = {str(p.device) for p in pl_module.parameters()}
        self.split_devices = {str(t.device) for t in trainer.train_dataloader.tensors}
        if torch.distributed.is_initialized():
            self.backend = torch.distributed.get_backend()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_devices |= {str(t.device) for t in batch}


def _fit(args: list[str], tracking_uri: str, experiment: str, spy: DeviceSpy | None = None):
    tracking = ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    return run_configured("fit", [*args, *tracking, *QUIET], callbacks=[spy] if spy else None)


def test_splits_and_batches_live_on_the_gpu(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    spy = DeviceSpy()
    result = _fit(["--config", str(CLUSTERS), *GPU], tracking_uri, experiment, spy)
    assert spy.split_devices == spy.batch_devices == spy.param_devices == {"cuda:0"}
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED"
    assert result.metrics["val/acc"] > 0.9
    steps = 5 * math.ceil(2000 / 64)
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == steps // 5  # log_every_n_steps: 5


def test_bf16_mixed_precision_learns_what_fp32_learns(tracking_uri: str, client: MlflowClient, experiment) -> None:
    accuracy = {}
    for precision in ("32-true", "bf16-mixed"):
        args = ["--config", str(CLUSTERS), *GPU, "--trainer.precision", precision]
        accuracy[precision] = _fit(args, tracking_uri, f"{experiment}-{precision}").metrics["val/acc"]
        run = only_run(client, f"{experiment}-{precision}")
        assert run.info.status == "FINISHED"
        assert run.data.params["trainer.precision"] == precision
        losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] / 4
    assert accuracy["bf16-mixed"] > 0.9
    assert abs(accuracy["bf16-mixed"] - accuracy["32-true"]) < 0.03


def test_ddp_strategy_on_cuda_uses_nccl(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    spy = DeviceSpy()
    args = ["--config", str(LINEAR_CONFIG), *GPU, "--trainer.strategy", "ddp", "--trainer.max_epochs", "10"]
    try:
        _fit(args, tracking_uri, experiment, spy)
    finally:  # Lightning leaves the process group up; later tests in this process must not see one
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert spy.backend == "nccl"
    assert spy.batch_devices == {"cuda:0"}
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["param_err/w"] < 0.01
    assert run.data.metrics["param_err/b"] < 0.01


@pytest.mark.parametrize(("backend", "workers"), [("local", 2), ("ray", 1)])
def test_ablation_workers_train_on_the_gpu(
    tmp_path: Path, tracking_uri: str, client: MlflowClient, experiment, backend: str, workers: int, monkeypatch
):
    """--workers 2 and --backend ray (a local Ray instance) each place their units on the GPU."""
    from lit_d2l.sweeps.engine import run_sweep
    from lit_d2l.sweeps.spec import load_spec

    if backend == "ray":
        pytest.importorskip("ray")
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")

    spec = tmp_path / "arms.yaml"
    spec.write_text(
        f"name: {experiment}\nbase: {CLUSTERS}\ngrid: {{model.activation: [relu, tanh]}}\n"
        "overrides: {trainer.max_epochs: 2}\nmetrics: [val/loss, val/acc]\n"
    )
    result = run_sweep(
        load_spec(spec), tracking_uri=tracking_uri, workers=workers, backend=backend, pack="off", echo=lambda _: None
    )
    assert [o.outcome for o in result.outcomes] == ["finished", "finished"]
    assert {o.device for o in result.outcomes} == {"cuda:0"}
    for outcome in result.outcomes:
        run = client.get_run(outcome.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["device"] == "cuda:0"
        assert run.data.metrics["val/acc"] > 0.5
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_a_training_step_peaks_above_an_inference_step(tracking_uri: str, client: MlflowClient, experiment: str):
    """D2L 5.3.3 on the GPU: the memory metrics of the first step, training against inference."""
    _fit(["--config", str(CLUSTERS), *GPU, "--trainer.max_epochs", "1"], tracking_uri, experiment)
    metrics = only_run(client, experiment).data.metrics
    train, inference = metrics["memory/cuda_peak_train_step_bytes"], metrics["memory/cuda_peak_inference_step_bytes"]
    assert train > inference > 0
    assert metrics["memory/saved_for_backward_bytes"] > 0
