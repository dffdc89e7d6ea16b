"""The Fashion-MNIST configs end to end, on small generated files (no internet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.cli.main import main
from lit_d2l.data import fashion_mnist
from lit_d2l.fit.run import run_configured
from tests.conftest import REPO, only_run
from tests.data.fashion_files import make_fashion_files
from tests.test_cli import QUIET


@pytest.fixture
def fashion_dir(tmp_path: Path, monkeypatch) -> Path:
    checksums = make_fashion_files(tmp_path / "fmnist", num_train=1200, num_test=200)
    files = {key: (name, checksums[name]) for key, (name, _) in fashion_mnist.FILES.items()}
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    return tmp_path / "fmnist"


SLOW = pytest.mark.slow


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        "softmax_regression.yaml",
        "mlp.yaml",
        pytest.param("mlp_dropout.yaml", marks=SLOW),
        pytest.param("lenet.yaml", marks=SLOW),
    ],
)
def test_fashion_configs_record_accuracy_and_sample_images(
    config: str, fashion_dir: Path, tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    args = ["--config", str(REPO / "experiments" / config), "--data.data_dir", str(fashion_dir)]
    args += ["--data.val_size", "200", "--data.base_url", "http://127.0.0.1:9/", "--trainer.max_epochs", "1"]
    args += ["--trainer.accelerator", "cpu", "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    run_configured("fit", [*args, *QUIET])
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED"
    for key in ("val/acc", "test/acc"):
        assert 0.0 <= run.data.metrics[key] <= 1.0
    assert run.data.metrics["weight_norm"] > 0  # ‖W‖ over all weights, one metric however deep
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml", "data_samples.png", "graph.svg", "graph.png"}


def test_plot_activations_writes_a_png_and_logs_it(tmp_path: Path, tracking_uri: str, client, experiment, capsys):
    out = tmp_path / "figs" / "activations.png"
    argv = ["plot-activations", "--out", str(out), "--log", "--tracking-uri", tracking_uri, "--experiment", experiment]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["activations.png"], "no temporary file left behind"
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["activations.png"]


@pytest.mark.slow
def test_reduced_dropout_suite_on_generated_files(fashion_dir: Path, tmp_path: Path, tracking_uri, client, experiment):
    from lit_d2l.sweeps.engine import run_sweep
    from lit_d2l.sweeps.spec import load_spec

    spec = tmp_path / "dropout.yaml"
    spec.write_text(
        f"name: {experiment}\nbase: {REPO / 'experiments' / 'mlp_dropout.yaml'}\n"
        "grid: {model.dropout: [0.0, 0.5]}\n"
        f"overrides: {{data.data_dir: {fashion_dir}, data.val_size: 200, trainer.max_epochs: 1, "
        "trainer.accelerator: cpu, test_after_fit: false}\n"
        "metrics: [val/loss, val/acc]\n"
    )
    result = run_sweep(load_spec(spec), tracking_uri=tracking_uri, echo=lambda _: None)
    assert {o.arm: o.outcome for o in result.outcomes} == {
        "model.dropout=0.0": "finished",
        "model.dropout=0.5": "finished",
    }
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
    assert all(0.0 <= o.metrics["val/acc"] <= 1.0 for o in result.outcomes)
