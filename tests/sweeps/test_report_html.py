"""report.html beside report.md: the table, the metric legend and every figure embedded, from a store
written by hand (fast) and from a tiny real initialisation sweep with a diverging arm (slow)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.callbacks.diagnostics import TABLE, table_text
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.reports.report import build_report
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG, SWEEP_TAG
from tests.conftest import REPO

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


def check_report(folder: Path, report_md: Path) -> str:
    """Every PNG is embedded in report.html and linked from report.md with readable alt text; returns the page."""
    page = (folder / "report.html").read_text()
    pngs = sorted(folder.glob("*.png"))
    embedded = [base64.b64decode(data) for data, _ in IMG.findall(page)]
    assert len(embedded) == len(pngs) >= 2 and {p.read_bytes() for p in pngs} == set(embedded)
    assert not re.search(r'src="(?!data:)', page), "nothing outside the page is referenced"
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", report_md.read_text())
    assert sorted(name for _, name in links) == sorted(p.name for p in pngs)
    assert all(alt and "[" not in alt and "'" not in alt for alt, _ in links), links
    return page


def no_plot_warnings(record: list[warnings.WarningMessage]) -> None:
    bad = [w for w in record if issubclass(w.category, RuntimeWarning) or "matplotlib" in w.filename]
    assert not bad, [str(w.message) for w in bad]


@pytest.mark.slow
def test_the_html_report_embeds_every_figure_the_table_and_the_legend(tmp_path, tracking_uri, experiment) -> None:
    client = MlflowClient(tracking_uri)
    tags = {KIND_TAG: "sweep", SWEEP_TAG: f"{experiment}-0001"}
    parent = client.create_run(client.create_experiment(experiment), tags=tags).info.run_id
    metrics = ["train/loss_epoch", "val/loss", "weight_norm/w"]
    client.log_param(parent, "sweep.metrics", json.dumps(metrics))
    client.log_param(parent, "sweep.axes", json.dumps(["model.l2"]))
    for l2, diverged in ((0.0, False), (3.0, False), (100.0, True)):
        settings = {"model.l2": l2}
        child_tags = {PARENT_TAG: parent, "arm": f"model.l2={l2}", "seed": "0", "arm_settings": json.dumps(settings)}
        if diverged:
            child_tags |= {"outcome": "diverged", "diverged_at_step": "20"}
        run = client.create_run(client.get_run(parent).info.experiment_id, tags=child_tags).info.run_id
        for step in (10, 20):
            last = diverged and step == 20
            values = {"train/loss_epoch": 1e7 / step**4, "val/loss": 2.0 / step, "weight_norm/w": 1.0 / (1 + l2)}
            if l2:
                values["train/loss_data"] = 1e-13 * step
            if last:
                values = {key: math.inf for key in values}  # MLflow stores inf as 1.8e308
            for key, value in values.items():
                client.log_metric(run, key, value, step=step)
        grads = {"net.1": math.inf, "net.3": math.nan} if diverged else {"net.1": 1e-13, "net.3": 1e7}
        client.log_metric(run, "grad_norm/min", min(grads.values()), step=0)
        rows = [{"step": 0, "layer": layer, "grad_norm": value} for layer, value in grads.items()]
        client.log_text(run, table_text(rows), TABLE)  # the per-layer values, as LayerDiagnostics stores them
        client.set_terminated(run)
    client.set_terminated(parent)

    umask = os.umask(0o002)  # a group-shared project: every file lit-d2l writes is 0664, as any new file
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            report = build_report(parent, out_dir=tmp_path / "report", tracking_uri=tracking_uri).path
    finally:
        os.umask(umask)
    no_plot_warnings(record)
    stored = Path(urlparse(client.get_run(parent).info.artifact_uri).path) / "report"
    written = [*(tmp_path / "report").iterdir(), *stored.iterdir()]
    modes = {str(f): oct(f.stat().st_mode & 0o777) for f in written}
    assert len(modes) == 10 and set(modes.values()) == {"0o664"}, modes
    page = check_report(tmp_path / "report", report)
    assert {p.name for p in (tmp_path / "report").glob("*.png")} == {
        "along_model_l2.png",
        "curves.png",
        "grad_norms.png",
    }
    assert "<th>train/loss_epoch</th><th>train/loss_data</th><th>val/loss</th>" in page
    assert '<tr class="best"><td>★ l2=0</td><td>1</td><td>0</td>' in page  # val/loss ties at 0.1: arm order
    assert "<tr><td>l2=100</td><td>1</td><td>1 (step 20)</td>" in page
    assert page.index("<h2>Verdict: l2=0 is best on val/loss") < page.index("<table>"), "the page opens on the verdict"
    assert "<strong>l2=0</strong>" in page and "out of the running: l2=100 (1 seed(s) diverged)" in page
    run = client.get_run(parent)
    assert run.data.tags["mlflow.note.content"].startswith("## Verdict")  # the run's description in MLflow
    assert run.data.tags["lit_d2l.best_arm"] == "l2=0" and run.data.tags["lit_d2l.verdict"] == "untested"
    assert run.data.metrics["best/val/loss"] == pytest.approx(0.1)
    assert "best/weight_norm/w" not in run.data.metrics, "no verdict where the metric does not say which way is better"
    assert "<code>train/loss_data</code>: L alone" in page and "<code>train/loss_epoch</code>: J = L" in page
    assert "<p>Sorted by <code>val/loss</code>, best first" in page and "`" not in page, "markdown's backticks as code"
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.md", "report/report.html", "report/curves.png"} <= logged


@pytest.mark.slow
def test_a_tiny_initialisation_sweep_reports_its_diverged_arm_in_html(tmp_path, tracking_uri, experiment) -> None:
    path = tmp_path / "init.yaml"
    path.write_text(
        f"name: {experiment}\nbase: {REPO / 'experiments' / 'init_classification.yaml'}\n"
        "arms:\n  - {model.init: normal, model.init_std: 1.0}\n  - {model.init: kaiming}\n"
        "grid: {model.depth: [2, 10]}\nseeds: [0]\nmetrics: [train/loss_epoch, val/loss, val/acc]\n"
        "axes: [model.depth]\ndiagnostics_every: 2\nmax_grad_norm: 1.0e4\n"
        "overrides: {trainer.max_epochs: 2, data.num_train: 256, data.num_val: 64, trainer.log_every_n_steps: 1}\n"
    )
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    outcomes = {o.arm: o.outcome for o in result.outcomes}
    assert outcomes["model.init=normal;model.init_std=1.0;model.depth=10"] == "diverged", outcomes
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = build_report(result.sweep_id, out_dir=tmp_path / "report", tracking_uri=tracking_uri).path
    no_plot_warnings(record)
    page = check_report(tmp_path / "report", report)
    assert {p.name for p in (tmp_path / "report").glob("*.png")} == {
        "along_model_depth.png",
        "curves.png",
        "grad_norms.png",
        "memory.png",  # saved for backward by depth and batch size (D2L 5.3.3)
    }
    assert "<td>normal σ=1 depth=10</td><td>1</td><td>1 (step" in page
    assert "<th>distinct_units</th>" in page  # symmetry (D2L 5.4.3), from the diagnostics at the end of each fit
    assert "<th>val/acc</th>" in page
