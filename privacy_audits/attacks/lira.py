"""LiRA (Carlini et al., S&P 2022): per example, Gaussians over the logit-scaled confidence φ of shadow runs with the
example IN and OUT; online score = log-likelihood ratio, offline score = one-sided z of the OUT Gaussian.

Leave-one-out over runs, vectorised: the IN/OUT sums over all runs minus run ``t``'s own term give every target's
shadow statistics at once. With few shadows the per-example variance is noisy; ``global_variance`` pools the
residual variance of all examples (one σ_in and one σ_out per target), as the paper recommends.
"""

from __future__ import annotations

import numpy as np

from fedsered.errors import DataError


def _loo_stats(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out count, mean and residual sum of squares of ``phi`` over runs where ``mask``, per target column."""
    w = mask.astype(np.float64)
    count = w.sum(axis=1, keepdims=True) - w
    s1 = (phi * w).sum(axis=1, keepdims=True) - phi * w
    s2 = (phi**2 * w).sum(axis=1, keepdims=True) - phi**2 * w
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        ss = np.maximum(s2 - count * mean**2, 0.0)
    return count, mean, ss


def _variance(count: np.ndarray, ss: np.ndarray, *, global_variance: bool, floor: float) -> np.ndarray:
    pooled = ss.sum(axis=0, keepdims=True) / np.maximum((count - 1).clip(min=0).sum(axis=0, keepdims=True), 1.0)
    if global_variance:
        var = np.broadcast_to(pooled, count.shape)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(count >= 2, ss / (count - 1), pooled)
    return np.maximum(var, floor)


def lira_scores(
    phi: np.ndarray, member: np.ndarray, *, online: bool = True, global_variance: bool = True, var_floor: float = 1e-6
) -> np.ndarray:
    """LiRA scores of every example against every run.

    Args:
        phi: ``[examples, runs]`` logit-scaled confidence (``signals.logit_confidence``).
        member: ``[examples, runs]`` bool, whether the example was IN each run.
        online: use IN and OUT shadows (likelihood ratio); False: OUT only (offline, one-sided).
        global_variance: one pooled variance per target instead of per-example variances.
        var_floor: smallest variance used.

    Returns:
        ``[examples, runs]`` scores; column ``t`` uses the runs other than ``t`` as shadows.

    Raises:
        DataError: shapes differ, or some example lacks an OUT (or, online, an IN) shadow for some target.
    """
    phi = np.asarray(phi, dtype=np.float64)
    m = np.asarray(member, dtype=bool)
    if phi.shape != m.shape or phi.ndim != 2:
        raise DataError(f"lira: phi and member must be equal [examples, runs] arrays, got {phi.shape}, {m.shape}")
    n_out, mu_out, ss_out = _loo_stats(phi, ~m)
    if (n_out < 1).any():
        raise DataError("lira: some example has no OUT shadow run for some target (use more shadows)")
    var_out = _variance(n_out, ss_out, global_variance=global_variance, floor=var_floor)
    if not online:
        return (phi - mu_out) / np.sqrt(var_out)
    n_in, mu_in, ss_in = _loo_stats(phi, m)
    if (n_in < 1).any():
        raise DataError("lira: some example has no IN shadow run for some target (use more shadows)")
    var_in = _variance(n_in, ss_in, global_variance=global_variance, floor=var_floor)
    log_in = -0.5 * ((phi - mu_in) ** 2 / var_in + np.log(var_in))
    log_out = -0.5 * ((phi - mu_out) ** 2 / var_out + np.log(var_out))
    return log_in - log_out
