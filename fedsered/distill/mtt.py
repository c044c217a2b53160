"""Trajectory matching (MTT; Cazenavette et al., CVPR 2022), the seed paper's distillation method.

Each update: pick an expert and a start epoch ``t`` in ``[0, max_start_epoch)``; from the expert's parameters at
``t`` take ``syn_steps`` plain-SGD student steps on mini-batches (``batch_syn``) of the synthetic set with a learnable
step size ``exp(log_lr)``; the loss is the student's end point's squared distance to the expert at ``t + M``
(``M = expert_epochs``), normalised by the expert's own movement: ``‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²``.
The unroll runs on a flat parameter vector through ``torch.func.functional_call``, so the loss is differentiable
with respect to the synthetic features and ``log_lr``; the features follow the synthetic-feature optimiser
(``optim``: ``img_optimizer``, ``lr_img``), ``log_lr`` follows Adam (``lr_lr``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig, ModelConfig
from fedsered.distill.experts import Trajectory, train_experts
from fedsered.distill.init import LearnTask
from fedsered.distill.networks import no_dropout
from fedsered.distill.optim import learnable_features
from fedsered.distill.params import ParamLayout, functional_forward
from fedsered.models.build import build_model
from fedsered.privacy.mechanism import DPSpec
from fedsered.seeding import rng, torch_generator
from fedsered.training.train import Progress


def trajectory_loss(end: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``‖end − target‖² / ‖start − target‖²`` (MTT's normalised parameter-matching loss)."""
    return ((end - target) ** 2).sum() / ((start - target) ** 2).sum().clamp_min(1e-12)


class _BatchCycler:
    """Mini-batches of synthetic indices: successive slices of random permutations (every example used in turn)."""

    def __init__(self, m: int, batch: int, generator: torch.Generator) -> None:
        self.m, self.batch, self.gen = m, min(batch, m), generator
        self.queue = torch.empty(0, dtype=torch.int64)

    def next(self) -> torch.Tensor:
        while len(self.queue) < self.batch:
            self.queue = torch.cat([self.queue, torch.randperm(self.m, generator=self.gen)])
        idx, self.queue = self.queue[: self.batch], self.queue[self.batch :]
        return idx


def unroll_student(
    model: nn.Module,
    layout: ParamLayout,
    start: torch.Tensor,
    x_syn: torch.Tensor,
    y_syn: torch.Tensor,
    *,
    lr: torch.Tensor,
    steps: int,
    batches: _BatchCycler,
    create_graph: bool = True,
) -> torch.Tensor:
    """``steps`` differentiable SGD steps of the student from ``start`` on synthetic mini-batches.

    Args:
        model: the architecture (its own weights are ignored).
        layout: parameter layout of the flat vectors.
        start: ``[P]`` starting parameters (an expert snapshot; not differentiated).
        x_syn: ``[m, 1, mels, frames]`` synthetic features (may require grad).
        y_syn: ``[m]`` labels.
        lr: scalar student step size (may require grad).
        steps: number of steps.
        batches: source of mini-batch indices.
        create_graph: keep the unroll differentiable (``False`` to only evaluate).

    Returns:
        ``[P]`` end parameters, differentiable with respect to ``x_syn`` and ``lr``.
    """
    flat = start.detach().clone().requires_grad_(True)
    for _ in range(steps):
        idx = batches.next()
        ce = nn.functional.cross_entropy(functional_forward(model, layout, flat, x_syn[idx]), y_syn[idx])
        (grad,) = torch.autograd.grad(ce, flat, create_graph=create_graph)
        flat = flat - lr * grad
        if not create_graph:
            flat = flat.detach().requires_grad_(True)
    return flat


def _apply(
    loss: torch.Tensor,
    opt_x: torch.optim.Optimizer,
    opt_lr: torch.optim.Optimizer | None,
    x_syn: torch.Tensor,
    log_lr: torch.Tensor,
) -> float | None:
    """Backpropagate ``loss`` and step both optimisers; skip (return ``None``) when the loss or a gradient is not
    finite, so one diverging unroll cannot poison the synthetic set."""
    opt_x.zero_grad(set_to_none=True)
    if opt_lr is not None:
        opt_lr.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return None
    loss.backward()
    if not all(t.grad is None or bool(torch.isfinite(t.grad).all()) for t in (x_syn, log_lr)):
        return None
    opt_x.step()
    if opt_lr is not None:
        opt_lr.step()
    return float(loss.detach())


def distil_mtt(
    task: LearnTask, cfg: DistillConfig, *, progress: Progress | None = None, dp: DPSpec | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Distil ``task.x, task.y`` by trajectory matching, starting from ``task.x_init`` (labels ``task.y_init``).

    Args:
        task: real data, synthetic start, architecture of experts and student, and seed; every expert starts at
            ``task.init_state`` (θ₀), or at a random initialisation when it is ``None``.
        cfg: the ``distill`` section (mtt_iterations, experts, syn_steps, batch_syn, lr_img, lr_student, lr_lr, ...).
        progress: called with ``(update, updates)`` after each update (the experts are trained before the first).
        dp: train the experts with DP-SGD under this calibrated mechanism (``fedsered.privacy``), or ``None``.

    Returns:
        ``(x_syn, y_syn, meta)``; meta holds ``loss_history`` (one normalised loss per update, ``None`` where the
        update was skipped as non-finite), ``lr_student`` (the learned step size) and ``skipped_updates``.
    """
    seed = task.seed
    experts = train_experts(
        task.x, task.y, model_cfg=task.model_cfg, n_classes=task.n_classes, init_state=task.init_state,
        num_experts=cfg.num_experts, epochs=cfg.expert_train_epochs, lr=cfg.expert_lr, batch_size=cfg.expert_batch,
        seed=seed, momentum=cfg.expert_momentum, dp=dp,
    )  # fmt: skip
    student = build_model(no_dropout(task.model_cfg), n_classes=task.n_classes)
    x_syn, opt_x = learnable_features(task.x_init, kind=cfg.img_optimizer, lr=cfg.lr_img)
    y_syn = torch.from_numpy(np.ascontiguousarray(task.y_init))
    log_lr = torch.tensor(math.log(cfg.lr_student), requires_grad=True)
    opt_lr = torch.optim.Adam([log_lr], lr=cfg.lr_lr) if cfg.lr_lr > 0 else None
    picks = rng(seed, "mtt/picks")
    batches = _BatchCycler(len(x_syn), cfg.batch_syn, torch_generator(seed, "mtt/batches"))
    history: list[float | None] = []
    for it in range(cfg.mtt_iterations):
        traj: Trajectory = experts[int(picks.integers(len(experts)))]
        t = int(picks.integers(min(cfg.max_start_epoch, traj.epochs - cfg.expert_epochs + 1)))
        start, target = traj.params[t], traj.params[t + cfg.expert_epochs]
        end = unroll_student(
            student, traj.layout, start, x_syn, y_syn, lr=log_lr.exp(), steps=cfg.syn_steps, batches=batches
        )
        history.append(_apply(trajectory_loss(end, start, target), opt_x, opt_lr, x_syn, log_lr))
        if progress is not None:
            progress(it + 1, cfg.mtt_iterations)
    meta = {
        "loss_history": history,
        "lr_student": float(log_lr.detach().exp()),
        "skipped_updates": sum(h is None for h in history),
        "experts": {"count": len(experts), "epochs": cfg.expert_train_epochs, "init": experts[0].init},
    }
    return x_syn.detach().numpy().astype(np.float32), y_syn.numpy().copy(), meta


def mtt_matching_loss(
    x_syn: np.ndarray,
    y_syn: np.ndarray,
    experts: list[Trajectory],
    *,
    model_cfg: ModelConfig,
    n_classes: int,
    lr: float,
    cfg: DistillConfig,
) -> float:
    """Mean trajectory-matching loss of a synthetic set over every expert and every allowed start epoch.

    Args:
        x_syn: synthetic features.
        y_syn: synthetic labels.
        experts: trajectories (``train_experts`` under the distillation's seed gives the same ones).
        model_cfg: architecture.
        n_classes: number of classes.
        lr: student step size (e.g. ``meta["lr_student"]`` after distillation, ``cfg.lr_student`` before).
        cfg: ``syn_steps``, ``batch_syn``, ``expert_epochs`` and ``max_start_epoch``.

    Returns:
        The mean normalised loss (deterministic: fixed batch order).
    """
    student = build_model(no_dropout(model_cfg), n_classes=n_classes)
    xs, ys = torch.from_numpy(np.ascontiguousarray(x_syn)), torch.from_numpy(np.ascontiguousarray(y_syn))
    losses = []
    for traj in experts:
        for t in range(min(cfg.max_start_epoch, traj.epochs - cfg.expert_epochs + 1)):
            batches = _BatchCycler(len(xs), cfg.batch_syn, torch_generator(0, "mtt/eval-batches"))
            start, target = traj.params[t], traj.params[t + cfg.expert_epochs]
            end = unroll_student(
                student, traj.layout, start, xs, ys, lr=torch.tensor(lr), steps=cfg.syn_steps, batches=batches,
                create_graph=False,
            )  # fmt: skip
            losses.append(float(trajectory_loss(end.detach(), start, target)))
    return float(np.mean(losses))
