"""Settings checked before anything is built or recorded, and the parser's and Lightning's errors in one line.

Used by :mod:`lit_d2l.fit.run` (every run) and :mod:`lit_d2l.fit.parse` (sweeps parse each arm first).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import itertools
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lit_d2l.errors import ConfigError, UserError, not_utf8
from lit_d2l.fit import catalog
from lit_d2l.tracking.settings import check_registered_name
from lit_d2l.tracking.store import check_store, resolve_tracking_uri
from lit_d2l.tracking.system_metrics import check_system_metrics


def check_settings(config: Any) -> None:
    """What every run's parsed settings must pass before anything is built or recorded (a fit's and each arm's
    of a sweep): how long it trains, the store and the names it records, the optimizer and schedule, the checkpoint."""
    for key in ("max_epochs", "max_steps"):  # Lightning would record a FINISHED run that never trained
        if config.trainer.get(key) == 0:
            raise ConfigError(f"trainer.{key} 0 trains nothing; give 1 or more (or -1 for no limit)")
    if config.trainer.logger in (None, True):
        check_store(resolve_tracking_uri(config.tracking.uri), create=False)  # made once the input is good
        check_registered_name(config.tracking.register_model)
        if config.tracking.system_metrics:
            check_system_metrics()
    check_optimizer(as_dict(config.get("optimizer")), as_dict(config.get("lr_scheduler")))
    if config.get("ckpt_path") is not None:
        check_checkpoint(config.ckpt_path)


def check_optimizer(optimizer: dict[str, Any] | None, scheduler: dict[str, Any] | None) -> None:
    """Build the optimizer and scheduler once, on a stand-in parameter, and take two steps: bad settings
    (a negative learning rate, a step size of 0) fail now, in one line, before any run is recorded."""
    probe = [torch.nn.Parameter(torch.zeros(1))]
    try:
        built = instantiate_class(probe, optimizer) if optimizer else torch.optim.SGD(probe, lr=0.1)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise settings_error("optimizer", optimizer, exc) from None
    if scheduler is None:
        return
    try:
        schedule = instantiate_class(built, scheduler)
        for _ in range(2):
            built.step()
            if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                schedule.step(0.0)
            else:
                schedule.step()
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise settings_error("lr_scheduler", scheduler, exc) from None


def settings_error(group: str, settings: dict[str, Any] | None, exc: Exception) -> ConfigError:
    """``exc`` raised by the ``group``'s class, in one line; a division by zero names the settings that are 0."""
    # Counts (a step size, T_max) divide; a float 0.0 such as eta_min is a floor, not a count.
    zeros = [
        key for key, value in ((settings or {}).get("init_args") or {}).items() if type(value) is int and value == 0
    ]
    if isinstance(exc, ZeroDivisionError) and zeros:
        named = " or ".join(f"--{group}.{key} 0" for key in zeros)
        return ConfigError(f"{group}: {named} divides by zero ({exc}); give a value > 0")
    return ConfigError(f"{group}: {exc} (check the --{group}.* settings)")


def check_checkpoint(path: str) -> None:
    """A ``--ckpt_path`` must be a Lightning checkpoint that loads with ``weights_only`` (no code runs)."""
    file = Path(path)
    if not file.is_file():
        what = "a folder, not a checkpoint file" if file.is_dir() else "no such file"
        raise ConfigError(f"--ckpt_path {path}: {what}; give a .ckpt file saved by lit-d2l (or Lightning)")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a checkpoint, or holding objects beyond tensors
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--ckpt_path {path}: not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"--ckpt_path {path}: not a Lightning checkpoint (it holds no state_dict)")


def as_dict(config: Any) -> dict[str, Any] | None:
    """A parsed class config (class_path + init_args) as plain dicts, as ``instantiate_class`` takes it."""
    return None if config is None else (config.as_dict() if hasattr(config, "as_dict") else dict(config))


def misconfiguration_line(exc: MisconfigurationException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{first} (Lightning refused the settings: check the --trainer.* and --model.* options)"


_GENERIC_PARSER_LINES = (
    "Does not validate against",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value: NestedArg",
    "Given value: Namespace",
    "Problem with given class_path",
    "Expected a <class 'NoneType'>",
)


def argument_error_line(message: str, command: str) -> str:
    """jsonargparse's multi-line report reduced to the key and the specific reasons, on one line."""
    # 'Parser key "model": ...', or '--data.help: ...' from a --*.help action
    found = re.search(r'Parser key "([^"]+)"', message) or re.match(r"--([\w.]+): ", message)
    key = found.group(1) if found else None
    nested = set(re.findall(r'Parser key "([^"]+)"', message))
    if key and len(nested) == 2:  # a class's own setting, e.g. "model" holding "lr": said as model.lr
        key = f"{key}.{(nested - {key}).pop()}"
    unimportable = _unimportable_module(message)
    if unimportable:
        return f"{key}: {unimportable}" if key else unimportable
    prefix = r'^(Parser key "[^"]+"|--[\w.]+):'
    lines = (re.sub(prefix, "", line.strip()).strip().lstrip("- ") for line in message.splitlines())
    reasons = [line for line in lines if line and not line.startswith(_GENERIC_PARSER_LINES)]
    text = "; ".join(dict.fromkeys(reasons)) or "invalid arguments"
    # "Expected a <class 'float'>. Got value: abc" as "expected float, got abc": no Python repr
    text = re.sub(r"Expected a <class '([\w.]+)'>(\. Got value: |; Given value: )", r"expected \1, got ", text)
    hint = _class_hint(key) if key else None
    given = re.search(r"(?:Given value|import path string): (\S+)", message)
    number = set(re.findall(r"Expected a <class '(int|float)'>", message))
    if given and len(number) == 1 and not text.startswith("expected"):  # a union's other members' reasons dropped
        text = f"expected {number.pop()}, got {given.group(1)}"
    absent = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message)  # a class_path in a config file
    if hint and absent:
        return _no_class(key, f"{absent.group(1)}.{absent.group(2)}", hint)
    if hint and given and "Expected a" in text and "path" in text:  # an unknown class name
        return _no_class(key, given.group(1), hint)
    if key:
        text = f"{key}: {text}"
    if meant := _meant(message, key):
        return f"{text}; did you mean {meant}?"
    if re.match(r"the following arguments are required: (model|data)", text):  # no config, no model or data given
        return f"{text} (give a config: lit-d2l {command} --config experiments/linear_regression.yaml)"
    return f"{text} (lit-d2l {command} --config FILE --print_config lists every valid key)"


def _meant(message: str, key: str | None) -> str | None:
    """The option a misspelt one most likely meant: ``--trainer.max_epoch`` or ``--traner.max_epochs`` (an
    unrecognized argument) among the options of ``lit-d2l fit``, ``lrr`` (a setting the class under ``key`` does not
    accept) among the class's own."""
    unknown = re.search(r"unrecognized arguments: --([\w.]+)", message)
    refused = re.search(r"Problem with given class_path '([\w.]+)':\s+Option '(\w+)' is not accepted", message)
    if unknown:
        from lit_d2l.fit.parse import fit_parser  # built once, and only for this message

        names, name, prefix = list(fit_parser().get_defaults().keys()), unknown.group(1), "--"
    elif refused:
        module, _, class_name = refused.group(1).rpartition(".")
        try:  # jsonargparse imported it a moment ago
            names = init_parameters(getattr(importlib.import_module(module), class_name))
        except (ImportError, AttributeError, ValueError, TypeError):
            return None
        name, prefix = refused.group(2), f"{key}." if key else ""
    else:
        return None
    close = difflib.get_close_matches(name, names, n=1)
    return f"{prefix}{close[0]}" if close else None


def init_parameters(cls: type) -> list[str]:
    """The settings ``cls(...)`` takes by name: its ``__init__``'s, and those its ``**kwargs`` pass to a base class."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def _unimportable_module(message: str) -> str | None:
    """A class path whose own module (or its package) Python cannot import, e.g. ``my_models.Net`` run from a
    folder other than the one holding ``my_models.py``: said as such, with the usual fix."""
    given = re.search(r"Problem with given class_path '([\w.]+)'", message)
    missing = re.search(r"No module named '([\w.]+)'", message)
    if not given or not missing:
        return None
    module = given.group(1).rpartition(".")[0]
    if module != missing.group(1) and not module.startswith(f"{missing.group(1)}."):
        return None  # the module was found; something it imports is missing, which the parser's reasons say
    return (
        f"cannot import {given.group(1)}: Python found no module {missing.group(1)!r}; is the folder that holds"
        f" {missing.group(1).replace('.', '/')}.py on PYTHONPATH? (e.g. PYTHONPATH=/path/to/that/folder lit-d2l ...)"
    )


def _no_class(key: str, path: str, hint: str) -> str:
    """``model: no class PATH``, with the class it likely meant (the closest name in its module, among the shipped
    ones for a short name, or among torch's optimizers or schedules), else what ``key`` takes."""
    module, _, name = path.rpartition(".")
    section = key.split(".")[0]
    # where torch's short names are, and what the key takes there: an optimizer, not the base class Optimizer
    torch_classes = {
        "optimizer": ("torch.optim", torch.optim.Optimizer),
        "lr_scheduler": ("torch.optim.lr_scheduler", torch.optim.lr_scheduler.LRScheduler),
    }
    try:
        if module or section in torch_classes:
            home, base = torch_classes.get(section, (module, object))
            found = vars(importlib.import_module(module or home))
            names = [n for n, v in found.items() if inspect.isclass(v) and issubclass(v, base) and v is not base]
        else:
            names = [entry.name for entry in (catalog.MODELS if section == "model" else catalog.DATAMODULES)]
    except Exception:  # its module does not import: nothing to compare with
        names = []
    close = difflib.get_close_matches(name, [n for n in names if not n.startswith("_")], n=1)
    if close:
        return f"{key}: no class {path}; did you mean {module + '.' if module else ''}{close[0]}?"
    return f"{key}: no class {path}; expected {hint}"


def _class_hint(key: str) -> str | None:
    """What a class-valued key takes, for the error line about a class that does not exist."""
    if key in ("model", "model.help"):
        names = ", ".join(entry.name for entry in catalog.MODELS)
        return f"one of {names}, or a class path such as my_models.MyNet (lit-d2l fit --help lists them)"
    if key in ("data", "data.help"):
        names = ", ".join(entry.name for entry in catalog.DATAMODULES)
        return f"one of {names}, or a class path (lit-d2l fit --help lists them)"
    return {
        "optimizer": "a torch.optim optimizer such as SGD, Adam or AdamW, or a full class path",
        "lr_scheduler": "a torch.optim.lr_scheduler class such as StepLR or CosineAnnealingLR, or a full class "
        "path (torch.optim.lr_scheduler.ReduceLROnPlateau)",
    }.get(key)


def _config_files(args: list[str]) -> list[str]:
    """What ``args`` may name as config files (not all of them are)."""
    configs = [value for option, value in itertools.pairwise(args) if option == "--config"]
    configs += [arg.split("=", 1)[1] for arg in args if "=" in arg]  # --config=X, --model=X.yaml
    configs += [arg for arg in args if arg.endswith((".yaml", ".yml", ".json"))]  # --model X.yaml
    return list(dict.fromkeys(configs))


def has_option(args: list[str], name: str) -> bool:
    """Whether run settings not parsed yet give ``name`` (``name VALUE`` or ``name=VALUE``)."""
    return any(arg == name or arg.startswith(name + "=") for arg in args)


def class_first(line: str, args: list[str]) -> str:
    """``--optimizer.lr 0.01`` with no ``--optimizer CLASS`` (in ``args`` or their config files) is refused as an
    option 'lr' ``optimizer`` does not accept: say that its class comes first."""
    found = re.match(r"(optimizer|lr_scheduler): Option '\w+' is not accepted", line)
    if found is None:
        return line
    key = found.group(1)
    if has_option(args, f"--{key}"):
        return line
    for path in _config_files(args):
        try:
            if key in (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}):
                return line
        except (OSError, ValueError, yaml.YAMLError):
            continue
    example = "Adam" if key == "optimizer" else "StepLR"
    return f"{found.group(0)}: no {key} class is given; name one first (--{key} {example} --{key}.KEY VALUE)"


def yaml_file_named(message: str, args: list[str]) -> str:
    """jsonargparse calls a config file whose YAML does not parse ``"<unicode string>"``, and one that holds no
    settings (empty, a list) an ``Unexpected config``: name the file instead, and say what it holds."""
    if message.startswith("Unexpected config"):
        for path in _config_files(args):
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError, yaml.YAMLError):
                continue
            if not isinstance(loaded, dict):
                held = {type(None): "nothing", list: "a list", str: "text"}.get(type(loaded), f"the value {loaded!r}")
                return (
                    f"{path}: a config is a YAML mapping of settings (trainer:, model:, data:), this one holds {held}"
                )
    if '"<unicode string>"' not in message:
        return message
    for path in _config_files(args):
        try:
            yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return message.replace('"<unicode string>"', path)
        except (OSError, ValueError):  # not a file
            continue
    return message.replace('in "<unicode string>", ', "")


def not_utf8_config(args: list[str], exc: UnicodeDecodeError) -> ConfigError:
    """The parser met a file that is not UTF-8: name it, from the config files ``args`` give."""
    for path in _config_files(args):
        try:
            Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as bad:
            return not_utf8(path, bad)
        except (OSError, ValueError):  # not a file
            continue
    return not_utf8("a config file", exc)


def user_error_in(exc: BaseException) -> UserError | None:
    """The error a user can fix inside ``exc`` (raised while parsing or building, e.g. by a model refusing its
    settings, and wrapped by jsonargparse): lit-d2l's own :class:`UserError`, or what a class's ``__init__`` raised
    on a bad value (the user's own model: ``nn.Dropout(1.5)``, ``nn.Linear(64, -1)``), said as one line naming that
    class. Errors of code (an AttributeError, a NameError) keep their traceback."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        if isinstance(current, UserError):
            return current
        chain.append(current)
        current = current.__cause__ or current.__context__
    given = next((found for e in chain if (found := _INSTANTIATING.search(str(e)))), None)
    cause = chain[-1]
    if given is None or not isinstance(cause, (ValueError, TypeError, RuntimeError)):
        return None
    said = str(cause).strip() if isinstance(cause, ValueError) else f"{type(cause).__name__}: {str(cause).strip()}"
    return ConfigError(f"{given.group(1)} refused its settings: {said}; change that value")


#: jsonargparse's message when instantiating a class failed: "Given value: Namespace(class_path='pkg.Class', ...".
_INSTANTIATING = re.compile(r"Given value: Namespace\(class_path='([^']+)'")
