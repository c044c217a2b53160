"""Distribution matching (DM; Zhao & Bilen, WACV 2023).

Each update draws a randomly initialised network (``networks.network_state``: the first is θ₀ when one is given) and
moves the synthetic features so that, class by class, their mean embedding (``model.embed``: the pooled features
before the classifier) matches the mean embedding of a real batch of the class: loss ``Σ_c ‖μ_real,c − μ_syn,c‖²``.
No inner training loop and no second-order gradients — far cheaper per update than gm or mtt. The networks'
weights are frozen; only the synthetic input receives gradients (plain autograd suffices here), applied by the
synthetic-feature optimiser (``optim``). With ``distill.dsa`` each update draws one transform per class
(``dsa``) and both sides of the class's match pass through it. With ``distill.formation`` f > 1 the stored examples are
decoded (``formation.decode``, differentiable) before they are embedded: the match is on the examples the server will
train on.

DP (``dp``): every update takes a Poisson sample of the real data at the spec's rate; each sampled example's
embedding is clipped and, with a count coordinate, summed per class with Gaussian noise
(``fedsered.privacy.embeddings``) — one sampled Gaussian mechanism step per update. The real class mean is the noisy
sum over the running mean of the noisy counts, and the synthetic embeddings are clipped alike.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig
from fedsered.distill import dsa
from fedsered.distill.formation import decode, decode_labels
from fedsered.distill.init import LearnTask, class_index
from fedsered.distill.networks import frozen_net, matching_loss, network_state
from fedsered.distill.optim import feature_update, learnable_features
from fedsered.privacy.embeddings import embedding_bound, noisy_embedding_sums
from fedsered.privacy.gaussian import clip_rows, poisson_sample
from fedsered.privacy.mechanism import DPSpec
from fedsered.seeding import rng, torch_generator
from fedsered.training.train import Progress


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.embed(x)`` (the nets' pooled embedding before the classifier)."""
    out = model.embed(x)  # type: ignore[operator]
    assert isinstance(out, torch.Tensor)
    return out


def dm_loss(
    model: nn.Module,
    x_real: torch.Tensor,
    y_real: np.ndarray,
    x_syn: torch.Tensor,
    y_syn: np.ndarray,
    *,
    batch_real: int | None,
    gen: np.random.Generator,
    views: dsa.Views | None = None,
) -> torch.Tensor:
    """``Σ_c ‖mean embed(real_c) − mean embed(syn_c)‖²`` over classes present in both sets, on a frozen ``model``
    with ``embed``; differentiable in ``x_syn``. Each class's real mean is taken over ``batch_real`` examples drawn
    from ``gen`` (``None``: all of them); labels are numpy arrays. ``views``: both sides of class ``c`` seen through
    its transform (``dsa``).
    """
    terms = []
    for c in np.unique(y_syn):
        ir, is_ = class_index(y_real, int(c)), class_index(y_syn, int(c))
        if len(ir) == 0:
            continue
        if batch_real is not None and len(ir) > batch_real:
            ir = gen.choice(ir, size=batch_real, replace=False)
        xr, xs = x_real[ir], x_syn[is_]
        if views is not None:
            xr = dsa.apply(xr, torch.full((len(ir),), int(c)), views)
            xs = dsa.apply(xs, torch.full((len(is_),), int(c)), views)
        with torch.no_grad():
            mu_real = embed(model, xr).mean(dim=0)
        mu_syn = embed(model, xs).mean(dim=0)
        terms.append(((mu_real - mu_syn) ** 2).sum())
    return torch.stack(terms).sum() if terms else x_syn.sum() * 0.0


def _dm_all_real(
    model: nn.Module, x_real: torch.Tensor, y_real: np.ndarray, x_syn: torch.Tensor, y_syn: np.ndarray
) -> torch.Tensor:
    with torch.no_grad():
        return dm_loss(model, x_real, y_real, x_syn, y_syn, batch_real=None, gen=np.random.default_rng(0))


class _PrivateMeans:
    """DP per-class real means, one sampled Gaussian mechanism step per call (see the module docstring)."""

    def __init__(self, x: torch.Tensor, y: np.ndarray, *, n_classes: int, dp: DPSpec, seed: int) -> None:
        self.x, self.y, self.n_classes, self.dp = x, torch.from_numpy(np.ascontiguousarray(y)), n_classes, dp
        self.sample, self.noise = rng(seed, "dm/dp-sample"), torch_generator(seed, "dm/dp-noise")
        self.count_sum, self.steps = torch.zeros(n_classes), 0

    def step(self, model: nn.Module, views: dsa.Views | None = None) -> torch.Tensor:
        """``[n_classes, d]`` noisy real means under ``model``'s embedding (each example seen through its class's
        transform in ``views``, when given)."""
        idx = torch.from_numpy(poisson_sample(len(self.x), sample_rate=self.dp.sample_rate, gen=self.sample))
        x = self.x[idx] if views is None else dsa.apply(self.x[idx], self.y[idx], views)
        with torch.no_grad():
            emb = embed(model, x)
        sums, counts = noisy_embedding_sums(
            emb, self.y[idx], n_classes=self.n_classes, max_norm=self.dp.max_grad_norm,
            noise_multiplier=self.dp.noise_multiplier, generator=self.noise,
        )  # fmt: skip
        self.count_sum += counts
        self.steps += 1
        return sums / (self.count_sum / self.steps).clamp_min(1.0).unsqueeze(1)


def dp_dm_loss(
    model: nn.Module,
    mu_real: torch.Tensor,
    x_syn: torch.Tensor,
    y_syn: np.ndarray,
    *,
    max_norm: float,
    views: dsa.Views | None = None,
) -> torch.Tensor:
    """``Σ_c ‖μ̂_real,c − mean clip(embed(syn_c))‖²`` over the synthetic set's classes (DP: ``μ̂`` from
    ``_PrivateMeans``, under the same ``views``)."""
    if views is not None:
        x_syn = dsa.apply(x_syn, torch.from_numpy(np.ascontiguousarray(y_syn)), views)
    emb = clip_rows(embed(model, x_syn), embedding_bound(max_norm))
    terms = [((mu_real[int(c)] - emb[class_index(y_syn, int(c))].mean(dim=0)) ** 2).sum() for c in np.unique(y_syn)]
    return torch.stack(terms).sum()


def distil_dm(
    task: LearnTask, cfg: DistillConfig, *, progress: Progress | None = None, dp: DPSpec | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``task.x, task.y`` by distribution matching, starting from ``task.x_init`` (labels ``task.y_init``).

    Args:
        task: real data, synthetic start, networks' setting and seed (θ₀, when given, is the first network).
        cfg: the ``distill`` section (dm_iterations, batch_real, lr_img, img_optimizer, dsa).
        progress: called with ``(update, updates)``.
        dp: DP DM under this calibrated mechanism (``steps`` must equal ``dm_iterations``), or ``None``.

    Returns:
        ``(x_syn, y_syn, meta)`` with ``loss_history`` (one loss per update).
    """
    if dp is not None and dp.steps != cfg.dm_iterations:
        raise ValueError(f"DP spec covers {dp.steps} steps, dm takes {cfg.dm_iterations}")
    xr = torch.from_numpy(np.ascontiguousarray(task.x))
    x_syn, opt_x = learnable_features(task.x_init, kind=cfg.img_optimizer, lr=cfg.lr_img)
    gen = rng(task.seed, "dm/real-batches")
    private = _PrivateMeans(xr, task.y, n_classes=task.n_classes, dp=dp, seed=dp.noise_seed) if dp is not None else None
    augment = torch_generator(task.seed, "dm/dsa") if dsa.is_active(cfg.dsa) else None
    history: list[float] = []
    y_train = decode_labels(task.y_init, cfg.formation)
    for it in range(cfg.dm_iterations):
        state = network_state(
            "dm", it, model_cfg=task.model_cfg, n_classes=task.n_classes, init_state=task.init_state, seed=task.seed
        )
        model = frozen_net(state, model_cfg=task.model_cfg, n_classes=task.n_classes)
        views = None
        if augment is not None:
            mels, frames = xr.shape[-2:]
            views = dsa.draw(cfg.dsa, n_classes=task.n_classes, mels=mels, frames=frames, gen=augment)
        x_train = decode(x_syn, cfg.formation)
        if private is not None and dp is not None:
            mu = private.step(model, views)
            loss = dp_dm_loss(model, mu, x_train, y_train, max_norm=dp.max_grad_norm, views=views)
        else:
            loss = dm_loss(model, xr, task.y, x_train, y_train, batch_real=cfg.batch_real, gen=gen, views=views)
        feature_update(opt_x, loss, history=history, progress=progress, total=cfg.dm_iterations)
    return x_syn.detach().numpy().astype(np.float32), np.array(task.y_init, dtype=np.int64), {"loss_history": history}


dm_matching_loss = partial(matching_loss, _dm_all_real)
"""``matching_loss`` of ``dm_loss`` with all real examples per class: ``dm_matching_loss(x_syn, y_syn, x, y, *,
states, model_cfg, n_classes) -> float``."""
