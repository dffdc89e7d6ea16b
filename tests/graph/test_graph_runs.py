"""The graph as a fit's artifact and as ``lit-d2l graph``; the memory metrics of every fit."""

from __future__ import annotations

import pytest

from lit_d2l.cli.main import run
from lit_d2l.fit.run import run_configured
from tests.conftest import REPO, linear_fit_args, only_run


@pytest.mark.slow
def test_a_fit_logs_the_graph_and_the_memory_of_its_first_step(tracking_uri, client, experiment) -> None:
    result = run_configured("fit", linear_fit_args(tracking_uri, experiment, "--model.l2", "0.1"))
    assert result is not None
    run_ = only_run(client, experiment)
    assert {a.path for a in client.list_artifacts(run_.info.run_id)} >= {"graph.svg", "graph.png"}
    assert run_.data.metrics["memory/saved_for_backward_bytes"] > 0
    off = f"{experiment}-off"
    run_configured("fit", linear_fit_args(tracking_uri, off, "--model.l2", "0.1", "--log_graph", "false"))
    quiet = only_run(client, off)
    assert "graph.png" not in {a.path for a in client.list_artifacts(quiet.info.run_id)}
    assert quiet.data.metrics["test/loss"] == run_.data.metrics["test/loss"], "drawing the graph changes nothing"


@pytest.mark.slow
def test_lit_d2l_graph_writes_the_mlp_scratch_figure(tmp_path, capsys) -> None:
    config = REPO / "experiments" / "digits_mlp.yaml"
    args = ["-c", str(config), "--model", "lit_d2l.models.MLPScratch", "--model.l2", "0.001"]  # -c, as fit's
    assert run(["graph", *args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "x, W1, b1 → [mm, add] → z" in out and "s, L → [J = L + s] → J" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.png", "graph.svg"]
