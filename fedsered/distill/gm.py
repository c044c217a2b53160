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
``torch.func.grad``'s one-off start-up cost (seconds on the first call in a process).

DP (PSG, ``dp``): every synthetic update takes a Poisson sample of the real data at the spec's rate and replaces the
per-class real gradients by ``fedsered.privacy.psg.private_class_gradients`` — per-example ``vmap(grad(...))``
gradients of the matched parameters, clipped to C, summed per class, plus N(0, (σC)²) — one sampled Gaussian
mechanism step per update; the synthetic side, the networks and the inner steps on synthetic data are
post-processing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fedsered.config import DistillConfig
from fedsered.distill.init import LearnTask, class_index
from fedsered.distill.networks import matching_loss, network_state, no_dropout
from fedsered.distill.optim import feature_update, learnable_features
from fedsered.models.build import build_model
from fedsered.privacy.gaussian import poisson_sample
from fedsered.privacy.mechanism import DPSpec
from fedsered.privacy.psg import private_class_gradients
from fedsered.seeding import rng, torch_generator
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
    real_grads: dict[int, Params] | None = None,
) -> torch.Tensor:
    """Gradient-matching loss of one network (``model``'s architecture at the detached ``params``): the sum over
    classes present in both sets of ``gradient_distance`` between the class's real and synthetic gradients;
    differentiable in ``x_syn`` when it requires grad. Real batches hold ``batch_real`` examples of the class drawn
    from ``gen`` (``None``: all of them); labels are tensors. ``real_grads`` (DP) gives every class's real gradient
    instead (``x_real``, ``y_real`` are then unused).
    """
    yr, ys = y_real.numpy(), y_syn.numpy()
    terms = []
    for c in np.unique(ys):
        ir, is_ = class_index(yr, int(c)), class_index(ys, int(c))
        if real_grads is not None:
            g_real = real_grads[int(c)]
        elif len(ir) == 0:
            continue
        else:
            ir = _sample(ir, batch_real or len(ir), gen)
            g_real = class_gradient(model, params, x_real[ir], y_real[ir], create_graph=False)
        g_syn = class_gradient(model, params, x_syn[is_], y_syn[is_], create_graph=x_syn.requires_grad)
        terms.append(gradient_distance(g_real, g_syn))
    return torch.stack(terms).sum() if terms else x_syn.sum() * 0.0


def distil_gm(
    task: LearnTask, cfg: DistillConfig, *, progress: Progress | None = None, dp: DPSpec | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``task.x, task.y`` by gradient matching, starting from ``task.x_init`` (labels ``task.y_init``).

    Args:
        task: real data, synthetic start, networks' setting (dropout off) and seed (θ₀, when given, is the first
            network).
        cfg: the ``distill`` section (gm_iterations, gm_outer_loop, gm_inner_steps, gm_lr_net, batch_real, lr_img).
        progress: called with ``(update, updates)``.
        dp: PSG under this calibrated mechanism (``steps`` must equal ``gm_iterations × gm_outer_loop``), or
            ``None``.

    Returns:
        ``(x_syn, y_syn, meta)`` with ``loss_history`` (one loss per synthetic update).
    """
    net_cfg, n_classes = no_dropout(task.model_cfg), task.n_classes
    xr, yr = torch.from_numpy(np.ascontiguousarray(task.x)), torch.from_numpy(np.ascontiguousarray(task.y))
    x_syn, opt_x = learnable_features(task.x_init, kind=cfg.img_optimizer, lr=cfg.lr_img)
    y_syn = torch.from_numpy(np.ascontiguousarray(task.y_init))
    gen = rng(task.seed, "gm/real-batches")
    history: list[float] = []
    total = cfg.gm_iterations * cfg.gm_outer_loop
    if dp is not None and dp.steps != total:
        raise ValueError(f"DP spec covers {dp.steps} steps, gm takes {total}")
    dp_seed = dp.noise_seed if dp is not None else task.seed  # the client's secret unless reproducible_noise
    dp_sample, dp_noise = rng(dp_seed, "gm/dp-sample"), torch_generator(dp_seed, "gm/dp-noise")
    for k in range(cfg.gm_iterations):
        state = network_state(
            "gm", k, model_cfg=net_cfg, n_classes=n_classes, init_state=task.init_state, seed=task.seed
        )
        model = build_model(net_cfg, n_classes=n_classes, init_state=state)
        net_opt = torch.optim.SGD(model.parameters(), lr=cfg.gm_lr_net)
        for ol in range(cfg.gm_outer_loop):
            params = {n: p.detach() for n, p in model.named_parameters()}
            real_grads = None
            if dp is not None:
                idx = torch.from_numpy(poisson_sample(len(xr), sample_rate=dp.sample_rate, gen=dp_sample))
                real_grads = private_class_gradients(
                    model, params, xr[idx], yr[idx], n_classes=n_classes, max_norm=dp.max_grad_norm,
                    noise_multiplier=dp.noise_multiplier, generator=dp_noise,
                )  # fmt: skip
            loss = gm_loss(
                model, params, xr, yr, x_syn, y_syn, batch_real=cfg.batch_real, gen=gen, real_grads=real_grads
            )
            feature_update(opt_x, loss, history=history, progress=progress, total=total)
            if ol == cfg.gm_outer_loop - 1:
                break
            xs = x_syn.detach()
            for _ in range(cfg.gm_inner_steps):
                net_loss = nn.functional.cross_entropy(model(xs), y_syn)
                net_opt.zero_grad(set_to_none=True)
                net_loss.backward()
                net_opt.step()
    return x_syn.detach().numpy().astype(np.float32), y_syn.numpy().copy(), {"loss_history": history}


def _gm_all_real(
    model: nn.Module, x_real: torch.Tensor, y_real: np.ndarray, x_syn: torch.Tensor, y_syn: np.ndarray
) -> torch.Tensor:
    params = {n: p.detach() for n, p in model.named_parameters()}
    yr, ys = torch.from_numpy(np.ascontiguousarray(y_real)), torch.from_numpy(np.ascontiguousarray(y_syn))
    return gm_loss(model, params, x_real, yr, x_syn, ys, batch_real=None, gen=np.random.default_rng(0))


gm_matching_loss = partial(matching_loss, _gm_all_real)
"""``matching_loss`` of ``gm_loss`` with all real examples of each class: ``gm_matching_loss(x_syn, y_syn, x, y, *,
states, model_cfg, n_classes) -> float``."""
