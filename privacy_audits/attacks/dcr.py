"""Distance to the closest shared record (DCR): an attack on the shared set itself, not on a model.

Score = −min_j ‖q − s_j‖ over the shared records ``s`` (raw, selected or synthetic), in any vector space: the
flattened log-Mel features, or a model's embedding. An exact copy scores 0, the maximum. Squared distances come from
one matrix product per chunk (``‖q‖² + ‖s‖² − 2 q·s``), clipped at 0.
"""

from __future__ import annotations

import numpy as np

from fedsered.errors import DataError


def min_distance(queries: np.ndarray, records: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
    """``[n]`` Euclidean distance from each query row to its nearest record row (inputs flattened per row)."""
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(records, dtype=np.float64)
    q, r = q.reshape(len(q), int(np.prod(q.shape[1:]))), r.reshape(len(r), int(np.prod(r.shape[1:])))
    if len(r) == 0 or q.shape[1] != r.shape[1]:
        raise DataError(f"dcr: need a non-empty shared set of the queries' dimension, got {r.shape} vs {q.shape}")
    r2 = (r**2).sum(axis=1)
    out = np.empty(len(q))
    for start in range(0, len(q), chunk):
        qc = q[start : start + chunk]
        d2 = (qc**2).sum(axis=1)[:, None] + r2[None, :] - 2.0 * qc @ r.T
        out[start : start + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def dcr_scores(queries: np.ndarray, records: np.ndarray) -> np.ndarray:
    """``[n]`` scores ``−DCR`` (higher = closer = more likely a member of the data behind the shared set)."""
    return -min_distance(queries, records)
