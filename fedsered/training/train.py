"""Supervised training of an SER model on in-memory features, deterministic under a seed, and its evaluation.

Determinism: a model is a pure function of the data, config and seed only at a fixed torch thread count
(``fedsered.training.threads`` says why); ``train_model`` therefore trains at ``train.threads`` threads (default 1)
whatever the caller set, and restores the caller's count afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import AugmentConfig, ModelConfig, TrainConfig
from fedsered.models import build_model
from fedsered.seeding import torch_generator
from fedsered.training.augment import augment_batch, is_active
from fedsered.training.metrics import classification_metrics
from fedsered.training.threads import torch_threads

Progress = Callable[[int, int], None]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    augment: AugmentConfig | None = None,
) -> None:
    """One pass of shuffled mini-batch cross-entropy steps (the loop every trainer in fedsered shares); with an
    active ``augment``, each batch is augmented first (``fedsered.training.augment``) and the loss mixed as mixup
    mixes the inputs."""
    n, bs = len(x), min(batch_size, len(x))
    order = torch.randperm(n, generator=generator)
    if augment is not None and not is_active(augment):
        augment = None  # decided once per epoch, not per batch
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        loss = _batch_loss(model, x[idx], y[idx], augment=augment, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _batch_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, augment: AugmentConfig | None, generator: torch.Generator
) -> torch.Tensor:
    """Mean cross-entropy of one batch; augmented first unless ``augment`` is ``None`` (mixup mixes the loss too)."""
    if augment is None:
        return nn.functional.cross_entropy(model(x), y)
    b = augment_batch(x, y, augment, generator=generator)
    logits = model(b.x)
    own = nn.functional.cross_entropy(logits, b.y, reduction="none")
    mixed = nn.functional.cross_entropy(logits, b.y_mix, reduction="none")
    return (b.lam * own + (1.0 - b.lam) * mixed).mean()


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
    progress: Progress | None = None,
) -> nn.Module:
    """Train a fresh model on ``(x, y)`` with mini-batch cross-entropy.

    Args:
        x: ``[n, 1, mels, frames]`` float32 (already normalised).
        y: ``[n]`` int64 labels.
        model_cfg: the ``model`` section.
        train_cfg: epochs, batch size, optimiser, learning rate, weight decay, augmentation.
        n_classes: number of emotions.
        init_state: θ₀ (fixed initialisation) or ``None`` for an initialisation drawn from ``seed``.
        seed: seeds the initialisation (when ``init_state`` is ``None``), shuffling and dropout.
        progress: called with ``(epoch, epochs)`` after each epoch.

    Returns:
        The trained model in eval mode. It is bit-identical for the same inputs whatever thread count the caller
        runs torch at, because training runs at ``train_cfg.threads`` (unless that is 0); the caller's count is
        restored on return.
    """
    if len(x) == 0:
        raise ValueError("train_model: empty training set")
    with torch_threads(train_cfg.threads):
        gen = torch_generator(seed, "train")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            model = build_model(model_cfg, n_classes=n_classes, init_state=init_state)
            opt = _optimizer(model, train_cfg)
            xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
            model.train()
            for epoch in range(train_cfg.epochs):
                train_epoch(model, opt, xt, yt, batch_size=train_cfg.batch_size, generator=gen,
                            augment=train_cfg.augment)  # fmt: skip
                if progress is not None:
                    progress(epoch + 1, train_cfg.epochs)
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """``[n, classes]`` float32 logits in eval mode."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    outs = [model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, *, n_classes: int) -> dict[str, Any]:
    """UAR, WA and confusion of ``model`` on ``(x, y)``."""
    pred = predict_logits(model, x).argmax(axis=1)
    return classification_metrics(y, pred, n_classes=n_classes)
