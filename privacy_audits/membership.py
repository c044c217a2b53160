"""Who is IN which run: the LiRA-style balanced design where every audited example is IN exactly half of the runs."""

from __future__ import annotations

import numpy as np

from fedsered.errors import ConfigError
from fedsered.seeding import rng


def balanced_membership(n_examples: int, n_runs: int, *, seed: int) -> np.ndarray:
    """``[n_examples, n_runs]`` bool: each row has exactly ``n_runs // 2`` True, at random positions.

    Every run therefore takes a random half (on average) of the audited examples, and every example has as many IN
    as OUT runs (Carlini et al.'s design: the same runs audit all examples).

    Raises:
        ConfigError: fewer than 2 runs.
    """
    if n_runs < 2:
        raise ConfigError(f"audit.shadows: need at least 2 runs, got {n_runs}")
    keys = rng(seed, "audit/membership").random((n_examples, n_runs))
    ranks = keys.argsort(axis=1).argsort(axis=1)
    return ranks < n_runs // 2
