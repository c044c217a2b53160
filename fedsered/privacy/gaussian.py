"""The sampled Gaussian mechanism's parts, shared by DP gradient matching and DP distribution matching.

One step of the mechanism: ``poisson_sample`` picks each real example independently with probability q (the batch
size varies — the sampling Opacus' accountants assume); each picked example's contribution (a flattened gradient or
embedding row) is clipped to L2 norm C (``clip_rows``); ``noisy_class_sums`` adds the clipped rows of each class and
Gaussian noise of std σ·C to every coordinate of every class's sum. An example belongs to one class, so adding or
removing it changes the concatenation of all class sums by at most C: the whole step is one Gaussian mechanism of
sensitivity C, and every class's sum is released every step (an empty class releases pure noise), so nothing about
the sample's composition leaks outside the noise.
"""

from __future__ import annotations

import numpy as np
import torch


def poisson_sample(n: int, *, sample_rate: float, gen: np.random.Generator) -> np.ndarray:
    """Indices of a Poisson sample of ``range(n)``: each index independently with probability ``sample_rate``."""
    return np.flatnonzero(gen.random(n) < sample_rate)


def clip_factors(norms: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per-row scale ``min(1, C / norm)`` (Opacus' flat clipping, with its 1e-6 guard)."""
    return (max_norm / (norms + 1e-6)).clamp(max=1.0)


def clip_rows(rows: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``rows [B, d]`` with each row scaled to L2 norm at most ``max_norm``; a row holding a non-finite entry becomes
    0 (``finite_rows``)."""
    rows = finite_rows(rows)
    return rows * clip_factors(rows.norm(dim=1), max_norm).unsqueeze(1)


def finite_rows(rows: torch.Tensor) -> torch.Tensor:
    """``rows [B, d]`` with every row that holds a NaN or ±inf replaced by 0 (finite rows returned bit for bit).

    Why: clipping bounds a row's norm only when the row is finite — ``min(1, C/‖r‖)·r`` is NaN for a NaN or infinite
    ``r``, and a NaN in one class's sum would tell that class holds an example that made it, whatever the noise. The
    rows are computed under a network the server sent (θ₀, the global model, merf's networks), and the server is the
    adversary: a finite state can still overflow on some inputs (weights scaled by 1e30). Zeroing such a row keeps
    every row's norm ≤ C for every input, so the sensitivity stays C."""
    ok = torch.isfinite(rows).all(dim=1, keepdim=True)
    return rows if bool(ok.all()) else torch.where(ok, rows, torch.zeros((), dtype=rows.dtype))


def noisy_class_sums(
    rows: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_classes: int,
    noise_multiplier: float,
    max_norm: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``[n_classes, d]``: per-class sums of already-clipped ``rows [B, d]`` plus N(0, (σC)²) on every entry.

    Args:
        rows: clipped per-example contributions (each of norm ≤ ``max_norm``); ``B`` may be 0.
        labels: ``[B]`` int64 class of each row.
        n_classes: every class gets a (possibly pure-noise) sum.
        noise_multiplier: σ.
        max_norm: C.
        generator: the noise stream.

    Returns:
        The noisy sums (float32).
    """
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(rows.dtype)  # [B, K]
    sums = onehot.T @ rows if len(rows) else rows.new_zeros((n_classes, rows.shape[1]))
    noise = torch.randn(sums.shape, generator=generator, dtype=sums.dtype) * (noise_multiplier * max_norm)
    return sums + noise
