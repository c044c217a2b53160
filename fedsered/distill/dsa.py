"""Differentiable siamese augmentation (DSA; Zhao & Bilen, ICML 2021) of log-Mel features inside matching.

In every matching update each class draws one transform, and both sides of the match — the class's real examples and
its synthetic ones — pass through that same transform (siamese), so the matched statistics compare like with like
while the synthetic features must match the real ones under many views, not one. Every operation is differentiable
in its input (a circular shift is a gather, a mask a product), so the synthetic features receive their gradients
through the transform. The views for log-Mel (``distill.dsa``):

- ``time_shift``: a circular roll along time by up to that fraction of the frames (DSA's crop/translate; a segment
  of speech has no fixed phase);
- ``time_mask`` / ``freq_mask``: one band of time frames / Mel bins, up to that fraction of the axis wide, set to 0
  (the fixed normalisation's centre; DSA's cutout, SpecAugment's masks).

The draws come from their own generator (a function of the distillation seed, never of the data), so under DP they
are public post-processing choices: each real example still enters one clipped embedding per update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsered.config import DsaConfig
from fedsered.training.augment import band_mask, draw_bands, roll_time


@dataclass(frozen=True)
class Views:
    """One transform per class: ``shift`` ``[n_classes]``, the bands ``[n_classes, 1]`` (frames or bins; a width of 0
    masks nothing) — the band draws and masks are ``fedsered.training.augment``'s."""

    shift: torch.Tensor
    time_start: torch.Tensor
    time_width: torch.Tensor
    freq_start: torch.Tensor
    freq_width: torch.Tensor


def is_active(cfg: DsaConfig) -> bool:
    """Whether ``cfg`` changes a feature at all."""
    return bool(cfg.time_shift > 0 or cfg.time_mask > 0 or cfg.freq_mask > 0)


def draw(cfg: DsaConfig, *, n_classes: int, mels: int, frames: int, gen: torch.Generator) -> Views:
    """One siamese transform per class for one matching update.

    Args:
        cfg: the ``distill.dsa`` section.
        n_classes: classes (one transform each).
        mels: Mel bins of the features.
        frames: time frames of the features.
        gen: the distillation's DSA generator (every draw comes from it).

    Returns:
        The ``Views`` of this update.
    """
    reach = int(cfg.time_shift * frames)
    shift = torch.randint(-reach, reach + 1, (n_classes,), generator=gen)
    time_start, time_width = draw_bands(n_classes, frames, 1, cfg.time_mask, gen)
    freq_start, freq_width = draw_bands(n_classes, mels, 1, cfg.freq_mask, gen)
    return Views(shift, time_start, time_width, freq_start, freq_width)


def apply(x: torch.Tensor, labels: torch.Tensor, views: Views) -> torch.Tensor:
    """``x`` seen through each example's class transform.

    Args:
        x: ``[n, 1, mels, frames]`` features (synthetic ones keep their gradient).
        labels: ``[n]`` int64 class of each example (which transform it gets).
        views: this update's ``Views``.

    Returns:
        The transformed ``[n, 1, mels, frames]`` tensor (``x`` itself is never modified).
    """
    n, _, mels, frames = x.shape
    keep_t = ~band_mask(frames, views.time_start[labels], views.time_width[labels])
    keep_f = ~band_mask(mels, views.freq_start[labels], views.freq_width[labels])
    return roll_time(x, views.shift[labels]) * (keep_f.view(n, 1, mels, 1) & keep_t.view(n, 1, 1, frames))
