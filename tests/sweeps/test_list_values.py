"""A depth ablation with list values (``model.hidden_sizes``) end to end, and a duplicated pair in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_d2l.fit.run import run_configured
from lit_d2l.sweeps.engine import QUIET_TRAINER, run_sweep
from lit_d2l.sweeps.reports.report import build_report
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import PARENT_TAG, SWEEP_TAG, SweepStore
from tests.conftest import REPO


@pytest.mark.slow
def test_a_sweep_over_hidden_sizes_runs_and_reports_each_pair_once(tmp_path: Path, tracking_uri, experiment) -> None:
    path = tmp_path / "depth.yaml"
    path.write_text(
        f"name: {experiment}\nbase: {REPO / 'experiments' / 'init_classification.yaml'}\n"
        "grid: {model.hidden_sizes: [[16, 16], [16]]}\nseeds: [0, 1]\nmetrics: [val/loss, val/acc]\n"
        "overrides: {trainer.max_epochs: 1, data.num_train: 128, data.num_val: 64, trainer.log_every_n_steps: 1}\n"
    )
    spec = load_spec(path)
    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None)
    assert [o.outcome for o in result.outcomes] == ["finished"] * 4

    # A second process that resumed the same sweep at the same time would finish a pair again.
    arm, seed = spec.arms[0], 1
    where = ["--tracking.uri", tracking_uri, "--tracking.experiment", spec.name]
    tags = {PARENT_TAG: result.parent_run_id, SWEEP_TAG: spec.sweep_id, "arm": arm.key, "seed": str(seed)}
    tags = json.dumps({**tags, "arm_settings": arm.settings_json})
    run_configured("fit", [*QUIET_TRAINER, *spec.fit_args(arm, seed), *where, "--tracking.tags", tags])
    store = SweepStore(tracking_uri)
    statuses = [c.status for c in store.children(store.client.get_run(result.parent_run_id))]
    assert statuses == ["FINISHED"] * 5

    report = build_report(result.sweep_id, out_dir=tmp_path / "report", tracking_uri=tracking_uri).path
    text = report.read_text()
    assert "; 4 finished." in text  # counted as the CLI counts them (none diverged)
    assert "hidden_sizes=[16] | 2 | 0 |" in text
    assert "hidden_sizes=[16, 16] | 2 | 0 |" in text  # 2 seeds, not 3
    assert text.index("hidden_sizes=[16] |") < text.index("hidden_sizes=[16, 16] |")  # shallow first
    assert "1 duplicate FINISHED run(s) of an arm × seed ignored" in text
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"along_model_hidden_sizes.png", "curves.png"}
