"""Per-layer diagnostics at step 0 and every N steps, and nothing attached in between."""

from __future__ import annotations

import lightning as L

from lit_d2l.callbacks import LayerDiagnostics
from lit_d2l.data import GaussianClusters
from lit_d2l.models import MLP
from lit_d2l.tracking import TrackingLogger
from tests.conftest import only_run


def test_layer_statistics_are_logged_every_n_steps(tracking_uri, client, experiment, quiet_trainer) -> None:
    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    diagnostics = LayerDiagnostics(every_n_steps=4)
    model = MLP(hidden_sizes=[16, 16], activation="tanh", init="xavier_normal")
    data = GaussianClusters(num_train=320, num_val=64, batch_size=32)
    trainer = L.Trainer(max_epochs=1, logger=logger, callbacks=[diagnostics], **quiet_trainer)
    trainer.fit(model, data)
    run = only_run(client, experiment)
    layers = ["net.1", "net.3", "net.5"]  # two hidden layers and the output layer, as PyTorch names them
    names = [f"{prefix}/{layer}.weight" for prefix in ("grad_norm", "weight_norm") for layer in layers]
    names += [f"{prefix}/{layer}" for prefix in ("act_mean", "act_std") for layer in layers]
    for name in names:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert steps[:3] == [0, 4, 8], (name, steps)
    act_std = client.get_metric_history(run.info.run_id, "act_std/net.1")[0].value
    assert act_std > 0
    assert all(not layer._forward_hooks for layer in model.modules()), "hooks are removed after each logging step"
