"""Gradient matching (DC; Zhao, Mopuri & Bilen, ICLR 2021).

For each of ``gm_iterations`` network initialisations (``networks.network_state``: the first is θ₀ when one is
given, the others random), repeat ``gm_outer_loop`` times: for every class present, the gradient of the cross-entropy
on a real batch of that class and on the class's synthetic examples are compared layer by layer with DC's distance
(one minus the cosine per output unit, summed; 1-D parameters — biases and norm affines — are left out, as in DC);
one step of the synthetic-feature optimiser (``optim``) lowers the sum; then the net trains ``gm_inner_steps`` SGD
steps on the (detached) synthetic set so later matches happen along a training trajectory.

Gradients come from ``torch.autograd.grad`` over ``torch.func.functional_call`` on a parameter dict; the synthetic
gradient is taken with ``create_graph=True`` so it stays differentiable with respect to the synthetic input (Opacus'
hooks cannot give that). Only batch-mean gradients are needed here, so plain autograd suffices and avoids
``torch.func.grad``'s one-off start-up cost (seconds on the first call in a process); a DP variant (PSG) swaps
``class_gradient`` on the real batch for a per-sample clipped and noised ``vmap(grad(...))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fedsered.config import DistillConfig, ModelConfig
from fedsered.distill.init import class_index
from fedsered.distill.networks import network_state, no_dropout
from fedsered.distill.optim import image_optimizer
from fedsered.models.build import build_model
from fedsered.seeding import rng
from fedsered.training.train import Progress

Params = dict[str, torch.Tensor]


def layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """DC's distance of one parameter's gradients: ``Σ_rows (1 − cos)`` over output units (0 for 1-D parameters)."""
    if g_real.ndim == 1:
        return g_syn.new_zeros(())
    a, b = g_real.reshape(g_real.shape[0], -1), g_syn.reshape(g_syn.shape[0], -1)
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-6)
    return (1.0 - cos).sum()


def gradient_distance(g_real: Params, g_syn: Params) -> torch.Tensor:
    """Sum of ``layer_distance`` over parameters."""
    return torch.stack([layer_distance(g_real[k], g_syn[k]) for k in g_real]).sum()


def class_gradient(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool) -> Params:
    """``d CE(model(x; params), y) / d params`` as a dict.

    Args:
        model: architecture (its own weights are ignored).
        params: parameter values (detached; gradients are taken at these values).
        x: inputs (may require grad).
        y: labels.
        create_graph: keep the result differentiable with respect to ``x``.

    Returns:
        One gradient per parameter.
    """
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = nn.functional.cross_entropy(functional_call(model, leaves, (x,)), y)
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=create_graph)
    return dict(zip(leaves, grads, strict=True))


def _sample(idx: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    return idx if len(idx) <= k else gen.choice(idx, size=k, replace=False)


def gm_loss(
    model: nn.Module,
    params: Params,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    x_syn: torch.Tensor,
    y_syn: torch.Tensor,
    *,
    batch_real: int | None,
    gen: np.random.Generator,
) -> torch.Tensor:
    """Gradient-matching loss of one network: sum over classes present in both sets.

    Args:
        model: architecture.
        params: its (detached) parameters.
        x_real: real features.
        y_real: real labels.
        x_syn: synthetic features (may require grad).
        y_syn: synthetic labels.
        batch_real: real examples per class (``None``: all).
        gen: sampling stream for the real batches.

    Returns:
        The scalar loss (differentiable in ``x_syn``).
    """
    yr, ys = y_real.numpy(), y_syn.numpy()
    terms = []
    for c in np.unique(ys):
        ir, is_ = class_index(yr, int(c)), class_index(ys, int(c))
        if len(ir) == 0:
            continue
        ir = _sample(ir, batch_real or len(ir), gen)
        g_real = class_gradient(model, params, x_real[ir], y_real[ir], create_graph=False)
        g_syn = class_gradient(model, params, x_syn[is_], y_syn[is_], create_graph=x_syn.requires_grad)
        terms.append(gradient_distance(g_real, g_syn))
    return torch.stack(terms).sum() if terms else x_syn.sum() * 0.0


def distil_gm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_init: np.ndarray,
    y_init: np.ndarray,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: Params | None,
    seed: int,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``(x, y)`` by gradient matching, starting from ``(x_init, y_init)``.

    Args:
        x: ``[n, 1, mels, frames]`` float32 real features.
        y: ``[n]`` int64 labels.
        x_init: starting synthetic features.
        y_init: their labels (fixed).
        cfg: the ``distill`` section (gm_iterations, gm_outer_loop, gm_inner_steps, gm_lr_net, batch_real, lr_img).
        model_cfg: architecture of the matched networks (dropout off).
        n_classes: number of classes.
        init_state: θ₀, used as the first network, or ``None``.
        seed: derives networks and real batches.
        progress: called with ``(update, updates)``.

    Returns:
        ``(x_syn, y_syn, meta)`` with ``loss_history`` (one loss per synthetic update).
    """
    net_cfg = no_dropout(model_cfg)
    xr, yr = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    x_syn = torch.tensor(x_init, dtype=torch.float32, requires_grad=True)
    y_syn = torch.from_numpy(np.ascontiguousarray(y_init))
    opt_x = image_optimizer([x_syn], kind=cfg.img_optimizer, lr=cfg.lr_img)
    gen = rng(seed, "gm/real-batches")
    history: list[float] = []
    total = cfg.gm_iterations * cfg.gm_outer_loop
    for k in range(cfg.gm_iterations):
        state = network_state("gm", k, model_cfg=net_cfg, n_classes=n_classes, init_state=init_state, seed=seed)
        model = build_model(net_cfg, n_classes=n_classes, init_state=state)
        net_opt = torch.optim.SGD(model.parameters(), lr=cfg.gm_lr_net)
        for ol in range(cfg.gm_outer_loop):
            params = {n: p.detach() for n, p in model.named_parameters()}
            loss = gm_loss(model, params, xr, yr, x_syn, y_syn, batch_real=cfg.batch_real, gen=gen)
            opt_x.zero_grad(set_to_none=True)
            loss.backward()
            opt_x.step()
            history.append(float(loss.detach()))
            if progress is not None:
                progress(len(history), total)
            if ol == cfg.gm_outer_loop - 1:
                break
            xs = x_syn.detach()
            for _ in range(cfg.gm_inner_steps):
                net_loss = nn.functional.cross_entropy(model(xs), y_syn)
                net_opt.zero_grad(set_to_none=True)
                net_loss.backward()
                net_opt.step()
    return x_syn.detach().numpy().astype(np.float32), y_syn.numpy().copy(), {"loss_history": history}


@torch.no_grad()
def _no_grad_params(model: nn.Module) -> Params:
    return {n: p.detach() for n, p in model.named_parameters()}


def gm_matching_loss(
    x_syn: np.ndarray,
    y_syn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    states: list[Params],
    model_cfg: ModelConfig,
    n_classes: int,
) -> float:
    """Mean gradient-matching loss of a synthetic set over fixed networks, with all real examples of each class.

    Args:
        x_syn: synthetic features.
        y_syn: synthetic labels.
        x: real features.
        y: real labels.
        states: the networks' weights.
        model_cfg: architecture.
        n_classes: number of classes.

    Returns:
        The mean loss (deterministic: a yardstick to compare sets, e.g. before and after distillation).
    """
    xr, yr = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    xs, ys = torch.from_numpy(np.ascontiguousarray(x_syn)), torch.from_numpy(np.ascontiguousarray(y_syn))
    gen = np.random.default_rng(0)
    losses = []
    for state in states:
        model = build_model(no_dropout(model_cfg), n_classes=n_classes, init_state=state)
        losses.append(float(gm_loss(model, _no_grad_params(model), xr, yr, xs, ys, batch_real=None, gen=gen)))
    return float(np.mean(losses))
