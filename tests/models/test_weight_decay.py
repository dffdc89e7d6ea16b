"""D2L 3.7 on the shipped config: λ = 3 generalises, λ = 0 overfits the 20 training examples."""

from mlflow.tracking import MlflowClient

from lit_d2l.runner import run_configured
from tests.conftest import REPO, only_run
from tests.test_cli import QUIET

CONFIG = REPO / "experiments" / "weight_decay.yaml"


def test_weight_decay_lowers_validation_loss_and_weight_norm(tracking_uri: str, client: MlflowClient) -> None:
    runs = {}
    for l2 in ("3.0", "0.0"):
        experiment = f"weight-decay-{l2}"
        args = ["--config", str(CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
        run_configured("fit", [*args, *QUIET, "--model.l2", l2])
        runs[l2] = only_run(client, experiment).data.metrics
    decayed, plain = runs["3.0"], runs["0.0"]
    assert decayed["val/loss"] < plain["val/loss"]
    assert decayed["weight_norm/w"] < plain["weight_norm/w"]
    assert decayed["train/loss_epoch"] > plain["train/loss_epoch"]
