"""The server-knowledge attack: the server replays a client's computation for both membership hypotheses.

The server knows the run seed, θ₀ and the config it sent; the strongest adversary DP is defined against also knows
every other record of the client. For an audited example z it recomputes the client's shared set with z IN and with
z OUT and scores the set it actually received by which replay it is closer to:
``score = ‖S_obs − S_OUT‖ − ‖S_obs − S_IN‖`` (higher = member). Where the client's randomness derives from what the
server sent (no DP, or ``privacy.reproducible_noise``) one replay equals the observed set bit for bit and the attack
is exact; with the client's secret DP noise neither replay matches and the score is noise.
"""

from __future__ import annotations

import numpy as np


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance in float64; infinite between sets of different shapes (a replay that cannot match)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a.astype(np.float64).ravel() - b.astype(np.float64).ravel()))


def replay_score(observed: np.ndarray, replay_in: np.ndarray, replay_out: np.ndarray) -> float:
    """``‖observed − replay_out‖ − ‖observed − replay_in‖`` (0 when neither replay has the observed shape)."""
    d_in, d_out = _distance(observed, replay_in), _distance(observed, replay_out)
    if np.isinf(d_in) and np.isinf(d_out):
        return 0.0
    return float(np.clip(d_out - d_in, -1e300, 1e300))
