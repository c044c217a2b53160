"""How good a synthetic set is: UAR on held-out real data of fresh models trained only on the set.

Two settings, as in the seed paper: the fixed initialisation θ₀ (the one the set was distilled for) and ``K`` random
initialisations (``random_init_state`` under seeds derived from ``seed``), reported as mean and std. Training on a
set of only ``ipc × classes`` examples wants its own epochs and learning rate: ``eval_train_config`` takes them from
the ``distill`` section (``eval_epochs``, ``eval_lr``, ``eval_batch_size``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig, ModelConfig, TrainConfig
from fedsered.data.types import FeatureSet
from fedsered.distill.formation import training_examples
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.models.build import random_init_state
from fedsered.seeding import int_seed
from fedsered.training.train import evaluate, train_model


def eval_train_config(cfg: DistillConfig, base: TrainConfig) -> TrainConfig:
    """``base`` with the synthetic-set training settings of ``cfg`` (epochs, lr, batch size)."""
    return base.model_copy(update={"epochs": cfg.eval_epochs, "lr": cfg.eval_lr, "batch_size": cfg.eval_batch_size})


def train_on_set(
    s: SyntheticSet,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor],
    seed: int,
) -> nn.Module:
    """A fresh model trained on the set's training examples (``formation.training_examples``: decoded when the set is
    multi-formation) from ``init_state`` (deterministic in ``init_state`` and ``seed``)."""
    x, y = training_examples(s.x, s.y, s.meta)
    return train_model(
        x, y, model_cfg=model_cfg, train_cfg=train_cfg, n_classes=n_classes, init_state=init_state, seed=seed
    )


def evaluate_set(
    s: SyntheticSet,
    test: FeatureSet,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    random_inits: int,
    seed: int,
) -> dict[str, Any]:
    """Train fresh models on ``s`` and measure them on ``test``.

    Args:
        s: the synthetic set.
        test: held-out real features.
        model_cfg: architecture of the evaluated models (may differ from the distillation's: cross-architecture).
        train_cfg: their training (see ``eval_train_config``).
        n_classes: number of classes.
        init_state: θ₀ for the fixed-initialisation score, or ``None`` to skip it.
        random_inits: ``K`` random initialisations.
        seed: derives the random initialisations (role ``eval/init/<k>``) and every training order.

    Returns:
        ``uar_fixed_init`` and ``wa_fixed_init`` (``None`` without ``init_state``), ``uar_random_init`` (mean),
        ``uar_random_init_std`` (population std), ``uar_random_init_runs`` (the K values; mean and std ``None``
        when K = 0), ``n_train`` and ``random_inits``.
    """
    out: dict[str, Any] = {"uar_fixed_init": None, "wa_fixed_init": None}
    if init_state is not None:
        model = train_on_set(
            s, model_cfg=model_cfg, train_cfg=train_cfg, n_classes=n_classes, init_state=init_state,
            seed=int_seed(seed, "eval/fixed/train"),
        )  # fmt: skip
        res = evaluate(model, test.x, test.y, n_classes=n_classes)
        out["uar_fixed_init"], out["wa_fixed_init"] = float(res["uar"]), float(res["wa"])
    runs = []
    for k in range(random_inits):
        start = random_init_state(model_cfg, n_classes=n_classes, seed=int_seed(seed, f"eval/init/{k}"))
        model = train_on_set(
            s, model_cfg=model_cfg, train_cfg=train_cfg, n_classes=n_classes, init_state=start,
            seed=int_seed(seed, f"eval/random/{k}/train"),
        )  # fmt: skip
        runs.append(float(evaluate(model, test.x, test.y, n_classes=n_classes)["uar"]))
    out["uar_random_init"] = float(np.mean(runs)) if runs else None
    out["uar_random_init_std"] = float(np.std(runs)) if runs else None
    out["uar_random_init_runs"] = runs
    out["n_train"] = len(s)
    out["random_inits"] = random_inits
    return out
