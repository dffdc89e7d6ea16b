"""``lit-d2l ablate SPEC --dry-run``: the arms, runs and packs a sweep would make; nothing runs or is recorded."""

from __future__ import annotations

from collections.abc import Callable

from lit_d2l.fit.checks import as_dict
from lit_d2l.fit.parse import ParsedFit
from lit_d2l.models import D2LModule, built
from lit_d2l.sweeps.engine import PairTask, check_pack_options, pack_tasks, parse_arm
from lit_d2l.sweeps.packs.plan import PACKABLE_KEYS
from lit_d2l.sweeps.progress import plural
from lit_d2l.sweeps.spec import SweepSpec


def dry_run(
    spec: SweepSpec, echo: Callable[[str], None] = print, pack: str = "auto", pack_size: int = 0, workers: int = 1
) -> None:
    """List the arms, the runs a sweep would make and the packs they would train in, without running or
    recording anything."""
    check_pack_options(pack, pack_size)
    # As a real run would: every arm's values, before anything is promised (a bad arm is the one line said).
    parsed = {arm.key: parse_arm(spec, arm, ["--trainer.logger", "false"]) for arm in spec.arms}
    for parse in parsed.values():  # nothing is fetched: the packs' trial step skips data it does not have
        if isinstance(getattr(parse.datamodule, "download", None), bool):
            parse.datamodule.download = False
    arms = [f"  {arm.key}: {resolved(parsed[arm.key])}" for arm in spec.arms]
    for line in [f"sweep {spec.sweep_id}: {spec.size()}", f"base config: {spec.base}", *arms]:
        echo(line)
    tasks = [  # to plan the packs only: no store, no run
        PairTask(
            arm.key,
            seed,
            spec.fit_args(arm, seed),
            {},
            "",
            "",
            "",
            settings=spec.settings(arm, seed),
            parsed=parsed[arm.key] if seed == spec.seeds[0] else None,
        )
        for arm, seed in spec.pairs()
    ]
    packs = pack_tasks(tasks, pack, pack_size, workers)
    packed = [p for p in packs if p.packed]
    alone = [p for p in packs if not p.packed]
    echo(
        f"--pack {pack}: {plural(len(packed), 'pack')}{' of ' if len(packed) <= 1 else ' ('}"
        f"{plural(sum(len(p.units) for p in packed), 'run')}{'' if len(packed) <= 1 else ' in all)'}, "
        f"{plural(len(alone), 'run')} alone"
    )
    apart = sorted({k for arm in spec.arms for k, _ in arm.settings} - PACKABLE_KEYS)
    if len(packed) > 1 and apart:  # what sets packs apart (not the memory budget, which cuts packs too)
        echo(
            f"  arms that differ in {', '.join(apart)} train in separate packs: a pack's arms may differ only in seeds,"
            " initialisation, lr, momentum, weight decay, l2, dropout p and the optimizer's and schedule's numbers"
        )
    order = [a.key for a in spec.arms]
    for number, unit in enumerate(packed, start=1):
        arms = sorted({task.arm for task in unit.units}, key=order.index)
        seeds = sorted({task.seed for task in unit.units})
        if len(unit.units) == len(arms) * len(seeds):  # whole arms: every seed of each
            echo(f"  pack {number}: {plural(len(unit.units), 'run')} = {plural(len(arms), 'arm')} x seeds {seeds}")
            for key in arms:
                echo(f"    {key}")
        else:
            echo(f"  pack {number}: {plural(len(unit.units), 'run')}")
            for task in unit.units:
                echo(f"    {task.arm} seed {task.seed}")
    for unit in alone:
        task = unit.units[0]
        echo(f"  alone: {task.arm} seed {task.seed}" + (f" ({unit.reason})" if unit.reason else ""))


def resolved(parsed: ParsedFit) -> str:
    """``MLP, SGD``: the model's class (with its module when it is not lit-d2l's) and what it trains with."""
    model = type(parsed.model)
    name = model.__qualname__ if model.__module__.startswith("lit_d2l.") else f"{model.__module__}.{model.__qualname__}"
    optimizer, scheduler = as_dict(parsed.config.get("optimizer")), as_dict(parsed.config.get("lr_scheduler"))
    if optimizer is not None:
        trains = optimizer["class_path"].rsplit(".", 1)[-1]
    elif isinstance(parsed.model, D2LModule):  # the model's own default_optimizer, as its fit would build it
        trains = type(built(parsed.model, parsed.datamodule).default_optimizer()).__name__
    else:
        trains = "its own configure_optimizers"
    return ", ".join([name, trains, *([scheduler["class_path"].rsplit(".", 1)[-1]] if scheduler else [])])
