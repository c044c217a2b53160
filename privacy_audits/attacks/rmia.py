"""RMIA (Zarifzadeh, Liu, Shokri, ICML 2024): pairwise likelihood ratios against population samples.

``LR(x, z) = [p_θ(x) / P(x)] / [p_θ(z) / P(z)]`` with ``p`` the true-label probability and ``P(·)`` its average over
reference models; ``score(x)`` is the fraction of population samples ``z`` with ``LR(x, z) ≥ γ``. Online, the
references are all other runs (half of them hold ``x``); offline only the runs without ``x``, with
``P(x) ≈ ((1 + a)/2)·P_OUT(x) + (1 − a)/2``. Population samples are never members, so ``P(z)`` averages every
reference (offline with the same linear correction). Computed in the log domain; the pairwise count uses one sort
and ``searchsorted`` per target instead of an ``[x, z]`` matrix. Offline, ``a`` is tuned per target on a reference
run (``tune_offline_a``), as ML Privacy Meter 2 does, unless the config fixes it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from fedsered.errors import DataError


def _mean_prob(log_p: np.ndarray, weight: np.ndarray) -> np.ndarray:
    count = weight.sum(axis=1)
    if (count < 1).any():
        raise DataError("rmia: some example has no reference run for some target (use more shadows)")
    return (np.exp(log_p) * weight).sum(axis=1) / count


def _column(
    lp: np.ndarray, m: np.ndarray, lz: np.ndarray, *, target: int, ref: np.ndarray, gamma: float, a: float | None
) -> np.ndarray:
    """RMIA scores of every example against run ``target`` with the runs where ``ref`` as references."""
    w_x = (~m if a is not None else np.ones_like(m)) & ref
    p_x = _mean_prob(lp, w_x.astype(np.float64))
    p_z = _mean_prob(lz, np.broadcast_to(ref, lz.shape).astype(np.float64))
    if a is not None:
        p_x = (1 + a) / 2 * p_x + (1 - a) / 2
        p_z = (1 + a) / 2 * p_z + (1 - a) / 2
    ratio_x = lp[:, target] - np.log(p_x)
    ratio_z = np.sort(lz[:, target] - np.log(p_z))
    return np.searchsorted(ratio_z, ratio_x - np.log(gamma), side="right") / len(ratio_z)


def _check(log_p: np.ndarray, member: np.ndarray, log_p_pop: np.ndarray) -> tuple[np.ndarray, ...]:
    lp, m, lz = np.asarray(log_p, np.float64), np.asarray(member, bool), np.asarray(log_p_pop, np.float64)
    if lp.shape != m.shape or lz.ndim != 2 or lz.shape[1] != lp.shape[1] or lz.shape[0] == 0:
        raise DataError(f"rmia: bad shapes log_p {lp.shape}, member {m.shape}, population {lz.shape}")
    return lp, m, lz


A_GRID = tuple(float(a) for a in np.round(np.linspace(0.0, 1.0, 11), 2))
"""The values of offline RMIA's ``a`` that ``tune_offline_a`` tries (Privacy Meter's grid)."""
FALLBACK_A = 0.3
"""The ``a`` used where a target cannot be tuned (too few reference runs leave no example with an OUT reference)."""


def _auc(score: np.ndarray, member: np.ndarray) -> float:
    """Mann–Whitney AUC (ties count one half); 0.5 without both classes."""
    n_in, n_out = int(member.sum()), int((~member).sum())
    if not n_in or not n_out:
        return 0.5
    ranks = rankdata(score)  # 1-based, ties averaged
    return float((ranks[member].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def tune_offline_a(
    log_p: np.ndarray,
    member: np.ndarray,
    log_p_pop: np.ndarray,
    *,
    gamma: float = 1.0,
    grid: tuple[float, ...] = A_GRID,
) -> np.ndarray:
    """Offline RMIA's ``a`` for every target run, chosen as ML Privacy Meter does: on a reference model the
    adversary trained itself, never on the target. For target ``t`` the next run ``t' = t + 1 (mod runs)`` plays the
    target, with its known membership; the runs other than ``t`` and ``t'`` are the (OUT) references; the ``a`` of
    the grid with the highest AUC on ``t'`` is used for ``t``. Only examples with at least one OUT reference take
    part; where fewer than two members and two non-members of ``t'`` do, ``FALLBACK_A`` is used.

    Returns:
        ``[runs]`` the chosen ``a`` per target.
    """
    lp, m, lz = _check(log_p, member, log_p_pop)
    n_runs = lp.shape[1]
    if n_runs < 3:
        raise DataError("rmia: tuning offline a needs at least 3 runs (target, pseudo-target, a reference)")
    chosen = np.empty(n_runs)
    for t in range(n_runs):
        pseudo = (t + 1) % n_runs
        ref = np.ones(n_runs, dtype=bool)
        ref[[t, pseudo]] = False
        rows = (~m & ref).any(axis=1)
        truth = m[rows, pseudo]
        if truth.sum() < 2 or (~truth).sum() < 2:
            chosen[t] = FALLBACK_A
            continue
        aucs = [_auc(_column(lp[rows], m[rows], lz, target=pseudo, ref=ref, gamma=gamma, a=a), truth) for a in grid]
        chosen[t] = grid[int(np.argmax(aucs))]
    return chosen


def rmia_scores(
    log_p: np.ndarray,
    member: np.ndarray,
    log_p_pop: np.ndarray,
    *,
    gamma: float = 1.0,
    offline_a: float | np.ndarray | None = None,
) -> np.ndarray:
    """RMIA scores of every example against every run.

    Args:
        log_p: ``[examples, runs]`` log true-label probability on each run's model.
        member: ``[examples, runs]`` bool membership.
        log_p_pop: ``[population, runs]`` the same for population samples (members of no run).
        gamma: likelihood-ratio threshold γ.
        offline_a: ``None`` for online RMIA; a value in [0, 1] (or ``[runs]`` values, one per target, as
            ``tune_offline_a`` returns) for offline RMIA with that ``a``.

    Returns:
        ``[examples, runs]`` scores in [0, 1].
    """
    lp, m, lz = _check(log_p, member, log_p_pop)
    n_runs = lp.shape[1]
    a_all = None if offline_a is None else np.broadcast_to(np.asarray(offline_a, np.float64), (n_runs,))
    if gamma <= 0 or (a_all is not None and not np.all((a_all >= 0.0) & (a_all <= 1.0))):
        raise DataError("rmia: gamma must be > 0 and offline_a in [0, 1]")
    scores = np.empty_like(lp)
    for t in range(n_runs):  # one vectorised pass per target run
        ref = np.ones(n_runs, dtype=bool)
        ref[t] = False
        a = None if a_all is None else float(a_all[t])
        scores[:, t] = _column(lp, m, lz, target=t, ref=ref, gamma=gamma, a=a)
    return scores
