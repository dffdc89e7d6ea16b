"""``lit-d2l fit`` arguments parsed many times with one parser: for sweeps, which read one config per arm.

Building LightningCLI's parser (the Trainer's whole signature, every model and DataModule) costs
about 0.1 s; parsing one more argument list with it costs a few milliseconds. The checks are those
of a real ``fit`` (:class:`~lit_d2l.fit.run.D2LCLI`): the same keys, types, values and one-line errors.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace

from lit_d2l.fit.checks import check_settings
from lit_d2l.fit.run import D2LCLI, config_errors, parser_kwargs
from lit_d2l.tracking.run_record import recorded_text


@dataclass
class ParsedFit:
    """One ``fit`` configuration: the parsed config, its text and the model and DataModule built from it."""

    config: Namespace
    model: Any
    datamodule: Any
    trainer_kwargs: dict[str, Any]
    #: torch's random stream once the model and data were made: where the run's fit goes on drawing from
    stream: torch.Tensor | None = None

    @property
    def text(self) -> str:
        """The resolved config as YAML, as ``lit-d2l fit`` records it (``config.yaml``)."""
        return recorded_text(fit_parser(), self.config)

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed_everything")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


class _ParserOnly(D2LCLI):
    """A D2LCLI that stops once its parser exists (nothing parsed, built or recorded)."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        raise _HaveParser(parser)


class _HaveParser(Exception):
    def __init__(self, parser: Any) -> None:
        self.parser = parser


@functools.cache
def fit_parser() -> Any:
    """The parser of ``lit-d2l fit`` (built once per process)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            _ParserOnly(
                parser_kwargs=parser_kwargs("fit"),
                trainer_defaults={"enable_autolog_hparams": False},
                args=[],
                run=False,
            )
    except _HaveParser as have:
        return have.parser
    raise RuntimeError("LightningCLI did not build its parser")  # pragma: no cover


def parse_fit(args: list[str], config: Namespace | None = None) -> ParsedFit:
    """Parse and check ``fit`` arguments; seed as the run would (``seed_everything``) and build the
    model and DataModule. Bad input raises a one-line :class:`~lit_d2l.errors.ConfigError`. ``config``, when
    given, is ``args`` already parsed (:func:`with_values`): it is checked and built, not parsed again."""
    parser = fit_parser()
    with config_errors("fit", args):
        config = parser.parse_args(args) if config is None else config
        check_settings(config)
        seed = config.get("seed_everything")
        if seed is not None and seed is not False:
            L.seed_everything(None if seed is True else seed, verbose=False)
        init = parser.instantiate_classes(config)
    trainer = init.trainer.as_dict() if hasattr(init.trainer, "as_dict") else dict(init.trainer)
    return ParsedFit(config, init.get("model"), init.get("data"), trainer, torch.random.get_rng_state())


def with_values(config: Namespace, values: dict[str, Any]) -> Namespace:
    """A copy of a parsed ``config`` with ``values`` set as their command-line keys would set them (``data.seed``
    is the DataModule's ``init_args.seed``): the config those arguments parse to, for a fraction of a parse."""
    config = config.clone()
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest and isinstance(config.get(head), Namespace) and "init_args" in config[head]:
            key = f"{head}.init_args.{rest}"
        config[key] = value
    return config
