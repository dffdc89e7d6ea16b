"""Independent random streams for one run, all derived from its one seed.

A run draws random numbers for four things: generating synthetic data, initialising parameters,
the order of minibatches, and dropout masks. Seeding two of them with the same value makes them
draw the same numbers (a sweep that set ``seed_everything`` and ``data.seed`` both to the arm's seed
initialised the weight-decay model's w as 0.01 × its first training example). So each stream
gets its own seed, derived from the run's seed with NumPy's ``SeedSequence`` (the same on every
process and machine):

- ``data``: from ``data.seed``; generates synthetic data, carves splits and folds;
- ``init``: from ``seed_everything`` (``model.init_seed`` pins it); initialises the parameters;
- ``shuffle``: from ``seed_everything`` (``data.shuffle_seed`` pins it); orders the minibatches;
- ``dropout``: ``seed_everything`` itself, the global stream that Lightning seeds.
"""

from __future__ import annotations

import os

import numpy as np

STREAMS = ("data", "init", "shuffle")


def derive_seed(seed: int, stream: str) -> int:
    """The seed of ``stream`` for a run seeded with ``seed``: a 32-bit integer, independent of the other streams."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; choose one of {STREAMS}")
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(STREAMS.index(stream),))
    return int(sequence.generate_state(1)[0])


def run_seed() -> int | None:
    """The value Lightning's ``seed_everything`` set for this process (``PL_GLOBAL_SEED``), or None."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value is not None else None


def stream_seed(stream: str, pinned: int | None = None, fallback: int | None = None) -> int | None:
    """A stream's seed: ``pinned`` if given, else derived from the run's seed (or from ``fallback`` when
    no run seed is set); None when there is neither."""
    if pinned is not None:
        return pinned
    base = run_seed()
    base = fallback if base is None else base
    return None if base is None else derive_seed(base, stream)
