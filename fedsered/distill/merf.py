"""One-shot mean-embedding distillation (``merf``; DP-MERF, Harder et al., AISTATS 2021, with frozen random networks
in place of random Fourier features).

The method owns two strictly separated phases:

1. **Release** (``release_sums``, the only function that sees the real data): K = ``merf_networks`` frozen networks
   (``networks.network_state("merf", k)``; the first is θ₀ when one is given) embed every real example once; an
   example's embedding is the concatenation of its ``model.embed`` under the K nets, each part divided by √K (the
   row's scale does not grow with K). Rows are clipped to ``embedding_bound(C)`` and the per-class means are
   released. Under DP it is ONE step of the Gaussian mechanism over all real examples (``noisy_embedding_sums``:
   clipped rows plus a count coordinate, whole row of norm ≤ C, so adding or removing one example moves the
   concatenated per-class sums and counts by at most C; noise σ·C from the client's secret ``noise_seed``): sample
   rate 1 (no subsampling: q = 1 is a public constant), one step, and the mean is the noisy sum over
   ``max(noisy count, 1)``. Without DP the means are exact, under the same clipping (C = the default
   ``privacy.max_grad_norm``), so the non-DP set is the σ → 0 limit of the DP one.
2. **Synthesis** (``synthesise``, pure post-processing: it receives the released means and the data-independent
   synthetic start, never the real data): ``merf_iterations`` updates of the synthetic features minimising
   ``Σ_c ‖μ̂_c − mean clip(emb(syn_c))‖²`` under the same K nets (``dm.dp_dm_loss``).

Why one-shot: the iterative DP methods (gm, dm, mtt) pay for every step; a client with ~60 utterances cannot afford
that, while one release at q = 1 spends the whole budget on a single low-dimensional statistic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedsered.config import DistillConfig, ModelConfig, PrivacyConfig
from fedsered.distill.dm import dp_dm_loss, embed
from fedsered.distill.init import LearnTask
from fedsered.distill.networks import frozen_net, network_state
from fedsered.distill.optim import feature_update, learnable_features
from fedsered.privacy.embeddings import embedding_bound, noisy_embedding_sums
from fedsered.privacy.gaussian import clip_rows
from fedsered.privacy.mechanism import DPSpec
from fedsered.seeding import rng, torch_generator
from fedsered.training.train import Progress

NON_DP_MAX_NORM: float = float(PrivacyConfig.model_fields["max_grad_norm"].default)
"""C of the non-DP release's clipping: the default ``privacy.max_grad_norm`` (same scale as the DP release)."""

REAL_CHUNK = 256
"""Real examples embedded per forward pass (bounds the release's memory on a large, centralised split)."""


CENTRE_NOISE_INPUTS = 64
"""Gaussian inputs whose mean embedding is the ``noise`` centre (``noise_centre``)."""


class ConcatEmbedding(nn.Module):
    """K frozen networks as one: ``embed(x)`` is ``[embed_k(x) / √K for k]`` concatenated (``[B, K·d]``), minus
    ``centre`` when one is set (a data-independent point: clipping then bounds how far an example lies from it, not
    the part every example shares — see ``noise_centre``)."""

    def __init__(self, nets: list[nn.Module], centre: torch.Tensor | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.scale = 1.0 / math.sqrt(len(nets))
        self.centre = centre

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled concatenation of every net's embedding of ``x``, uncentred."""
        return torch.cat([embed(net, x) * self.scale for net in self.nets], dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``raw(x)`` minus the centre (when set)."""
        out = self.raw(x)
        return out if self.centre is None else out - self.centre

    def centred(self, centre: torch.Tensor | None) -> ConcatEmbedding:
        """The same networks centred on ``centre`` (``None``: uncentred)."""
        return ConcatEmbedding(list(self.nets), centre)


def mean_embedding(nets: ConcatEmbedding, x: np.ndarray) -> torch.Tensor:
    """The mean uncentred embedding of ``x`` (``[K·d]``), embedded in chunks of ``REAL_CHUNK``."""
    xr = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        return torch.cat([nets.raw(xr[i : i + REAL_CHUNK]) for i in range(0, len(xr), REAL_CHUNK)]).mean(dim=0)


def noise_centre(nets: ConcatEmbedding, input_shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    """The mean embedding of ``CENTRE_NOISE_INPUTS`` standard Gaussian inputs drawn from ``seed`` (public).

    The random networks' embeddings of speech share a large common part (after ReLU and pooling, all positive): on
    the default corpus the clipped rows' mean is 98 % of the bound and the class means differ by 6 % of it, so
    clipping spends almost the whole bound, and the DP noise it sets, on what every example shares. Centring on this
    point first (any data-independent point keeps the sensitivity C) leaves 2.6× the between-class signal there;
    the public corpus's mean embedding, 5× (``benchmarks/merf_centre.py``). Yet this centre lowers the UAR of the
    server's synthesis (RESULTS.md "Centring the embeddings"): a set started from Gaussian noise embeds near it, so
    the directions its clipped means are fitted by start as noise. The public centre is the one that helps."""
    noise = rng(seed, "merf/centre").standard_normal((CENTRE_NOISE_INPUTS, *input_shape)).astype(np.float32)
    return mean_embedding(nets, noise)


def merf_nets(task: LearnTask, k: int) -> ConcatEmbedding:
    """The ``k`` frozen embedding networks of ``task`` (network 0 is θ₀ when ``task.init_state`` is given)."""
    return embedding_nets(task.model_cfg, n_classes=task.n_classes, init_state=task.init_state, seed=task.seed, k=k)


def embedding_nets(
    model_cfg: ModelConfig, *, n_classes: int, init_state: dict[str, torch.Tensor] | None, seed: int, k: int
) -> ConcatEmbedding:
    """The ``k`` frozen networks drawn from ``seed`` (network 0 is ``init_state`` when given). Server synthesis draws
    them from the public run seed, so every client embeds with the same nets and the server can add the releases."""
    states = [network_state("merf", i, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state, seed=seed)
              for i in range(k)]  # fmt: skip
    return ConcatEmbedding([frozen_net(s, model_cfg=model_cfg, n_classes=n_classes) for s in states])


def release_sums(
    nets: ConcatEmbedding, x: np.ndarray, y: np.ndarray, *, n_classes: int, dp: DPSpec | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The release: ``(sums [n_classes, K·d], counts [n_classes])`` of the clipped embeddings of ALL of ``x`` (the
    only use of the real data; see the module docstring). Under ``dp`` one Gaussian step at q = 1 with noise from
    ``dp.noise_seed`` (both noisy); without, exact sums and counts under the same clipping."""
    xr = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        emb = torch.cat([nets.embed(xr[i : i + REAL_CHUNK]) for i in range(0, len(xr), REAL_CHUNK)])
    labels = torch.from_numpy(np.ascontiguousarray(y))
    if dp is None:
        rows = clip_rows(emb, embedding_bound(NON_DP_MAX_NORM))
        sums = rows.new_zeros((n_classes, rows.shape[1])).index_add_(0, labels, rows)
        return sums, torch.bincount(labels, minlength=n_classes).to(rows.dtype)
    return noisy_embedding_sums(
        emb, labels, n_classes=n_classes, max_norm=dp.max_grad_norm, noise_multiplier=dp.noise_multiplier,
        generator=torch_generator(dp.noise_seed, "merf/dp-noise"),
    )  # fmt: skip


def means_of(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-class means from released sums and counts (post-processing): a count below 1 (a class nobody holds, or
    noise) divides by 1."""
    return sums / counts.clamp_min(1.0).unsqueeze(1)


def synthesise(
    nets: ConcatEmbedding,
    means: torch.Tensor,
    x_init: np.ndarray,
    y_init: np.ndarray,
    *,
    cfg: DistillConfig,
    max_norm: float,
    progress: Progress | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Post-processing of the released ``means``: fit the synthetic features (from ``x_init``, labels ``y_init``) so
    their clipped mean embeddings match them; no real data in reach. With ``cfg.merf_upsample`` r > 1 the features
    fitted are ``[mels/r, frames/r]`` images (the start average-pooled to that size) and the set is their bilinear
    upsampling. Returns the full-size features and the loss per update."""
    r = cfg.merf_upsample
    size = (int(x_init.shape[-2]), int(x_init.shape[-1]))
    start = x_init if r == 1 else pooled(x_init, (math.ceil(size[0] / r), math.ceil(size[1] / r)))
    z, opt_x = learnable_features(start, kind=cfg.img_optimizer, lr=cfg.lr_img)
    history: list[float] = []
    for _ in range(cfg.merf_iterations):
        loss = dp_dm_loss(nets, means, upsampled(z, size), y_init, max_norm=max_norm)
        feature_update(opt_x, loss, history=history, progress=progress, total=cfg.merf_iterations)
    with torch.no_grad():
        return upsampled(z, size).numpy().astype(np.float32), history


def pooled(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[m, 1, mels, T]`` features average-pooled to ``[m, 1, *size]`` (the low-resolution start)."""
    return F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(x)), size).numpy()


def upsampled(z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[m, 1, h, w]`` → ``[m, 1, *size]`` by bilinear interpolation (identity when already that size)."""
    if tuple(z.shape[-2:]) == tuple(size):
        return z
    return F.interpolate(z, size=size, mode="bilinear", align_corners=False)


def distil_merf(
    task: LearnTask, cfg: DistillConfig, *, progress: Progress | None = None, dp: DPSpec | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``task.x, task.y`` by one release of per-class mean embeddings (``release_sums``, ``means_of``), then
    post-processing (``synthesise``); the contract of ``dm.distil_dm``, with ``cfg``'s merf_networks, merf_iterations,
    lr_img and img_optimizer, and ``dp`` (or ``None``) one step at sample rate 1. ``meta``: ``loss_history`` (one loss
    per update) and ``merf_networks``."""
    if dp is not None and (dp.steps != 1 or dp.sample_rate != 1.0):
        raise ValueError(f"merf releases once at sample rate 1; DP spec has {dp.steps} steps at {dp.sample_rate}")
    nets = merf_nets(task, cfg.merf_networks)
    means = means_of(*release_sums(nets, task.x, task.y, n_classes=task.n_classes, dp=dp))
    max_norm = dp.max_grad_norm if dp is not None else NON_DP_MAX_NORM
    x_syn, history = synthesise(nets, means, task.x_init, task.y_init, cfg=cfg, max_norm=max_norm, progress=progress)
    meta = {"loss_history": history, "merf_networks": cfg.merf_networks}
    return x_syn, np.array(task.y_init, dtype=np.int64), meta
