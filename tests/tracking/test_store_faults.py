"""A tracking store that cannot be used fails fast in one line: broken files, no permission, disk full, races."""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import lit_d2l.fit.run  # noqa: F401  (imported up front, so the timings below are the check's, not the imports')
from tests.conftest import LINEAR_CONFIG, REPO
from tests.test_cli import QUIET, assert_one_error_line, run_main

FIT = ["fit", "--config", str(LINEAR_CONFIG), *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"]


def fit_fails_fast(uri: str, pattern: str, capsys) -> None:
    start = time.monotonic()
    code, _, err = run_main([*FIT, "--tracking.uri", uri], capsys)
    assert_one_error_line(code, err, pattern)
    assert time.monotonic() - start < 15, "no stall before saying so"


def test_a_database_path_that_is_a_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "mlflow.db").mkdir()
    fit_fails_fast(f"sqlite:///{tmp_path}/mlflow.db", r"database .*/mlflow\.db is a directory; move it aside", capsys)


def test_a_database_of_random_bytes(tmp_path: Path, capsys) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(200_000))
    before = db.read_bytes()
    fit_fails_fast(f"sqlite:///{db}", r"mlflow\.db is not a SQLite database .*; move it aside", capsys)
    assert db.read_bytes() == before, "nothing was written into it"


def copy_of_store(tracking_uri: str, db: Path) -> Path:
    """A consistent copy of the session's store (SQLite's backup, while other tests write it)."""
    source, copy = sqlite3.connect(tracking_uri.removeprefix("sqlite:///")), sqlite3.connect(db)
    with source, copy:
        source.backup(copy)
    source.close()
    copy.close()
    return db


def test_another_programs_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path, capsys) -> None:
    """MLflow's ~70 tables were written into it, even by runs, which only reads."""
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.execute("INSERT INTO notes (body) VALUES ('precious')")
    connection.close()
    before = db.read_bytes()
    pattern = r"mlflow\.db is another program's SQLite database \(it has no MLflow tables\); nothing was written to it"
    fit_fails_fast(f"sqlite:///{db}", pattern, capsys)
    code, _, err = run_main(["runs", "--tracking-uri", f"sqlite:///{db}"], capsys)
    assert_one_error_line(code, err, pattern)
    assert db.read_bytes() == before


@pytest.mark.parametrize("left", ["no schema version", "a migration's temporary table"])
def test_a_store_whose_creation_stopped_part_way_is_one_line(left: str, tracking_uri, tmp_path: Path, capsys) -> None:
    """Stores an older lit-d2l left when stopped while MLflow made its schema: every command was a traceback."""
    db = copy_of_store(tracking_uri, tmp_path / "mlflow.db")
    with sqlite3.connect(db) as connection:
        if left == "no schema version":
            connection.execute("DROP TABLE alembic_version")
        else:
            connection.execute("CREATE TABLE _alembic_tmp_metrics (key TEXT)")
        (runs,) = connection.execute("SELECT count(*) FROM runs").fetchone()
    connection.close()
    pattern = rf"mlflow\.db holds an MLflow schema whose creation or upgrade stopped part-way \({runs} runs in it\)"
    fit_fails_fast(f"sqlite:///{db}", pattern, capsys)


def test_a_store_of_another_mlflow_version_is_one_line(tracking_uri: str, tmp_path: Path, capsys) -> None:
    """MLflow's 41-71-line traceback, advising an upgrade even for a newer schema."""
    db = copy_of_store(tracking_uri, tmp_path / "mlflow.db")
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    connection.close()
    pattern = (
        r"mlflow\.db has MLflow schema ffffffffffff, and this MLflow expects \w+: another MLflow version wrote it\. "
        r"If that version was older, back it up and run `mlflow db upgrade sqlite:///\S+`; if newer, use that MLflow"
    )
    code, _, err = run_main([*FIT, "--tracking.uri", f"sqlite:///{db}"], capsys)
    assert_one_error_line(code, err, pattern)
    code, _, err = run_main(["runs", "--tracking-uri", f"sqlite:///{db}"], capsys)
    assert_one_error_line(code, err, pattern)


@pytest.mark.slow
def test_a_kill_while_the_store_is_created_leaves_no_broken_store(tmp_path: Path) -> None:
    """MLflow's migrations run outside transactions on SQLite: a kill part-way through them left a store that every
    later command failed on with a traceback (found by a hostile tryout, 3 kills out of 3)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fit = [sys.executable, "-m", "lit_d2l", *FIT]
    process = subprocess.Popen(fit, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = tmp_path / "mlruns"
    deadline = time.monotonic() + 60
    while not any(_migrating(path) for path in store.glob("*mlflow.db*")):  # mlflow.db, or where it is built
        assert process.poll() is None and time.monotonic() < deadline, "the schema was made before it could be killed"
        time.sleep(0.005)
    process.kill()
    process.wait()
    for command in (["runs"], FIT):
        done = subprocess.run([sys.executable, "-m", "lit_d2l", *command], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()[-2000:]
    assert not list(store.glob(".mlflow.db.creating-*")), "the half-made schema of the killed creator is gone"
    assert MlflowClient(f"sqlite:///{store}/mlflow.db").search_runs(["1"])[0].info.status == "FINISHED"


def _migrating(db: Path) -> bool:
    """Whether MLflow's migrations are part-way through ``db`` (one of them has its temporary table there)."""
    try:
        connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=0.01)
        try:
            names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return any(name.startswith("_alembic_tmp_") for (name,) in names)


def test_a_truncated_database(tracking_uri: str, tmp_path: Path, capsys) -> None:
    whole = Path(tracking_uri.removeprefix("sqlite:///")).read_bytes()
    db = tmp_path / "mlflow.db"
    db.write_bytes(whole[: len(whole) // 2])
    fit_fails_fast(f"sqlite:///{db}", r"mlflow\.db is truncated \(\d+ of \d+ bytes\); restore it from a backup", capsys)


def test_a_database_with_a_broken_schema_page(tracking_uri: str, tmp_path: Path, capsys) -> None:
    whole = bytearray(Path(tracking_uri.removeprefix("sqlite:///")).read_bytes())
    whole[100:4096] = os.urandom(3996)  # page 1 after the header: the root of sqlite_master
    db = tmp_path / "mlflow.db"
    db.write_bytes(bytes(whole))
    fit_fails_fast(f"sqlite:///{db}", r"mlflow\.db is corrupt \(.*\); restore it from a backup", capsys)


# -- permissions: we may be root, for whom chmod changes nothing, so the CLI runs without privileges --------


def drop_privileges() -> None:
    """For ``preexec_fn``: as root, exec without capabilities (root is then bound by file modes like any
    owner), or else as nobody; as anyone else, nothing."""
    if os.geteuid() != 0:
        return
    noroot = 0x0F  # SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | ..._LOCKED
    if ctypes.CDLL(None, use_errno=True).prctl(28, noroot, 0, 0, 0) != 0:  # PR_SET_SECUREBITS
        os.setgid(65534)
        os.setuid(65534)


def unprivileged(argv: list[str], cwd: Path, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(cwd)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        argv, cwd=cwd, env=env, preexec_fn=preexec or drop_privileges, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """A directory the unprivileged child can use."""
    tmp_path.chmod(0o777)
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0o444)
    check = unprivileged([sys.executable, "-c", f"open({str(probe)!r}, 'r+b')"], tmp_path)
    if check.returncode == 0 or "PermissionError" not in check.stderr:
        pytest.skip(f"cannot run without privileges here: {check.stderr[-300:]}")
    probe.unlink()
    return tmp_path


def shared_store(tracking_uri: str, shared_dir: Path) -> Path:
    """A copy of the session's store in ``shared_dir/store/``, a directory the unprivileged child can use."""
    store = shared_dir / "store"
    store.mkdir(mode=0o777)
    db = store / "mlflow.db"
    shutil.copy(tracking_uri.removeprefix("sqlite:///"), db)
    return db


@pytest.mark.slow
def test_a_read_only_database_and_a_read_only_artifacts_directory(tracking_uri: str, shared_dir: Path) -> None:
    db = shared_store(tracking_uri, shared_dir)
    store = db.parent
    db.chmod(0o444)
    (store / "artifacts").mkdir(mode=0o777)
    fit = [sys.executable, "-m", "lit_d2l", *FIT, "--tracking.uri", f"sqlite:///{db}"]
    start = time.monotonic()
    result = unprivileged(fit, shared_dir)
    pattern = r"cannot open the tracking database .*mlflow\.db .*chmod u\+rw"
    assert_one_error_line(result.returncode, result.stderr, pattern)
    print(f"read-only database: {time.monotonic() - start:.1f} s to the error")

    db.chmod(0o666)
    (store / "artifacts").chmod(0o555)
    before = db.read_bytes()
    result = unprivileged(fit, shared_dir)
    assert_one_error_line(result.returncode, result.stderr, r"store/artifacts is not a writable directory")
    assert db.read_bytes() == before, "no run was created"


# -- disk full in the middle of a run --------------------------------------------------------------------


@pytest.mark.slow
def test_disk_full_during_a_run_is_one_line(tracking_uri: str, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy(tracking_uri.removeprefix("sqlite:///"), db)
    limit = db.stat().st_size + 4096  # room for the run to start, not for its values

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    fit = [sys.executable, "-m", "lit_d2l", *FIT, "--tracking.uri", f"sqlite:///{db}"]
    result = unprivileged(fit, tmp_path, preexec=small_disk)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("lit-d2l: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "writing " + str(db) in errors[0] and "free space or point --tracking.uri elsewhere" in errors[0]


# -- a new store, created by several processes at once ---------------------------------------------------


@pytest.mark.slow
def test_processes_starting_on_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fits = [
        subprocess.Popen(
            [sys.executable, "-m", "lit_d2l", *FIT, "--tracking.uri", uri, "--tracking.experiment", f"race-{i}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    errors = [fit.communicate(timeout=400)[1] for fit in fits]
    assert [fit.returncode for fit in fits] == [0, 0, 0], [err[-1500:] for err in errors]
    client = MlflowClient(uri)
    for i in range(3):
        runs = client.search_runs([client.get_experiment_by_name(f"race-{i}").experiment_id])
        assert [run.info.status for run in runs] == ["FINISHED"]


def test_mlflow_makes_a_relative_artifact_location_absolute(client: MlflowClient, experiment, tmp_path, monkeypatch):
    """Why artifact_root() is absolute and a moved project's old runs point at the old place: MLflow 3
    resolves a relative location against the working directory when it stores it (a canary for a change)."""
    monkeypatch.chdir(tmp_path)
    created = client.get_experiment(client.create_experiment(experiment, artifact_location="mlruns/artifacts"))
    assert created.artifact_location == str(tmp_path / "mlruns" / "artifacts")


# -- what bad input and read-only commands leave behind ---------------------------------------------------


@pytest.mark.slow
def test_bad_input_on_a_new_store_prints_one_line_and_makes_no_store(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "lit_d2l", *FIT, "--model.lr", "0"]  # the default store, in a new directory
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert_one_error_line(result.returncode, result.stderr, r"model\.lr must be > 0")
    assert result.stderr.strip().count("\n") == 0, result.stderr  # not MLflow's "Creating initial ... tables" too
    assert not (tmp_path / "mlruns").exists(), "no empty store left behind"


@pytest.mark.slow
def test_runs_lists_a_read_only_store(tracking_uri: str, shared_dir: Path) -> None:
    db = shared_store(tracking_uri, shared_dir)
    store = db.parent
    run_id = MlflowClient(f"sqlite:///{db}").create_run("0", run_name="kept").info.run_id
    MlflowClient(f"sqlite:///{db}").set_terminated(run_id, "FINISHED")
    db.chmod(0o444)
    store.chmod(0o555)
    before = db.read_bytes()
    result = unprivileged([sys.executable, "-m", "lit_d2l", "runs", "--tracking-uri", f"sqlite:///{db}"], shared_dir)
    store.chmod(0o777)
    assert result.returncode == 0, result.stderr
    assert f"{run_id}  FINISHED" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == before, "listing changed nothing"


@pytest.mark.parametrize(
    ("uri", "pattern"),
    [
        (
            "sqlit:///mlruns/mlflow.db",
            r"'sqlit:///mlruns/mlflow\.db' cannot be used: MLflow has no store of scheme "
            r"'sqlit' \(did you mean sqlite\?\); choose another store",
        ),
        ("bogus://x", r"'bogus://x' cannot be used: MLflow has no store of scheme 'bogus'; choose another store"),
        ("SQLITE:///mlruns/mlflow.db", r"'SQLITE:///mlruns/mlflow\.db' cannot be used: .+ \(did you mean sqlite\?\)"),
        ("postgresql://u:p@127.0.0.1:1/db", r"cannot be used: .+; choose another store"),  # no driver, or no server
        ("sqlite:/x.db", r"'sqlite:/x\.db' names no SQLite file; write sqlite:///relative/path\.db \(three slashes\)"),
        ("sqlite://x.db", r"'sqlite://x\.db' names no SQLite file; .+ or sqlite:////absolute/path\.db \(four\)"),
        ("sqlite://", r"'sqlite://' names no SQLite file"),  # in memory: gone with the process
        ("sqlite:///:memory:", r"'sqlite:///:memory:' is an in-memory database, which keeps nothing once the process"),
        ("sqlite:///file::memory:?uri=true", r"'sqlite:///file::memory:\?uri=true' is an in-memory database"),
        ("./mlruns", r"'\./mlruns' is a plain file store, which MLflow >= 3\.13 refuses; use a database such as"),
        ("file:./mlruns", r"'file:\./mlruns' is a plain file store"),
    ],
)
def test_a_store_of_another_scheme_that_cannot_be_used_is_one_line(uri: str, pattern: str, capsys) -> None:
    fit_fails_fast(uri, pattern, capsys)
    code, _, err = run_main(["runs", "--tracking-uri", uri], capsys)
    assert_one_error_line(code, err, pattern)
