"""val/loss and test/loss are means over every example of the split, whatever the last batch's size."""

from __future__ import annotations

import torch

from lit_d2l.fit.run import build
from tests.conftest import REPO

QUIET = ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
QUIET += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_the_validation_loss_weights_every_example_once() -> None:
    config = str(REPO / "experiments" / "init_classification.yaml")
    # 100 validation examples in batches of 64: a full batch and one of 36, whose means differ.
    args = ["--config", config, "--data.num_train", "64", "--data.num_val", "100", "--trainer.max_epochs", "1"]
    cli = build("fit", [*args, *QUIET])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    X, y = cli.datamodule.splits["val"]
    model = cli.model.eval()
    with torch.no_grad():
        per_example = torch.nn.functional.cross_entropy(model(X), y, reduction="none")
        batch_means = torch.stack([per_example[:64].mean(), per_example[64:].mean()])
    assert abs(batch_means[0] - batch_means[1]) > 1e-3  # else the test could not tell the two apart
    logged = cli.trainer.callback_metrics["val/loss"]
    torch.testing.assert_close(logged, per_example.mean(), rtol=1e-6, atol=1e-6)
