"""A sweep records the same MLflow data whether its arms ran packed or one by one."""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.errors import ConfigError, UserError
from lit_d2l.sweeps.dry_run import dry_run
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.reports.figures import layer_table
from lit_d2l.sweeps.reports.report import build_report
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import SweepStore
from tests.conftest import REPO

SPEC = """base: {base}
arms:
  - {{model.init: normal, model.init_std: 0.01}}
  - {{model.init: normal, model.init_std: 3.0}}
  - {{model.init: xavier_normal, model.momentum: 0.9}}
  - {{model.init: kaiming, model.l2: 0.01}}
grid:
  model.depth: [1, 3]
seeds: [0, 1]
overrides:
  trainer.max_epochs: 2
  trainer.log_every_n_steps: 2
  data.num_train: 128
  data.num_val: 64
  log_graph: true
diagnostics_every: 3
max_grad_norm: 200.0
"""
IGNORED_PARAMS = {"tracking.experiment", "tracking.run_id"}


def write_spec(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n" + SPEC.format(base=REPO / "experiments" / "init_classification.yaml"))
    return path


def recorded(client: MlflowClient, experiment: str) -> dict[tuple[str, str], dict]:
    """Every child run of the experiment's sweep: status, params, tags, metric histories, artifacts."""
    exp = client.get_experiment_by_name(experiment)
    runs = {}
    for run in client.search_runs([exp.experiment_id], "tags.arm != ''", max_results=1000):
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith(("mlflow.", "lit_d2l."))}
        runs[(run.data.tags["arm"], run.data.tags["seed"])] = {
            "status": run.info.status,
            "params": {k: v for k, v in run.data.params.items() if k not in IGNORED_PARAMS},
            "tags": tags,
            "history": {
                key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                for key in run.data.metrics
            },
            "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
            "diagnostics": sorted(a.path for a in client.list_artifacts(run.info.run_id, "diagnostics")),
            "layers": layer_table(SweepStore(client.tracking_uri), run.info.run_id),
            "dataset": [(d.dataset.name, d.dataset.digest, d.dataset.profile) for d in run.inputs.dataset_inputs],
            "models": len(run.outputs.model_outputs) if run.outputs else 0,
            "graph": graph_digest(client, run.info.run_id),
        }
    return runs


def graph_digest(client: MlflowClient, run_id: str) -> str:
    """The digest of the run's graph.png: the figure of its own J = L + s (λ in the title, s when λ > 0)."""
    with tempfile.TemporaryDirectory() as folder:
        return hashlib.sha256(Path(client.download_artifacts(run_id, "graph.png", folder)).read_bytes()).hexdigest()


def same_values(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    if [step for step, _ in a] != [step for step, _ in b]:
        return False
    return all(
        (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6)
        for (_, x), (_, y) in zip(a, b, strict=True)
    )


def same_table(a: list[dict], b: list[dict]) -> bool:
    """The same rows (step, layer, measured columns), values equal as :func:`same_values` compares them."""
    if [(r["step"], r["layer"]) for r in a] != [(r["step"], r["layer"]) for r in b]:
        return False
    columns = ("grad_norm", "weight_norm", "act_mean", "act_std")
    if any((x[c] is None) != (y[c] is None) for x, y in zip(a, b, strict=True) for c in columns):
        return False
    return all(
        same_values([(0, x[c])], [(0, y[c])]) for x, y in zip(a, b, strict=True) for c in columns if x[c] is not None
    )


@pytest.mark.slow
def test_packed_and_unpacked_sweeps_record_the_same_runs(tmp_path, tracking_uri, client, experiment) -> None:
    packed_spec, alone_spec = (
        load_spec(write_spec(tmp_path, experiment)),
        load_spec(write_spec(tmp_path, f"{experiment}-alone")),
    )
    packed = run_sweep(packed_spec, tracking_uri=tracking_uri, echo=lambda _: None)
    alone = run_sweep(alone_spec, tracking_uri=tracking_uri, echo=lambda _: None, pack="off")
    with_packs, without = recorded(client, packed_spec.name), recorded(client, alone_spec.name)
    assert len(with_packs) == 16 and with_packs.keys() == without.keys()
    outcomes = {run["tags"].get("outcome", "finished") for run in with_packs.values()}
    assert outcomes == {"finished", "diverged"}  # the N(0, 3²) start explodes, the others train
    for pair, run in with_packs.items():
        other = without[pair]
        for field in ("status", "params", "tags", "artifacts", "diagnostics", "dataset", "graph"):
            assert run[field] == other[field], (pair, field)
        assert run["dataset"][0][0] == "GaussianClusters" and run["models"] == other["models"] == 0, pair
        assert run["history"].keys() == other["history"].keys(), pair
        for key, values in run["history"].items():
            assert same_values(values, other["history"][key]), (pair, key, values[:3], other["history"][key][:3])
        assert same_table(run["layers"], other["layers"]) and run["layers"], pair  # diagnostics/layers.csv
        # The table without its figure (0.4 s an arm to draw): the report draws every arm's norms in one.
        assert "diagnostics/layers.csv" in run["diagnostics"] and "diagnostics/layers.png" not in run["diagnostics"]
    assert {"act_std/min", "grad_norm/max", "val/acc", "epoch"} <= set(with_packs[next(iter(with_packs))]["history"])
    assert len({run["graph"] for run in with_packs.values()}) == 4  # 2 depths × λ = 0 or 0.01: each its own figure
    assert [o.outcome for o in packed.outcomes].count("diverged") == [o.outcome for o in alone.outcomes].count(
        "diverged"
    )

    reports = [
        build_report(result.parent_run_id, out_dir=tmp_path / name, tracking_uri=tracking_uri).path.read_text()
        for result, name in ((packed, "packed"), (alone, "alone"))
    ]
    rows = [[line for line in report.splitlines() if line.startswith("| ") and "---" not in line] for report in reports]
    assert len(rows[0]) > 2 and rows[0] == rows[1]  # the header and every arm's row
    verdicts = [report.split("## Verdict", 1)[1].split("Parent run", 1)[0] for report in reports]
    assert verdicts[0] == verdicts[1]


@pytest.mark.slow
def test_dry_run_lists_the_packs(tmp_path, experiment) -> None:
    bad = write_spec(tmp_path, f"{experiment}-bad")
    bad.write_text(bad.read_text().replace("model.depth: [1, 3]", "model.depth: [1, 3]\n  model.lr: [0.1, -1.0]"))
    with pytest.raises(ConfigError, match=r"model\.lr must be > 0"):  # every arm is checked, as a run would
        dry_run(load_spec(bad), echo=lambda _: None)
    with pytest.raises(UserError, match=r"--pack-size must be >= 0"):
        dry_run(load_spec(write_spec(tmp_path, experiment)), echo=lambda _: None, pack_size=-1)
    lines: list[str] = []
    dry_run(load_spec(write_spec(tmp_path, experiment)), echo=lines.append)
    assert "--pack auto: 2 packs (16 runs in all), 0 runs alone" in lines  # not "2 packs of 16 runs": 32?
    assert "  pack 1: 8 runs = 4 arms x seeds [0, 1]" in lines
    lines.clear()
    dry_run(load_spec(write_spec(tmp_path, experiment)), echo=lines.append, pack="off")
    assert "--pack off: 0 packs of 0 runs, 16 runs alone" in lines
    assert "  alone: model.init=normal;model.init_std=0.01;model.depth=1 seed 0 (--pack off)" in lines
