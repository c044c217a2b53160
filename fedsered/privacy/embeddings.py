"""Private per-class embedding sums for distribution matching (DP DM).

Each sampled real example contributes the row ``[clip(e_i, C·√(1 − w²)), w·C]``: its embedding clipped to
``C·√(1 − w²)`` and a count coordinate ``w·C`` (``w = COUNT_SHARE``), so the whole row has norm at most C and one
Gaussian mechanism step (``noisy_class_sums``, noise σ·C) releases both the per-class embedding sums and noisy
per-class counts. The class counts of a Poisson sample are data-dependent too — dividing by the true count would leak
it — so the mean's denominator comes from the released counts only: ``dm`` divides by the running mean of the noisy
counts over the steps so far (post-processing; it converges to the expected count q·n_c). The synthetic embeddings
are clipped the same way before their mean is taken, so both sides live on the same scale.
"""

from __future__ import annotations

import math

import torch

from fedsered.privacy.gaussian import clip_rows, noisy_class_sums

COUNT_SHARE = 0.25
"""w: the count coordinate's share of the clipping bound (embeddings keep √(1 − w²) ≈ 0.97 of it)."""


def embedding_bound(max_norm: float) -> float:
    """The norm embeddings are clipped to: ``C·√(1 − w²)``."""
    return max_norm * math.sqrt(1.0 - COUNT_SHARE**2)


def noisy_embedding_sums(
    emb: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_classes: int,
    max_norm: float,
    noise_multiplier: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DP step: ``(sums [n_classes, d], counts [n_classes])``, both noisy.

    Args:
        emb: ``[B, d]`` embeddings of the Poisson-sampled real examples (``B`` may be 0).
        labels: ``[B]`` their classes.
        n_classes: every class is released.
        max_norm: C.
        noise_multiplier: σ.
        generator: the noise stream.

    Returns:
        Noisy sums of clipped embeddings and noisy counts (in examples; noise std σ/w).
    """
    count = emb.new_full((len(emb), 1), COUNT_SHARE * max_norm)
    rows = torch.cat([clip_rows(emb, embedding_bound(max_norm)), count], dim=1)
    out = noisy_class_sums(
        rows, labels, n_classes=n_classes, noise_multiplier=noise_multiplier, max_norm=max_norm, generator=generator
    )
    return out[:, :-1], out[:, -1] / (COUNT_SHARE * max_norm)
