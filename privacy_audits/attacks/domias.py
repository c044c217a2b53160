"""DOMIAS (van Breugel, Sun, Qian & van der Schaar, AISTATS 2023): density-based membership inference against a
shared (synthetic, selected or raw) set.

``score(x) = log p_S(x) − log p_R(x)``: the density of the shared set at ``x`` over the density of the adversary's
reference data (population speakers) at ``x``. A record the generator overfitted sits where the shared set is
denser than the population explains; unlike distance to the closest record it also sees a shared set that moved
towards a record without copying it. Densities are Gaussian kernel density estimates (scikit-learn's
``KernelDensity``, Scott's bandwidth) in a space the adversary fits on its reference data alone: the reference's top
principal components, whitened (a KDE over 6,000 log-Mel values would be meaningless with a few hundred points).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KernelDensity

from fedsered.errors import DataError


def reference_projection(reference: np.ndarray, *, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``[features, d]`` whitening projection onto the top ``d ≤ dim`` principal components of the
    reference rows (flattened), ``d`` capped by the reference's rank."""
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if len(r) < 2:
        raise DataError(f"domias: need at least 2 reference rows, got {len(r)}")
    mean = r.mean(axis=0)
    _, sv, vt = np.linalg.svd(r - mean, full_matrices=False)
    keep = sv > sv[0] * 1e-9
    d = int(min(dim, keep.sum()))
    scale = sv[:d] / np.sqrt(len(r) - 1)  # per-component standard deviation of the reference
    return mean, vt[:d].T / scale


def domias_scores(queries: np.ndarray, shared: np.ndarray, reference: np.ndarray, *, dim: int = 8) -> np.ndarray:
    """``[n]`` DOMIAS scores of the queries (higher = member of the data behind ``shared``).

    Args:
        queries: ``[n, ...]`` the records whose membership is asked.
        shared: ``[s, ...]`` the shared set (same per-row shape).
        reference: ``[p, ...]`` the adversary's reference data from the same distribution, never members.
        dim: largest number of principal components the densities live in.

    Raises:
        DataError: empty inputs or rows of different sizes.
    """
    q, s, r = (np.asarray(a, np.float64) for a in (queries, shared, reference))
    if min(len(q), len(s), len(r)) == 0:
        raise DataError(f"domias: need non-empty queries, shared set and reference, got {len(q)}, {len(s)}, {len(r)}")
    q, s, r = q.reshape(len(q), -1), s.reshape(len(s), -1), r.reshape(len(r), -1)
    if not (q.shape[1] == s.shape[1] == r.shape[1]):
        raise DataError(f"domias: need a non-empty shared set and rows of one size: {q.shape}, {s.shape}, {r.shape}")
    mean, proj = reference_projection(r, dim=dim)
    zq, zs, zr = ((a - mean) @ proj for a in (q, s, r))
    log_s = KernelDensity(bandwidth="scott").fit(zs).score_samples(zq)
    log_r = KernelDensity(bandwidth="scott").fit(zr).score_samples(zq)
    return np.clip(log_s - log_r, -1e300, 1e300)
