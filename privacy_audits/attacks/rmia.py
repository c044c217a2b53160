"""RMIA (Zarifzadeh, Liu, Shokri, ICML 2024): pairwise likelihood ratios against population samples.

``LR(x, z) = [p_θ(x) / P(x)] / [p_θ(z) / P(z)]`` with ``p`` the true-label probability and ``P(·)`` its average over
reference models; ``score(x)`` is the fraction of population samples ``z`` with ``LR(x, z) ≥ γ``. Online, the
references are all other runs (half of them hold ``x``); offline only the runs without ``x``, with
``P(x) ≈ ((1 + a)/2)·P_OUT(x) + (1 − a)/2``. Population samples are never members, so ``P(z)`` averages every
reference (offline with the same linear correction). Computed in the log domain; the pairwise count uses one sort
and ``searchsorted`` per target instead of an ``[x, z]`` matrix.
"""

from __future__ import annotations

import numpy as np

from fedsered.errors import DataError


def _mean_prob(log_p: np.ndarray, weight: np.ndarray) -> np.ndarray:
    count = weight.sum(axis=1)
    if (count < 1).any():
        raise DataError("rmia: some example has no reference run for some target (use more shadows)")
    return (np.exp(log_p) * weight).sum(axis=1) / count


def rmia_scores(
    log_p: np.ndarray,
    member: np.ndarray,
    log_p_pop: np.ndarray,
    *,
    gamma: float = 1.0,
    offline_a: float | None = None,
) -> np.ndarray:
    """RMIA scores of every example against every run.

    Args:
        log_p: ``[examples, runs]`` log true-label probability on each run's model.
        member: ``[examples, runs]`` bool membership.
        log_p_pop: ``[population, runs]`` the same for population samples (members of no run).
        gamma: likelihood-ratio threshold γ.
        offline_a: ``None`` for online RMIA; a value in [0, 1] for offline RMIA with that ``a``.

    Returns:
        ``[examples, runs]`` scores in [0, 1].
    """
    lp, m, lz = np.asarray(log_p, np.float64), np.asarray(member, bool), np.asarray(log_p_pop, np.float64)
    if lp.shape != m.shape or lz.ndim != 2 or lz.shape[1] != lp.shape[1] or lz.shape[0] == 0:
        raise DataError(f"rmia: bad shapes log_p {lp.shape}, member {m.shape}, population {lz.shape}")
    if gamma <= 0 or (offline_a is not None and not 0.0 <= offline_a <= 1.0):
        raise DataError("rmia: gamma must be > 0 and offline_a in [0, 1]")
    n_runs = lp.shape[1]
    scores = np.empty_like(lp)
    for t in range(n_runs):  # one vectorised pass per target run
        ref = np.ones(n_runs, dtype=bool)
        ref[t] = False
        w_x = (~m if offline_a is not None else np.ones_like(m)) & ref
        p_x = _mean_prob(lp, w_x.astype(np.float64))
        p_z = _mean_prob(lz, np.broadcast_to(ref, lz.shape).astype(np.float64))
        if offline_a is not None:
            p_x = (1 + offline_a) / 2 * p_x + (1 - offline_a) / 2
            p_z = (1 + offline_a) / 2 * p_z + (1 - offline_a) / 2
        ratio_x = lp[:, t] - np.log(p_x)
        ratio_z = np.sort(lz[:, t] - np.log(p_z))
        scores[:, t] = np.searchsorted(ratio_z, ratio_x - np.log(gamma), side="right") / len(ratio_z)
    return scores
