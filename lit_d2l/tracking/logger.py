"""A Lightning logger that writes to MLflow in batches and always ends its run with a true status.

Lightning's stock ``MLFlowLogger`` makes one store write per metric value, which on SQLite costs
more than a small model's whole training step. Here values are buffered and
written with ``MlflowClient.log_batch`` in as few calls as MLflow's per-call limits allow, on a size
or time trigger and at the end of each fit/validate/test. Only MLflow's public client API is used:
the store, whichever it is, stays MLflow's to write. A tracking server's values go through an
:class:`~lit_d2l.tracking.outbox.Outbox`, so a server that is away never blocks the fit for long.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from torch import Tensor

from lit_d2l.errors import UserError
from lit_d2l.processes import interrupts
from lit_d2l.processes.interrupts import shielded
from lit_d2l.tracking.liveness import HEARTBEAT_TAG, Heartbeat, owner_tags
from lit_d2l.tracking.models import MODEL_NAME, log_model, register_model
from lit_d2l.tracking.outbox import MAX_METRICS_PER_BATCH, Outbox, batches
from lit_d2l.tracking.outbox import server_timeout_s as server_timeout_s_of
from lit_d2l.tracking.races import log_inputs, set_tags
from lit_d2l.tracking.runs import open_store
from lit_d2l.tracking.store import artifact_root, resolve_tracking_uri, sqlite_path
from lit_d2l.tracking.system_metrics import start_monitor
from lit_d2l.tracking.takeover import settle

#: Values a tracking server has not taken yet, kept beside the run's checkpoints (see Outbox).
UNSTORED_FILE = "unstored-values.jsonl"
#: Added to the name of a run that diverged, so that MLflow's runs table shows it.
DIVERGED_MARK = "✗ diverged"
#: This machine's files of runs kept on a tracking server (their checkpoints), relative to the working directory.
LOCAL_FILES = Path("mlruns")


class TrackingLogger(Logger):
    """Buffered MLflow logger: one run per fit, params, metrics, artifacts and an honest end status.

    In a Trainer of your own, add :class:`EndStatusOnException` to its callbacks: a run stopped by Ctrl-C or
    SIGTERM then ends KILLED, as in lit-d2l's commands, instead of FAILED.
    """

    def __init__(
        self,
        experiment_name: str = "lit-d2l",
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        flush_every: int = MAX_METRICS_PER_BATCH,
        flush_seconds: float = 10.0,
        run_id: str | None = None,
        system_metrics: bool = False,
        server_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self._initial_tags = dict(tags or {})
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None
        self._resume_run_id = run_id  # continue this existing run instead of creating one
        self._status_before_resume: str | None = None
        # On resume: the last step already stored per metric key; values up to it are not written again.
        self._stored_up_to: dict[str, int] = {}
        self._heartbeat: Heartbeat | None = None
        self._resumed = False
        #: Set by a command that goes on in the run after ``trainer.fit`` (a fit's test): Lightning's end of the fit
        #: leaves the run RUNNING, and the command ends it once done, so a kill in the test leaves it to resume.
        self.keep_open = False
        #: A resumed run's latest values as stored before this process took it over.
        self.stored_metrics: dict[str, float] = {}
        # (key, value, timestamp ms, step); tensor values stay on their device until a flush
        self._metrics: list[tuple[str, float | Tensor, int, int]] = []
        self._params: list[Param] = []
        self._tags: list[RunTag] = []
        self._logged_params: dict[str, str] = {}
        self._last_flush = time.monotonic()
        self._last_epoch: float | None = None
        self.status: str | None = None
        self._stored_name: str | None = None  # the run's name in the store, once it has one
        self._copy_in_worker = False  # unpickled in a spawned DDP worker: the creating process ends the run
        # MLflow's own entities (see "MLflow's datasets, models and system metrics" below)
        self._system_metrics = system_metrics
        self._monitor: Any = None  # MLflow's SystemMetricsMonitor while the run runs
        self.model_uri: str | None = None  # runs:/<run id>/model once the trained model is logged
        self.registered: str | None = None  # "<name> version <n>" once registered
        remote = self.tracking_uri.startswith(("http://", "https://"))
        self._server_timeout_s = server_timeout_s_of(server_timeout_s) if remote else None  # checked now
        self._outbox: Outbox | None = None  # a tracking server's values on their way
        self.stop_reason: str | None = None  # why this logger stopped the fit (a server away past its limit)
        self._ending = "FINISHED"  # the end status being set
        #: How the run ends when Lightning ends it after an exception (set by EndStatusOnException).
        self.end_status: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """What a spawned DDP worker (``ddp_spawn``) gets: the run to log into, without the client or heartbeat."""
        state = dict(self.__dict__)
        state.update(_client=None, _heartbeat=None, _outbox=None, _copy_in_worker=True, _monitor=None)
        return state

    # -- Lightning's Logger interface -------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The MLflow experiment id (Lightning's "name" of a group of runs)."""
        return self._experiment_id if self._run_id else None

    @property
    def version(self) -> str | None:
        """The MLflow run id."""
        return self._run_id

    @property
    def save_dir(self) -> str:
        """Checkpoints go to ``checkpoints/`` beside a SQLite store; for a server (whose artifacts may be
        anywhere) to ``mlruns/checkpoints/`` on this machine, not to ``./<experiment id>/`` as Lightning would."""
        db = sqlite_path(self.tracking_uri)
        return str((db.parent if db is not None else LOCAL_FILES) / "checkpoints")

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        """The MLflow client, with the run created on first use."""
        if self._run_id is None:
            self._start_run()
        elif self._client is None:  # a copy in a spawned worker logs into the run its parent created
            self._client = MlflowClient(self.tracking_uri)
        assert self._client is not None
        return self._client

    @property
    def started(self) -> bool:
        """Whether the run exists yet (``run_id`` creates it)."""
        return self._run_id is not None

    @property
    def run_id(self) -> str:
        """The MLflow run id, creating the run if needed (rank zero only)."""
        _ = self.experiment
        assert self._run_id is not None
        return self._run_id

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Any) -> None:
        """Queue params as flattened dotted names; a key already logged with another value is skipped."""
        params = params if isinstance(params, Mapping) else vars(params)
        for key, value in flatten(params).items():
            text = param_text(value)
            previous = self._logged_params.get(key)
            if previous is None:
                self._logged_params[key] = text
                self._params.append(Param(key, text))
            elif previous != text and not self._resumed:  # a resume may change e.g. ckpt_path
                rank_zero_warn(f"param {key!r} already logged as {previous!r}; not overwriting with {text!r}")

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float | Tensor], step: int | None = None) -> None:
        """Queue metric values; written in batches.

        Lightning adds ``epoch`` to every step's metrics; it is recorded only when it changes,
        which keeps the whole step function and halves the values of a per-step log.
        """
        timestamp, step = int(time.time() * 1000), step or 0
        for key, value in metrics.items():
            if step <= self._stored_up_to.get(key, -1):  # a resumed run re-doing steps it had stored
                continue
            if key == "epoch":
                if value == self._last_epoch:
                    continue
                self._last_epoch = value
            self._metrics.append((key, value, timestamp, step))
        if len(self._metrics) >= self._flush_every:
            self.flush()

    @rank_zero_only
    def save(self) -> None:
        """Called by Lightning after each logging step: flush only when the buffer is old."""
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's end of the run: "success" ends it FINISHED, unless :attr:`keep_open` (the values are stored
        and the run stays RUNNING); on an exception Lightning says "failed", and the run ends as
        :class:`EndStatusOnException` recorded from that exception (FAILED where none did)."""
        if status in ("success", "finished") and self.keep_open:
            self.flush()
        else:
            self.end("FINISHED" if status in ("success", "finished") else self.end_status or "FAILED")

    @rank_zero_only
    def end(self, status: str) -> None:
        """Flush and end the run with MLflow's ``status``: FINISHED, FAILED or KILLED (see :func:`run_status_for`)."""
        if self._run_id is None and (status != "FINISHED" or not self._has_pending()):
            self._metrics, self._params, self._tags = [], [], []  # failed before it began: record nothing
            return
        with shielded():  # a second Ctrl-C or SIGTERM now would lose what is still buffered
            try:
                self.flush()
            finally:  # even when a write fails, the run must not stay RUNNING
                if self._outbox is None:
                    self.end_run(status)
        if self._outbox is not None:  # not shielded: waiting for a server away, a stop signal is honoured at once
            self.end_run(status)

    # -- lit-d2l additions --------------------------------------------------------------------

    @rank_zero_only
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Queue run tags. A run tagged ``outcome=diverged`` also says so in its name (``l2=3/s0 ✗ diverged``):
        MLflow's runs table shows every run that ended as FINISHED, so the name is where a divergence shows."""
        self._tags.extend(RunTag(key, str(value)) for key, value in tags.items())
        if str(tags.get("outcome")) == "diverged" and self._stored_name and DIVERGED_MARK not in self._stored_name:
            self._stored_name = f"{self._stored_name} {DIVERGED_MARK}"
            self._tags.append(RunTag("mlflow.runName", self._stored_name))

    @rank_zero_only
    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact file of the run."""
        self.experiment.log_text(self.run_id, text, artifact_file)

    @rank_zero_only
    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure as an artifact image of the run."""
        self.experiment.log_figure(self.run_id, figure, artifact_file)

    @rank_zero_only
    def log_file(self, path: str | Path) -> None:
        """Store a file as an artifact of the run, under its own name."""
        self.experiment.log_artifact(self.run_id, str(path))

    @rank_zero_only
    def flush(self) -> None:
        """Write everything queued with ``log_batch``, in as few calls as MLflow's per-call limits allow."""
        with shielded():  # a stop signal takes effect once the values taken off the buffer are stored
            self._last_flush = time.monotonic()
            if not self._has_pending() and not (self._outbox is not None and self._outbox.values_waiting):
                return
            client, run_id = self.experiment, self.run_id
            metrics = [Metric(*metric) for metric in _read_values(self._metrics)]
            calls = batches(self._params, self._tags, metrics)
            self._metrics, self._params, self._tags = [], [], []
            outbox = self._server_outbox()
            if outbox is None:
                # Synchronous on purpose; log_batch(synchronous=False) measured slower (benchmarks/RESULTS.md).
                # Every value must be stored before set_terminated anyway, and set_terminated shuts MLflow's
                # async queue down, waiting for its thread, which looks for work once a second: a fixed wait
                # at the end of every run. The writes it would overlap with training share the GIL with a
                # Python-bound training loop, so they barely get cheaper.
                for call in calls:
                    client.log_batch(run_id, metrics=call.metrics, params=call.params, tags=call.tags)
                return
            outbox.put(calls)
            outbox.send()
            reason = outbox.overdue()
            # Past the limit a fit stops as on SIGTERM (checkpoint, resume line); anything else runs to its end.
            if reason is not None and self.stop_reason is None and interrupts.stop_fit():
                self.stop_reason = reason

    def _server_outbox(self) -> Outbox | None:
        """The outbox of a run on a tracking server (None for a SQLite store, written directly)."""
        if self._outbox is None and self._server_timeout_s is not None:
            assert self._client is not None and self._run_id is not None
            keep = Path(self.save_dir) / str(self._experiment_id) / self._run_id / UNSTORED_FILE
            self._outbox = Outbox(self._client, self._run_id, self.tracking_uri, keep, self._server_timeout_s)
        return self._outbox

    def unstored(self) -> str | None:
        """Why some of this run's values (or its end status) are not stored, and where they are kept; else None."""
        outbox = self._outbox
        if outbox is None or (not outbox.values_waiting and self.status != "RUNNING"):
            return None
        reason = outbox.overdue() or f"tracking server {self.tracking_uri} unreachable"
        resume = f"once the server is back, lit-d2l fit --resume {self._run_id}"
        if not outbox.values_waiting:
            return f"{reason}: run {self._run_id} could not be marked {self._ending}; {resume} does"
        kept = f"{outbox.values_waiting} values not stored are kept in {outbox.keep_file}"
        return f"{reason}: {kept}; {resume} stores them"

    def _has_pending(self) -> bool:
        return bool(self._metrics or self._params or self._tags)

    @rank_zero_only
    def start(self) -> None:
        """Create the run now and write what is queued, before a multi-process fit starts its processes
        (so a worker spawned by ``ddp_spawn`` logs into this run, and this process ends it)."""
        _ = self.run_id
        self.flush()

    @rank_zero_only
    def end_run(self, status: str) -> None:
        """Set the run's terminal status (FINISHED, FAILED or KILLED); safe to call again."""
        if self._run_id is None or self.status == status or self._copy_in_worker:
            return
        assert self._client is not None
        self._stop_threads()
        self._ending = status
        client, run_id, outbox = self._client, self._run_id, self._server_outbox()
        if outbox is None:
            client.set_terminated(run_id, status)
        # A finished run waits for a server that is away (up to the limit); a stopped one does not.
        elif not outbox.close(lambda: client.set_terminated(run_id, status), patient=status == "FINISHED"):
            return  # not stored: the run stays RUNNING there until a later command finds its process gone
        self.status = status

    @rank_zero_only
    def abandon(self) -> None:
        """Undo this run after bad input: a run it created is deleted; a resumed run gets its old status back."""
        if self._run_id is None or self._copy_in_worker:
            return
        assert self._client is not None
        self._stop_threads()
        self._metrics, self._params, self._tags = [], [], []
        if self._status_before_resume is None:
            self._client.delete_run(self._run_id)
            self.status = "DELETED"
        else:
            self._client.set_terminated(self._run_id, self._status_before_resume)
            self.status = self._status_before_resume

    def _start_run(self) -> None:
        client = open_store(self.tracking_uri)
        self._experiment_id = ensure_experiment(client, self.experiment_name, self.tracking_uri)
        if self._resume_run_id is not None:
            self._continue_run(client, self._resume_run_id)
        else:
            tags = {"mlflow.source.name": "lit-d2l", **self._initial_tags, **owner_tags()}
            run = client.create_run(self._experiment_id, run_name=self.run_name, tags=tags)
            self._stored_name, self._run_id = run.info.run_name, run.info.run_id
            self._client, self.status = client, "RUNNING"
        self._heartbeat = Heartbeat(self.tracking_uri, self._run_id)
        if self._system_metrics and not self._copy_in_worker:
            self._monitor = start_monitor(self.tracking_uri, self._run_id, resume=self._resumed)

    def _restore_unstored(self) -> None:
        """Queue the values a stopped process kept because its server was away: written first, not logged again."""
        outbox = self._server_outbox()
        for batch in outbox.restore() if outbox is not None else []:
            for metric in batch.metrics:
                self._stored_up_to[metric.key] = max(self._stored_up_to.get(metric.key, -1), metric.step)
            for param in batch.params:
                self._logged_params.setdefault(param.key, param.value)

    def _continue_run(self, client: MlflowClient, run_id: str) -> None:
        """Take over an existing run: this process becomes its owner; what it stored is not written again."""
        run = client.get_run(run_id)
        self._stored_name = run.info.run_name
        if run.info.status != "RUNNING":
            self._status_before_resume = run.info.status
        self._resumed = True
        self.stored_metrics = dict(run.data.metrics)
        self._logged_params = dict(run.data.params)
        self._stored_up_to = {
            key: max(m.step for m in client.get_metric_history(run_id, key)) for key in run.data.metrics
        }
        # epoch is recorded when it changes: the stored one is the last change, not a new one after a resume
        self._last_epoch = run.data.metrics.get("epoch")
        tags = {**self._initial_tags, **owner_tags()}
        # A run this process has just created RUNNING with these tags (a sweep's claimed pair) needs no writes.
        if run.info.status != "RUNNING" or any(
            run.data.tags.get(key) != str(value) for key, value in tags.items() if key != HEARTBEAT_TAG
        ):
            # Its owner first: a resume that reads the run RUNNING (and so refuses) can then always say who runs it.
            set_tags(client, run_id, tags)
            client.update_run(run_id, status="RUNNING")
        settle(client, run_id, run.data.tags)  # owned by this process now: its fit --resume claim is done
        self._client, self._run_id, self.status = client, run_id, "RUNNING"
        self._restore_unstored()

    # -- MLflow's datasets, models and system metrics ----------------------------------------

    @rank_zero_only
    def log_dataset(self, dataset: Dataset, context: str = "training") -> None:
        """Record ``dataset`` (:func:`~lit_d2l.tracking.datasets.dataset_of`) as an input of the run."""
        inputs = [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        log_inputs(self.experiment, self.run_id, inputs)

    @rank_zero_only
    def log_model(self, model: torch.nn.Module, step: int = 0, register_as: str | None = None) -> None:
        """Store ``model`` as the run's MLflow model (:attr:`model_uri`); with ``register_as``, also as a new
        version of that registered model (:attr:`registered`)."""
        client, run_id = self.experiment, self.run_id
        assert self._experiment_id is not None
        outbox = self._server_outbox()
        if outbox is not None:
            outbox.send()  # the values first; a model goes only to a server that answers (no wait in MLflow's retries)
            if outbox.away:  # the fit's last line says to resume once the server is back: that fit logs it
                return
        if self._resumed and _has_model_at(client, run_id, step):  # a fit stopped after training logged it
            self.model_uri = f"runs:/{run_id}/{MODEL_NAME}"
            return
        logged = log_model(client, self._experiment_id, run_id, model, step, self._logged_params)
        self.model_uri = f"runs:/{run_id}/{MODEL_NAME}"
        if register_as is not None:
            version = register_model(client, register_as, logged, run_id)
            self.registered = f"{register_as} version {version.version}"

    def _stop_threads(self) -> None:
        """The heartbeat, and system metrics: their last samples go to the store while the run is still RUNNING."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.finish()


def _has_model_at(client: MlflowClient, run_id: str, step: int) -> bool:
    """Whether the run holds a READY logged model of step ``step``."""
    outputs = client.get_run(run_id).outputs
    steps = {output.model_id: output.step for output in (outputs.model_outputs if outputs else [])}
    return any(at == step and str(client.get_logged_model(m).status) == "READY" for m, at in steps.items())


#: MLflow 3's UI opens an experiment of this kind on its runs table, not on the GenAI overview.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) if it does not exist yet,
    and marked as model training (:data:`EXPERIMENT_TAGS`)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_root(tracking_uri), tags=EXPERIMENT_TAGS)
        except MlflowException:  # another process created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():  # experiments made by older lit-d2l versions or by hand
        if experiment.tags.get(key) is None:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _read_values(pending: list[tuple[str, float | Tensor, int, int]]) -> list[tuple[str, float, int, int]]:
    """Queued metrics with float values; tensor values are read off their device in one transfer."""
    tensors = [value.detach().reshape(()) for _, value, _, _ in pending if isinstance(value, Tensor)]
    read = iter(torch.stack(tensors).to(torch.float64).cpu().tolist() if tensors else ())
    return [
        (key, next(read) if isinstance(value, Tensor) else float(value), timestamp, step)
        for key, value, timestamp, step in pending
    ]


def param_text(value: Any) -> str:
    """A param's value as MLflow stores it: its text, cut to MLflow's longest param value."""
    return str(value)[:MAX_PARAM_VAL_LENGTH]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def run_status_for(exception: BaseException) -> str:
    """How a run that ``exception`` ended is recorded: KILLED for a stop (Ctrl-C, SIGTERM), FAILED for an error,
    or what the exception declares (a divergence is a result: FINISHED)."""
    declared = getattr(exception, "run_status", None)
    if declared in ("FINISHED", "FAILED", "KILLED"):
        return declared
    # Lightning says "failed" for every exception; an interrupt or SIGTERM is a kill, not a failure.
    if isinstance(exception, (KeyboardInterrupt, SystemExit)):
        return "KILLED"
    return "FAILED"


@contextmanager
def ends_on_error(logger: TrackingLogger) -> Iterator[TrackingLogger]:
    """A logger's run (a sweep's or cv's parent, say) ends FAILED, or KILLED on a stop, if the block raises. A stop
    learns the run (``Interrupted.recorded_run_id``): once a sweep's parent exists, the same command resumes it."""
    try:
        yield logger
    except BaseException as exc:
        logger.end(run_status_for(exc))
        if isinstance(exc, interrupts.Interrupted):
            exc.recorded_run_id = logger.run_id
        raise


@contextmanager
def closing(logger: TrackingLogger) -> Iterator[TrackingLogger]:
    """Use a logger's run outside a Trainer; it ends FINISHED, or as :func:`ends_on_error` if the block raises."""
    with ends_on_error(logger):
        yield logger
    logger.end("FINISHED")


#: Where a run that an error ended keeps its traceback (a sweep's progress line has room for one line of it).
TRACEBACK_ARTIFACT = "error.txt"


def failure_text(exc: BaseException) -> str:
    """A sweep's line for a run that ``exc`` ended: bad input as said, an error with its type and where the run
    keeps its traceback (when it does)."""
    if isinstance(exc, UserError):
        return str(exc)
    kept = getattr(exc, "traceback_artifact", None)
    return f"{type(exc).__name__}: {exc}" + (f" (the traceback is {kept} in its run)" if kept else "")


class EndStatusOnException(L.Callback):
    """Lightning ends its loggers' runs with "failed" whatever stopped the fit: this tells each TrackingLogger
    (a pack's arms included) the status that exception means, before Lightning ends the run. A run that an error
    ended FAILED (not bad input) keeps its traceback as :data:`TRACEBACK_ARTIFACT`."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        status = run_status_for(exception)
        for logger in trainer.loggers:
            if hasattr(logger, "end_status"):
                logger.end_status = status
        if status != "FAILED" or isinstance(exception, UserError):
            return
        text = "".join(traceback.format_exception(exception))
        runs = [run for logger in trainer.loggers for run in getattr(logger, "arms", [logger])]
        for run in runs:
            if isinstance(run, TrackingLogger) and run.started:
                with contextlib.suppress(Exception):  # a store that fails now must not hide the error itself
                    run.log_text(text, TRACEBACK_ARTIFACT)
                    exception.traceback_artifact = TRACEBACK_ARTIFACT  # type: ignore[attr-defined]
