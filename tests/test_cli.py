"""The `lit-d2l` command as a user meets it: the main job, and one clear line for bad input."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import lit_d2l
from lit_d2l.cli.main import main
from lit_d2l.sweeps.spec import load_spec
from tests.conftest import LINEAR_CONFIG, only_run

PARENT = "mlflow.parentRunId"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error_line(code: int, err: str, pattern: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("lit-d2l: error:")]
    assert len(errors) == 1, err
    assert re.search(pattern, errors[0]), errors[0]


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (["--model.bogus", "1"], r"model: Option 'bogus' is not accepted"),
        (["--model.lrr", "0.1"], r"model: Option 'lrr' is not accepted; did you mean model\.lr\?$"),  # the class's own
        (["--data.batch_sise", "8"], r"data: Option 'batch_sise' is not accepted; did you mean data\.batch_size\?$"),
        (["--trainer.max_epochs", "many"], r"trainer\.max_epochs: expected int, got many \("),
        (["--model.lr", "fast"], r"error: model\.lr: expected float, got fast \("),  # a class's own setting, named
        (["--optimizer", "Adam", "--optimizer.lr", "fast"], r"error: optimizer\.lr: expected float, got fast \("),
        (["--optimizer.lr", "0.1"], r"optimizer: Option 'lr' is not accepted: no optimizer class is given; name one"),
        (["--optimizer", "SGD", "--optimizer.betas", "[0.9, 0.99]"], r"Option 'betas' is not accepted \(lit-d2l fit"),
        (["--trainer.max_epochs", "-5"], r"`max_epochs` must be a non-negative integer or -1. You passed in -5"),
        (["--model.lr", "0"], r"model\.lr must be > 0"),
        (["--model.lr", "-0.5"], r"model\.lr must be > 0"),
        (["--data.num_train", "0"], r"data\.num_train must be > 0"),
        (["--config", "missing.yaml"], r"File does not exist"),
    ],
)
def test_bad_settings_end_in_one_line_and_leave_no_run(override, pattern, tracking_uri, client, experiment, capsys):
    argv = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, *override]
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(code, err, pattern)
    assert client.get_experiment_by_name(experiment) is None, "nothing was recorded for a run that never started"


@pytest.mark.parametrize("command", ["fit", "ablate"])
def test_a_model_in_a_module_python_cannot_import_asks_about_pythonpath(
    command, tmp_path, tracking_uri, client, experiment, capsys
) -> None:
    """``model: my_models.Net`` run where ``my_models`` is not importable: the module is named and PYTHONPATH
    asked about, in place of the parser's report and its --print_config hint."""
    config = tmp_path / "own.yaml"
    config.write_text("model: my_models_nowhere.Net\ndata: lit_d2l.data.Digits\n")
    if command == "fit":
        argv = ["fit", "--config", str(config), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    else:
        spec = tmp_path / "spec.yaml"
        spec.write_text(f"name: {experiment}\nbase: own.yaml\ngrid: {{model.lr: [0.1, 0.2]}}\n")
        argv = ["ablate", str(spec), "--tracking-uri", tracking_uri]
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(
        code,
        err,
        r"^lit-d2l: error: model: cannot import my_models_nowhere\.Net: Python found no module 'my_models_nowhere';"
        r" is the folder that holds my_models_nowhere\.py on PYTHONPATH\?",
    )
    assert "print_config" not in err
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"


@pytest.mark.parametrize("command", ["fit", "ablate"])
def test_a_users_model_refusing_a_value_in_its_init_is_one_line(
    command, tmp_path, tracking_uri, client, experiment, capsys
) -> None:
    """The user's own model raises ValueError in ``__init__`` (``nn.Dropout(1.5)``): named with the message, not
    jsonargparse's two chained tracebacks; for a sweep, with the spec and the arm."""
    config = tmp_path / "own.yaml"
    config.write_text("model: tests.sweeps.packs.own_models.SmallCNN\ndata: lit_d2l.data.Digits\n")
    if command == "fit":
        argv = ["fit", "--config", str(config), "--model.dropout", "1.5", "--tracking.uri", tracking_uri]
        argv += ["--tracking.experiment", experiment]
        where = ""
    else:
        spec = tmp_path / "spec.yaml"
        spec.write_text(f"name: {experiment}\nbase: own.yaml\ngrid: {{model.dropout: [0.2, 1.5]}}\n")
        argv = ["ablate", str(spec), "--tracking-uri", tracking_uri]
        where = rf"{re.escape(str(spec))}, arm model\.dropout=1\.5: "
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(
        code,
        err,
        rf"^lit-d2l: error: {where}tests\.sweeps\.packs\.own_models\.SmallCNN refused its settings: dropout "
        r"probability has to be between 0 and 1, but got 1\.5; change that value$",
    )
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"
    # torch refusing a layer's size in the model's __init__ (a RuntimeError) is one line too, with its kind
    argv = ["fit", "--model", "tests.sweeps.packs.own_models.InitLayersClassifier", "--data", "GaussianClusters"]
    argv += ["--model.hidden", "-1", "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    code, _, err = run_main(argv, capsys)
    pattern = r"InitLayersClassifier refused its settings: RuntimeError: Trying to create tensor with negative dim"
    assert_one_error_line(code, err, pattern)


def test_init_seed_on_a_model_that_makes_its_layers_in_init_is_refused(tracking_uri, client, experiment, capsys):
    """``model.init_seed`` pins the layers build() makes; layers made in __init__ came from seed_everything's stream
    (it was silently ignored, and recorded as the run's seeds.init)."""
    argv = ["fit", "--model", "tests.sweeps.packs.own_models.InitLayersClassifier", "--data", "GaussianClusters"]
    argv += ["--model.init_seed", "3", "--tracking.uri", tracking_uri, "--tracking.experiment", experiment, *QUIET]
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(
        code,
        err,
        r"^lit-d2l: error: model\.init_seed 3 pins layers made in build\(\), but InitLayersClassifier makes its "
        r"layers in __init__, from seed_everything's stream: set seed_everything, or make them in build\(\)$",
    )
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"


@pytest.mark.parametrize("key", ["max_epochs", "max_steps"])
def test_a_fit_of_zero_epochs_or_steps_is_refused(key: str, tracking_uri, client, experiment, capsys) -> None:
    """Lightning trains nothing and the run ended FINISHED, with an untrained model logged."""
    argv = ["fit", "--config", str(LINEAR_CONFIG), f"--trainer.{key}", "0", "--tracking.uri", tracking_uri]
    code, _, err = run_main([*argv, "--tracking.experiment", experiment, *QUIET], capsys)
    assert_one_error_line(code, err, rf"^lit-d2l: error: trainer\.{key} 0 trains nothing; give 1 or more \(or -1")
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"


def test_a_setting_lightning_refuses_once_the_fit_starts_records_nothing(tracking_uri, client, experiment, capsys):
    argv = ["fit", "--config", str(LINEAR_CONFIG.parent / "init_classification.yaml"), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, "--model", "lit_d2l.models.MLPScratch"]
    argv += ["--model.num_hiddens", "8", "--trainer.gradient_clip_val", "1.0"]  # manual optimisation cannot clip
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(code, err, r"gradient clipping is not supported for manual optimization")
    exp = client.get_experiment_by_name(experiment)
    assert exp is None or not client.search_runs([exp.experiment_id]), "the run it began was discarded"


def test_an_unwritable_store_directory_is_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    uri = f"sqlite:///{blocker}/mlruns/mlflow.db"
    code, _, err = run_main(["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", uri, *QUIET], capsys)
    assert_one_error_line(code, err, r"cannot write the tracking store .* not a writable directory")


def test_an_unreachable_server_is_one_line_and_fast(capsys) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    code, _, err = run_main(["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", uri, *QUIET], capsys)
    assert_one_error_line(code, err, r"cannot reach the tracking server http://127\.0\.0\.1")
    assert time.monotonic() - start < 30, "no minutes of HTTP retries before saying so"


def test_reading_commands_write_nothing_into_an_empty_file_named_as_the_store(tmp_path: Path, capsys) -> None:
    """A 0-byte file (``touch mlruns/mlflow.db``) holds no runs: ``runs`` and ``report`` say so and leave it empty
    (``runs`` wrote MLflow's whole schema into it)."""
    empty = tmp_path / "mlflow.db"
    empty.touch()
    uri = f"sqlite:///{empty}"
    code, out, _ = run_main(["runs", "--tracking-uri", uri], capsys)
    assert (code, out) == (0, f"no runs in {uri}\n")
    code, _, err = run_main(["report", "some-sweep", "--tracking-uri", uri], capsys)
    assert_one_error_line(code, err, "it holds no sweeps yet")
    for argv in (["fit", "--resume", "abc"], ["test", "--run", "abc"], ["validate", "--run", "abc"]):
        code, _, err = run_main([*argv, "--tracking.uri", uri], capsys)
        assert_one_error_line(code, err, "no run 'abc' in .*: it holds no runs yet")
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    missing = tmp_path / "none" / "mlflow.db"
    code, _, err = run_main(["fit", "--resume", "abc", "--tracking.uri", f"sqlite:///{missing}"], capsys)
    assert_one_error_line(code, err, "it holds no runs yet")
    assert not missing.parent.exists(), "no store made to say so"


def test_report_of_a_spec_file_looks_for_the_sweep_ablate_named(tmp_path: Path, capsys) -> None:
    spec = LINEAR_CONFIG.parent / "ablations" / "regularization.yaml"
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    code, _, err = run_main(["report", str(spec), "--tracking-uri", uri], capsys)
    assert_one_error_line(code, err, rf"no sweep '{load_spec(spec).sweep_id}' in {re.escape(uri)}; it holds no sweeps")
    code, _, err = run_main(["report", str(tmp_path / "nosuch.yaml"), "--tracking-uri", uri], capsys)
    assert_one_error_line(
        code, err, r"nosuch\.yaml: no such spec file; give a spec file, a sweep id or a parent run id"
    )


def test_unknown_command_and_help(capsys) -> None:
    code, _, err = run_main(["train"], capsys)
    assert_one_error_line(code, err, r"unknown command 'train'")
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and out.startswith("usage: lit-d2l") and "lit-d2l COMMAND --help" in out


def cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_readme_main_command_trains_and_records_a_finished_run(tmp_path: Path) -> None:
    process = cli("fit", "--config", str(LINEAR_CONFIG), cwd=tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert re.search(r"learned w = \[\d\.\d+, -\d\.\d+\]", out)
    match = re.search(r"MLflow run ([0-9a-f]{32}) \(FINISHED\) in sqlite:///mlruns/mlflow.db", out)
    assert match, out
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    run = client.get_run(match.group(1))
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml", "graph.png", "graph.svg"]
    assert {"train/loss", "val/loss", "test/loss", "param_err/w"} <= set(run.data.metrics)


@pytest.mark.slow
def test_sigterm_stops_training_and_marks_the_run_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", uri, "--tracking.experiment", "sigterm"]
    client = MlflowClient(uri)
    client.search_experiments()  # the store's tables made here, not by two processes at once
    process = cli(*args, "--trainer.max_epochs", "100000", *QUIET, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        experiment = (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("sigterm")
        if experiment and client.search_runs([experiment.experiment_id]):
            break
    time.sleep(1.0)  # well inside training
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Traceback" not in err
    assert only_run(client, "sigterm").info.status == "KILLED"


@pytest.mark.parametrize("config", sorted(p.name for p in (LINEAR_CONFIG.parent).glob("*.yaml")))
def test_every_shipped_config_parses(config: str) -> None:
    from lit_d2l.fit.parse import parse_fit

    parsed = parse_fit(["--config", str(LINEAR_CONFIG.parent / config), "--trainer.logger", "false"])
    assert parsed.model is not None and parsed.datamodule is not None


@pytest.mark.parametrize("scheduler", [[], ["--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1"]])
def test_callbacks_from_the_config_are_kept_beside_lit_d2ls(scheduler, tracking_uri, experiment) -> None:
    from lit_d2l.fit.run import build

    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    args += ["--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping", "--trainer.callbacks.monitor=val/loss"]
    names = [type(c).__name__ for c in build("fit", [*args, *QUIET, *scheduler]).trainer.callbacks]
    assert "EarlyStopping" in names and "GracefulStop" in names
    assert ("LearningRateMonitor" in names) == bool(scheduler)


def test_a_config_that_is_not_valid_yaml_is_named_in_its_one_line(tmp_path, tracking_uri, client, experiment, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  class_path: LinearRegressionScratch\n  init_args: {lr: 0.03\n")  # no closing brace
    argv = ["fit", "--config", str(config), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(code, err, rf"in {re.escape(str(config))}, line 3, column \d+; did not find expected")
    assert "<unicode string>" not in err
    assert client.get_experiment_by_name(experiment) is None


@pytest.mark.parametrize(
    ("text", "held"), [("", "nothing"), ("- a\n- b\n", "a list"), ("just text\n", "text"), ("3\n", "the value 3")]
)
def test_a_config_that_holds_no_settings_is_named_with_what_it_holds(tmp_path, tracking_uri, text, held, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text(text)
    code, _, err = run_main(["fit", "--config", str(config), "--tracking.uri", tracking_uri], capsys)
    assert_one_error_line(
        code, err, rf"{re.escape(str(config))}: a config is a YAML mapping of settings .* holds {held}"
    )


def test_a_fit_shorter_than_the_validation_cadence_says_why_it_has_no_val_metric(
    tracking_uri, client, experiment, capsys
) -> None:
    argv = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    argv += [*QUIET, "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "3"]
    code, out, _ = run_main(argv, capsys)
    assert code == 0
    said = "no val/ metric: validation runs every 3 epochs (trainer.check_val_every_n_epoch) and this fit trained 2;"
    assert said in out
    assert "val/loss" not in only_run(client, experiment).data.metrics
    code, out, _ = run_main([*argv, "--trainer.check_val_every_n_epoch", "2"], capsys)  # it validates after epoch 2
    assert code == 0 and "no val/ metric" not in out and "val/loss = " in out


class Stdout(io.StringIO):
    """stdout as a terminal (``tty=True``) or as a file or a pipe."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "given", "bar"),
    [
        (True, [], True),
        (False, [], False),  # a SLURM log or `> out.txt`: heartbeat lines, not a bar redrawn at every step
        (False, ["--trainer.enable_progress_bar", "true"], True),
        (False, ["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"], True),
        (True, ["--trainer.enable_progress_bar", "false"], False),
        (False, ["--trainer.enable_progress_bar", "false"], False),  # no bar in a log file: still its heartbeat
    ],
)
def test_a_progress_bar_only_on_a_terminal_unless_one_is_asked_for(
    tty, given, bar, tracking_uri, experiment, monkeypatch
) -> None:
    from lit_d2l.callbacks import Heartbeat
    from lit_d2l.fit.run import build

    monkeypatch.setattr(sys, "stdout", Stdout(tty))
    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    trainer = build("fit", [*args, "--trainer.enable_model_summary", "false", *given]).trainer
    assert (trainer.progress_bar_callback is not None) == bar
    beats = [callback for callback in trainer.callbacks if isinstance(callback, Heartbeat)]
    assert len(beats) == (0 if bar or tty else 1)
    # a caller's own (a sweep's arm run alone): its lines, not a second heartbeat beside them
    trainer = build("fit", [*args, "--trainer.enable_model_summary", "false", *given], [Heartbeat("arm")]).trainer
    assert [beat.label for beat in trainer.callbacks if isinstance(beat, Heartbeat)] == ["arm"]


@pytest.mark.parametrize(("head", "byte"), [(b"# caf\xe9 au lait\n", "e9"), (b"\x89PNG\r\n\x1a\n\x00\xff", "89")])
def test_a_config_that_is_not_utf8_is_one_line(head, byte, tmp_path, tracking_uri, client, experiment, capsys) -> None:
    """A Latin-1 comment or a binary file given as --config: one line naming the file, not a UnicodeDecodeError."""
    config = tmp_path / "not-utf8.yaml"
    config.write_bytes(head + LINEAR_CONFIG.read_bytes())
    for given in (["--config", str(config)], [f"--config={config}"]):
        argv = ["fit", *given, "--tracking.uri", tracking_uri, "--tracking.experiment", experiment, *QUIET]
        code, _, err = run_main(argv, capsys)
        assert_one_error_line(code, err, rf"{re.escape(str(config))}: not UTF-8 text \(byte 0x{byte} at offset \d+\)")
        assert "save it as UTF-8" in err
    assert client.get_experiment_by_name(experiment) is None


def test_runs_lists_each_run_with_its_validation_result(tracking_uri, client, experiment, capsys) -> None:
    argv = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    assert run_main([*argv, *QUIET, "--trainer.max_epochs", "1"], capsys)[0] == 0
    run = only_run(client, experiment)
    for spelling in ("--tracking-uri", "--tracking.uri"):  # the store option as fit spells it works too
        code, out, _ = run_main(["runs", spelling, tracking_uri], capsys)
        assert code == 0
        (line,) = [line for line in out.splitlines() if line.startswith(run.info.run_id)]
        assert f"val/loss {run.data.metrics['val/loss']:.4g}" in line, line


def test_runs_lists_a_sweeps_arms_under_its_parent(tracking_uri, client, experiment, capsys) -> None:
    experiment_id = client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name="sweep", start_time=1_000).info.run_id
    arms = [
        client.create_run(experiment_id, run_name=f"l2={l2}", start_time=2_000 + l2, tags={PARENT: parent}).info
        for l2 in (0, 3)
    ]
    later = client.create_run(experiment_id, run_name="a fit", start_time=9_000).info.run_id  # newest of all
    listing = ["runs", "--tracking-uri", tracking_uri, "--experiment", experiment]
    code, out, _ = run_main(listing, capsys)
    assert code == 0
    ids = [line.split()[0] for line in out.splitlines()]
    assert ids == [later, parent, arms[1].run_id, arms[0].run_id], out  # newest first, arms under their parent
    assert [line.startswith("  ") for line in out.splitlines()] == [False, False, True, True], out
    code, out, _ = run_main([*listing, "--limit", "2"], capsys)  # the newest two, and the parent of the arm among them
    assert [line.split()[0] for line in out.splitlines()] == [later, parent, arms[1].run_id] and code == 0, out
    assert [line.startswith("  ") for line in out.splitlines()] == [False, False, True], out
    for run_id in (parent, later, *(arm.run_id for arm in arms)):
        client.set_terminated(run_id)


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["ablate", "spec.yaml", "--resume", "--fresh"], r"--resume and --fresh contradict each other"),
        (["ablate", "spec.yaml", "--dry-run", "--workers", "0"], r"--workers must be >= 1, got 0"),
        (["runs", "--bogus"], r"unrecognized arguments: --bogus \(see lit-d2l runs --help\)"),
        # an option's prefix is not taken for it (argparse would read --trainer.max_epoch as --trainer.max_epochs)
        (
            ["fit", "--config", str(LINEAR_CONFIG), "--trainer.max_epoch", "1"],
            r"unrecognized arguments: --trainer.max_epoch 1; did you mean --trainer\.max_epochs\?$",
        ),
        (  # a misspelt group, and a lit-d2l setting
            ["fit", "--config", str(LINEAR_CONFIG), "--traner.max_epochs", "1"],
            r"unrecognized arguments: --traner.max_epochs 1; did you mean --trainer\.max_epochs\?$",
        ),
        (
            ["fit", "--config", str(LINEAR_CONFIG), "--tracking.experment", "x"],
            r"unrecognized arguments: --tracking.experment x; did you mean --tracking\.experiment\?$",
        ),
        (["ablate"], r"required: spec \(see lit-d2l ablate --help\)"),
        (["ablate", "spec.yaml", "--trainer.max_epochs", "2"], r"run settings go in its spec, under overrides:"),
        (["ablate", "spec.yaml", "--optimizer", "Adam"], r"--optimizer Adam \(a sweep's run settings go in its spec"),
        (["ablate", "spec.yaml", "--bogus"], r"unrecognized arguments: --bogus \(see lit-d2l ablate --help\)$"),
        (["fit"], r"required: model \(give a config: lit-d2l fit --config experiments/"),
        (["cv", "--folds", "2", "--trainer.max_epochs", "1"], r"cv folds a run's settings: give --config FILE"),
        (
            ["cv", "--config", str(LINEAR_CONFIG), "--data.num_folds=3"],
            r"cv sets --data.num_folds of each fold itself: leave it out \(--folds K says how many folds\)$",
        ),
        (["cv", "--config", str(LINEAR_CONFIG), "--data.fold", "1"], r"cv sets --data.fold of each fold itself"),
        (
            ["cv", "--config", str(LINEAR_CONFIG), "--workers", "2", "--trainer.devices", "0,1"],
            r"--workers fits each fold in one process, but trainer.devices x trainer.num_nodes is 2 \(one fit in "
            r"several processes\): give one or the other$",
        ),
        (["validate", "--run", "abc", "--ckpt_path", "x.ckpt"], r"^lit-d2l: error: --run takes the run's own newest"),
    ],
)
def test_bad_command_lines_are_one_line_each(argv, pattern, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "spec.yaml").write_text("base: x.yaml\ngrid: {model.lr: [0.1]}\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_one_error_line(code, err, pattern)


def test_version(capsys) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"lit-d2l {lit_d2l.__version__}"


@pytest.mark.parametrize("args", [["--help"], ["runs", "--tracking-uri", "sqlite:///missing/mlflow.db"]])
def test_a_reader_that_went_away_ends_the_command_quietly(args, tmp_path) -> None:
    # `lit-d2l runs | head -5`: stdout is a pipe whose reader has gone; every write to it fails.
    reader, writer = os.pipe()
    os.close(reader)
    done = subprocess.run(
        [sys.executable, "-m", "lit_d2l", *args], stdout=writer, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    os.close(writer)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 141, done.stderr[-2000:]
