"""Report building blocks on synthetic children: one run per arm × seed, grouping any JSON value, safe folders."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from lit_d2l.sweeps.reports.report import build_report, one_run_per_pair, report_dir, summary_table, trained_with
from lit_d2l.sweeps.spec import canonical
from lit_d2l.tracking.sweeps import KIND_TAG, SWEEP_TAG, Child


def child(settings: dict, seed: int, loss: float, start: int, status: str = "FINISHED", run_id: str = "") -> Child:
    """A recorded arm × seed, tagged as the runner tags it."""
    arm = ";".join(f"{k}={v if isinstance(v, str) else canonical(v)}" for k, v in settings.items())
    return Child(
        run_id=run_id or f"{arm}-{seed}-{start}",
        arm=arm,
        seed=seed,
        status=status,
        outcome="finished" if status == "FINISHED" else "failed",
        metrics={"val/loss": loss},
        tags={"arm_settings": json.dumps(settings)},
        start_time=start,
    )


L2 = {"model.l2": 0}


def test_each_arm_and_seed_counts_once_the_earliest_finished_run() -> None:
    children = [
        child(L2, 0, 1.0, start=20, run_id="a"),  # a later duplicate of seed 0 (run id sorts first)
        child(L2, 0, 3.0, start=10, run_id="z"),  # the earliest: the one that counts
        child(L2, 0, 9.0, start=5, status="KILLED"),  # not finished: never counted
        child(L2, 1, 5.0, start=11),
        child(L2, 1, 7.0, start=30),  # duplicate of seed 1
    ]
    kept, duplicates = one_run_per_pair(children)
    assert duplicates == 2
    assert sorted((c.seed, c.metrics["val/loss"]) for c in kept) == [(0, 3.0), (1, 5.0)]

    table = summary_table(children, ["val/loss"])
    assert "| ★ l2=0 | 2 | 0 | 4 ± 1 |" in table, table  # 2 seeds, mean of 3 and 5 only; the best (only) arm
    assert "2 duplicate FINISHED run(s) of an arm × seed ignored" in table
    assert "duplicate" not in summary_table(kept, ["val/loss"])


def test_the_report_folder_stays_under_its_root(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    for hostile in ("../../x", "..", ".", "/etc/x", "a/../../b", "a\\..\\b", ""):
        path = report_dir(root, hostile)
        assert path.parent == root and path.name not in ("", ".", ".."), (hostile, path)
    assert report_dir(root, "overfitting-0123abcd") == root / "overfitting-0123abcd"


def test_a_hostile_sweep_id_in_the_store_is_written_under_reports(tmp_path, tracking_uri, experiment, monkeypatch):
    client = MlflowClient(tracking_uri)
    parent = client.create_run(
        client.create_experiment(experiment), tags={KIND_TAG: "sweep", SWEEP_TAG: "../../escaped"}
    )
    client.set_terminated(parent.info.run_id)
    (tmp_path / "report_root").mkdir()
    monkeypatch.chdir(tmp_path / "report_root")
    report = build_report(parent.info.run_id, tracking_uri=tracking_uri).path
    assert report.resolve().parent.parent == (tmp_path / "report_root" / "reports").resolve()
    assert not (tmp_path / "escaped").exists()


def test_what_the_arms_trained_says_each_value_where_arms_differ() -> None:
    def run(model: str, optimizer: str | None, epochs: str, schedule: str | None = None) -> Child:
        params = {"model.class_path": f"pkg.{model}", "trainer.max_epochs": epochs}
        params |= {"optimizer.class_path": f"torch.optim.{optimizer}"} if optimizer else {}
        params |= {"lr_scheduler.class_path": f"torch.optim.lr_scheduler.{schedule}"} if schedule else {}
        return Child("r", "a", 0, "FINISHED", "finished", {}, params=params)

    same = [run("MLP", None, "4"), run("MLP", None, "4")]
    assert trained_with(same) == " Trained: MLP, the model's own SGD, 4 epochs (as the runs record it)."
    mixed = [run("TinyCNN", None, "4"), run("TinyCNN", "Adam", "4", "StepLR"), run("ScaledMLP", "AdamW", "8")]
    assert trained_with(mixed) == (
        " Trained: TinyCNN or ScaledMLP (by arm), the model's own SGD or Adam or AdamW (by arm), no schedule or StepLR "
        "(by arm), 4 or 8 epochs (by arm) (as the runs record it)."
    )
    assert trained_with([]) == ""
