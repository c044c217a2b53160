"""Distribution matching (DM; Zhao & Bilen, WACV 2023).

Each update draws a randomly initialised network (``networks.network_state``: the first is θ₀ when one is given) and
moves the synthetic features so that, class by class, their mean embedding (``model.embed``: the pooled features
before the classifier) matches the mean embedding of a real batch of the class: loss ``Σ_c ‖μ_real,c − μ_syn,c‖²``.
No inner training loop and no second-order gradients — far cheaper per update than gm or mtt. The networks'
weights are frozen; only the synthetic input receives gradients (plain autograd suffices here), applied by the
synthetic-feature optimiser (``optim``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig, ModelConfig
from fedsered.distill.init import class_index
from fedsered.distill.networks import network_state, no_dropout
from fedsered.distill.optim import image_optimizer
from fedsered.models.build import build_model
from fedsered.seeding import rng
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
) -> torch.Tensor:
    """``Σ_c ‖mean embed(real_c) − mean embed(syn_c)‖²`` over classes present in both sets.

    Args:
        model: a network with ``embed`` (frozen).
        x_real: real features.
        y_real: real labels.
        x_syn: synthetic features (may require grad).
        y_syn: synthetic labels.
        batch_real: real examples per class (``None``: all).
        gen: sampling stream for the real batches.

    Returns:
        The scalar loss (differentiable in ``x_syn``).
    """
    terms = []
    for c in np.unique(y_syn):
        ir, is_ = class_index(y_real, int(c)), class_index(y_syn, int(c))
        if len(ir) == 0:
            continue
        if batch_real is not None and len(ir) > batch_real:
            ir = gen.choice(ir, size=batch_real, replace=False)
        with torch.no_grad():
            mu_real = embed(model, x_real[ir]).mean(dim=0)
        mu_syn = embed(model, x_syn[is_]).mean(dim=0)
        terms.append(((mu_real - mu_syn) ** 2).sum())
    return torch.stack(terms).sum() if terms else x_syn.sum() * 0.0


def _frozen_net(state: dict[str, torch.Tensor], *, model_cfg: ModelConfig, n_classes: int) -> nn.Module:
    model = build_model(no_dropout(model_cfg), n_classes=n_classes, init_state=state)
    model.requires_grad_(False)
    return model.eval()


def distil_dm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_init: np.ndarray,
    y_init: np.ndarray,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``(x, y)`` by distribution matching, starting from ``(x_init, y_init)``.

    Args:
        x: ``[n, 1, mels, frames]`` float32 real features.
        y: ``[n]`` int64 labels.
        x_init: starting synthetic features.
        y_init: their labels (fixed).
        cfg: the ``distill`` section (dm_iterations, batch_real, lr_img).
        model_cfg: architecture of the embedding networks.
        n_classes: number of classes.
        init_state: θ₀, used as the first network, or ``None``.
        seed: derives networks and real batches.
        progress: called with ``(update, updates)``.

    Returns:
        ``(x_syn, y_syn, meta)`` with ``loss_history`` (one loss per update).
    """
    xr = torch.from_numpy(np.ascontiguousarray(x))
    x_syn = torch.tensor(x_init, dtype=torch.float32, requires_grad=True)
    opt_x = image_optimizer([x_syn], kind=cfg.img_optimizer, lr=cfg.lr_img)
    gen = rng(seed, "dm/real-batches")
    history: list[float] = []
    for it in range(cfg.dm_iterations):
        state = network_state("dm", it, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state, seed=seed)
        model = _frozen_net(state, model_cfg=model_cfg, n_classes=n_classes)
        loss = dm_loss(model, xr, y, x_syn, y_init, batch_real=cfg.batch_real, gen=gen)
        opt_x.zero_grad(set_to_none=True)
        loss.backward()
        opt_x.step()
        history.append(float(loss.detach()))
        if progress is not None:
            progress(it + 1, cfg.dm_iterations)
    return x_syn.detach().numpy().astype(np.float32), np.array(y_init, dtype=np.int64), {"loss_history": history}


def dm_matching_loss(
    x_syn: np.ndarray,
    y_syn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    states: list[dict[str, torch.Tensor]],
    model_cfg: ModelConfig,
    n_classes: int,
) -> float:
    """Mean distribution-matching loss of a synthetic set over fixed networks, with all real examples per class.

    Args:
        x_syn: synthetic features.
        y_syn: synthetic labels.
        x: real features.
        y: real labels.
        states: the networks' weights.
        model_cfg: architecture.
        n_classes: number of classes.

    Returns:
        The mean loss (deterministic).
    """
    xr, xs = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(x_syn))
    gen = np.random.default_rng(0)
    with torch.no_grad():
        losses = [
            float(dm_loss(_frozen_net(s, model_cfg=model_cfg, n_classes=n_classes), xr, y, xs, y_syn,
                          batch_real=None, gen=gen))
            for s in states
        ]  # fmt: skip
    return float(np.mean(losses))
