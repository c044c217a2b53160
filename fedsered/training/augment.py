"""Training-time augmentation of log-Mel batches: time shift, SpecAugment masks and mixup, vectorised per batch.

The recipe every model in fedsered trains under (``train.augment``): the centralised CNN, the global model trained
on shared sets, the random-subset and raw-sharing baselines and distillation's evaluation — so that a comparison of
shared sets measures the sets, not a recipe one of them had and another did not. Every draw comes from the
trainer's generator: a seed gives the same augmented batches on any machine.

- ``time_shift``: each example rolled along time by up to that fraction of its frames (circular; a segment of
  speech has no fixed phase).
- ``time_masks`` / ``freq_masks``: that many bands per example set to 0 (the fixed normalisation's centre), each up
  to ``time_mask`` / ``freq_mask`` of the axis wide (SpecAugment, Park et al. 2019, without time warping).
- ``mixup``: a batch mixed with a shuffled copy of itself, weight λ ~ Beta(α, α) per example, and the loss mixed by
  the same λ (Zhang et al. 2018); 0 switches it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsered.config import AugmentConfig


@dataclass(frozen=True)
class Batch:
    """An augmented batch: inputs, the two label sets and each example's weight ``lam`` of ``y`` (1 without mixup)."""

    x: torch.Tensor
    y: torch.Tensor
    y_mix: torch.Tensor
    lam: torch.Tensor


def is_active(cfg: AugmentConfig) -> bool:
    """Whether ``cfg`` changes a batch at all."""
    return bool(cfg.time_shift > 0 or cfg.time_masks or cfg.freq_masks or cfg.mixup > 0)


def draw_bands(
    n: int, size: int, count: int, width: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(starts, widths)``, each ``[n, count]``: ``count`` bands per row, each ``⌊U·width·size⌋`` positions wide at a
    uniform start."""
    widths = (torch.rand(n, count, generator=generator) * width * size).long()
    starts = (torch.rand(n, count, generator=generator) * (size - widths + 1)).long()
    return starts, widths


def band_mask(size: int, starts: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """``[n, size]`` bool, True inside any of a row's bands (``starts``, ``widths``: ``[n, count]``)."""
    pos = torch.arange(size).view(1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))  # [n, count, size]
    return inside.any(dim=1)


def roll_time(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``[n, 1, mels, frames]`` features, row ``i`` rolled circularly along time by ``shift[i]`` frames (a gather:
    differentiable in ``x``)."""
    n, _, mels, frames = x.shape
    index = (torch.arange(frames).view(1, frames) - shift.view(n, 1)) % frames  # [n, frames]
    return torch.gather(x, 3, index.view(n, 1, 1, frames).expand(n, 1, mels, frames))


def augment_batch(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, *, generator: torch.Generator) -> Batch:
    """Augment one batch.

    Args:
        x: ``[n, 1, mels, frames]`` float32 features.
        y: ``[n]`` int64 labels.
        cfg: the ``train.augment`` section.
        generator: the trainer's generator (every draw comes from it).

    Returns:
        The augmented ``Batch`` (the input tensor is never modified).
    """
    n, _, mels, frames = x.shape
    out = x
    if cfg.time_shift > 0 and frames > 1:
        shift = (torch.rand(n, generator=generator) * (2 * cfg.time_shift * frames + 1)).long() - int(
            cfg.time_shift * frames
        )
        out = roll_time(out, shift)
    if cfg.time_masks:
        keep = ~band_mask(frames, *draw_bands(n, frames, cfg.time_masks, cfg.time_mask, generator))
        out = out * keep.view(n, 1, 1, frames)
    if cfg.freq_masks:
        keep = ~band_mask(mels, *draw_bands(n, mels, cfg.freq_masks, cfg.freq_mask, generator))
        out = out * keep.view(n, 1, mels, 1)
    lam = torch.ones(n)
    y_mix = y
    if cfg.mixup > 0 and n > 1:
        beta = torch.distributions.Beta(cfg.mixup, cfg.mixup)
        # torch's Beta sampler takes no generator: it draws under a seed taken from ours, the global stream restored
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            lam = beta.sample((n,))
        lam = torch.maximum(lam, 1.0 - lam)  # the own example dominates: its label stays the main one
        perm = torch.randperm(n, generator=generator)
        out = lam.view(n, 1, 1, 1) * out + (1.0 - lam.view(n, 1, 1, 1)) * out[perm]
        y_mix = y[perm]
    return Batch(x=out, y=y, y_mix=y_mix, lam=lam)
