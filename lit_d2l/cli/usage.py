"""The short help of ``lit-d2l fit``, ``validate`` and ``test``: a page of LightningCLI's options, not its 500 lines.

It lists the models and DataModules of :mod:`lit_d2l.fit.catalog`. Nothing here imports torch or
Lightning: help answers at once. ``lit-d2l fit --help full`` is LightningCLI's own help (every Trainer
option). Every other command's help is argparse's, from :mod:`lit_d2l.cli.commands`.
"""

from __future__ import annotations

from lit_d2l.fit import catalog
from lit_d2l.fit.catalog import CKPT_PATH_HELP, LOG_GRAPH_HELP, TEST_AFTER_FIT_HELP

#: The keys of :class:`~lit_d2l.tracking.settings.TrackingSettings` (not imported: lit_d2l.tracking loads MLflow).
TRACKING_KEYS = (
    "experiment",
    "uri",
    "run_name",
    "tags",
    "run_id",
    "log_model",
    "register_model",
    "system_metrics",
    "server_timeout_s",
)

_EVALUATE_USAGE = """usage: lit-d2l {command} --run RUN_ID [--section.key VALUE ...]
       lit-d2l {command} --config CONFIG.yaml --ckpt_path FILE [--section.key VALUE ...]

Evaluate trained weights: --run takes that fit's newest checkpoint (and its config) and records
into its MLflow run; --ckpt_path takes any checkpoint and records a new run."""

_FIT_USAGE = """usage: lit-d2l fit --config CONFIG.yaml [--section.key VALUE ...]
       lit-d2l fit --model MODEL --data DATAMODULE [--section.key VALUE ...]
       lit-d2l fit --resume RUN_ID [--section.key VALUE ...]

Train a model and record the run in MLflow. Every constructor argument of the model, the
DataModule and Lightning's Trainer is a key, set in a YAML config or on the command line."""

#: (option, what it does, the commands it is for) of fit, validate and test; the options are LightningCLI's.
_OPTIONS = (
    ("--resume RUN_ID", "continue that interrupted fit, from its newest checkpoint, in its own run", "fit"),
    ("--run RUN_ID", "that fit's newest checkpoint and config; recorded in its run", "validate test"),
    ("-c, --config FILE", "a YAML config, e.g. experiments/linear_regression.yaml (several: in order)", ""),
    ("--model MODEL", "a model below, or a class path (my_models.MyNet); --model.KEY VALUE", ""),
    ("--model.help MODEL", "that model's keys and defaults", ""),
    ("--data DATAMODULE", "a DataModule below, or a class path; --data.KEY VALUE", ""),
    ("--data.help DATAMODULE", "that DataModule's keys and defaults", ""),
    ("--trainer.KEY VALUE", "Lightning's Trainer: max_epochs, accelerator, devices, precision, ...", ""),
    ("--tracking.KEY VALUE", "where and what the run records (MLflow):\n" + ", ".join(TRACKING_KEYS), ""),
    (
        "--optimizer CLASS",
        "a torch.optim optimizer replacing the model's SGD (Adam, AdamW, ...);\n"
        "--optimizer.lr VALUE, --optimizer.help CLASS",
        "fit",
    ),
    (
        "--lr_scheduler CLASS",
        "a torch.optim.lr_scheduler class (StepLR, CosineAnnealingLR, ...);\n--lr_scheduler.help CLASS",
        "fit",
    ),
    ("--ckpt_path FILE", CKPT_PATH_HELP, "fit"),
    ("--ckpt_path FILE", "a checkpoint whose weights to evaluate (recorded in a new run)", "validate test"),
    ("--test_after_fit BOOL", TEST_AFTER_FIT_HELP, "fit"),
    ("--log_graph BOOL", LOG_GRAPH_HELP, "fit"),
    ("--seed_everything N", "the run's seed (each random stream gets its own seed derived from it)", ""),
    ("--print_config", "print the resolved config, every key with its value, and run nothing", ""),
    ("--help full", "LightningCLI's full help: every option, the Trainer's ~40 included", ""),
)


def command_help(command: str) -> str:
    """The short help of ``lit-d2l fit|validate|test``."""
    usage = _FIT_USAGE if command == "fit" else _EVALUATE_USAGE.format(command=command)
    lines = ["options:"]
    for option, text, commands in _OPTIONS:
        if not commands or command in commands.split():
            first, *more = text.split("\n")
            lines += [f"  {option:<23}  {first}", *(f"{'':27}{line}" for line in more)]
    return "\n\n".join(
        [
            usage,
            "\n".join(lines),
            catalog.listing("models", catalog.MODELS),
            catalog.listing("DataModules", catalog.DATAMODULES),
        ]
    )


def wants_help(args: list[str]) -> bool:
    """``-h`` / ``--help`` anywhere (not ``--model.help CLASS``, which is jsonargparse's)."""
    return any(arg in ("-h", "--help") for arg in args)


def full_help_args(args: list[str]) -> list[str] | None:
    """``args`` with ``--help full`` made LightningCLI's ``--help``; None when the short help is asked for."""
    for index, arg in enumerate(args):
        if arg in ("-h", "--help") and args[index + 1 : index + 2] == ["full"]:
            return [*args[:index], "--help", *args[index + 2 :]]
        if arg == "--help=full":
            return [*args[:index], "--help", *args[index + 1 :]]
    return None
