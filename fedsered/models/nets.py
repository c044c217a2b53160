"""The network definitions: a CNN-6-style net (the seed paper's family), a smaller IoT variant, and a ResNet-9.

All use GroupNorm instead of BatchNorm — per-sample gradients (DP-SGD), functional calls on synthetic batches of
one image per class, and tiny client batches all break BatchNorm's batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, channels // 2 if channels >= 2 else 1) or 1, num_channels=channels)


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        _norm(c_out),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
    )


STATS_BANDS = 4
"""Frequency bands ``stats`` pooling keeps (an adaptive average over the last block's bins, whatever ``n_mels``)."""


class _Head(nn.Module):
    """Pooling, dropout, linear. ``mean_max`` (PANNs): mean over frequency, then mean + max over time — one value
    per channel. ``stats`` (statistics pooling, as x-vectors): the frequency axis averaged into ``STATS_BANDS``
    bands and kept, then mean and std over time — the spectral shape and its variability per band, as the
    utterance functionals describe a clip."""

    def __init__(self, channels: int, n_classes: int, dropout: float, pooling: str = "mean_max") -> None:
        super().__init__()
        if pooling not in ("mean_max", "stats"):
            raise ValueError(f"model.pooling: unknown {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * (2 * STATS_BANDS if pooling == "stats" else 1), n_classes)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        if self.pooling == "stats":
            h = nn.functional.adaptive_avg_pool2d(h, (STATS_BANDS, h.shape[3]))  # [B, C, bands, T]
            return torch.cat([h.mean(dim=3), h.std(dim=3, correction=0)], dim=2).flatten(1)
        h = h.mean(dim=2)
        return h.mean(dim=2) + h.amax(dim=2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(h)))


class CNN6(nn.Module):
    """Four 5×5 conv blocks (width, 2w, 4w, 8w), each conv → GroupNorm → ReLU → 2×2 average pool (as PANNs' CNN6)."""

    def __init__(
        self, n_classes: int, *, width: int = 16, dropout: float = 0.1, pooling: str = "mean_max", kernel: int = 5,
        blocks: int = 4,
    ) -> None:  # fmt: skip
        super().__init__()
        chans = [1] + [width * 2**i for i in range(blocks)]
        self.features = nn.Sequential(*[_conv_block(chans[i], chans[i + 1], kernel) for i in range(blocks)])
        self.head = _Head(chans[-1], n_classes, dropout, pooling)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding before the classifier (used by distribution matching and the audit)."""
        return self.head.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNNIoT(CNN6):
    """The IoT variant: three 3×3 blocks at half width — about an order of magnitude fewer MACs than CNN6."""

    def __init__(self, n_classes: int, *, width: int = 16, dropout: float = 0.1, pooling: str = "mean_max") -> None:
        super().__init__(n_classes, width=max(2, width // 2), dropout=dropout, pooling=pooling, kernel=3, blocks=3)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet-9 (prep, 3 pooled stages, residual blocks after stages 1 and 3) with GroupNorm."""

    def __init__(self, n_classes: int, *, width: int = 16, dropout: float = 0.1, pooling: str = "mean_max") -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False), _norm(w), nn.ReLU(inplace=True),
            _conv_block(w, 2 * w, 3), _Residual(2 * w),
            _conv_block(2 * w, 4 * w, 3),
            _conv_block(4 * w, 8 * w, 3), _Residual(8 * w),
        )  # fmt: skip
        self.head = _Head(8 * w, n_classes, dropout, pooling)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
