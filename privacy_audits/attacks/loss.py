"""LOSS attack (Yeom et al. 2018): the target model's own loss; score = −loss = log p_y. Needs no shadow."""

from __future__ import annotations

import numpy as np


def loss_scores(log_p: np.ndarray) -> np.ndarray:
    """Args:
        log_p: ``[examples, runs]`` log-probability of the true label on each run's model.

    Returns:
        ``[examples, runs]`` scores (column ``t``: run ``t`` as the target).
    """
    return np.asarray(log_p, dtype=np.float64).copy()
