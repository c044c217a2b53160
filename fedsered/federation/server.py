"""The server's model steps: train the global model from θ₀ on the aggregated set, and score it on test speakers.

Small shared sets (synthetic, random subset) are trained with the distillation evaluation protocol
(``distill.eval_epochs``, ``eval_lr``, ``eval_batch_size``: the setting the sets were made for); full real data
(raw sharing, pooled) with the ``train`` section, as the centralised baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fedsered.config import Config, TrainConfig
from fedsered.data.types import FeatureSet
from fedsered.distill import eval_train_config
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.models import build_model
from fedsered.training.train import evaluate, train_model

FULL_DATA_KINDS: tuple[str, ...] = ("raw_sharing", "pooled")
"""Pipelines whose server trains on full real data (the ``train`` section's settings)."""


def global_train_config(cfg: Config, pipeline: str) -> TrainConfig:
    """Training settings of the global model for ``pipeline``."""
    return cfg.train if pipeline in FULL_DATA_KINDS else eval_train_config(cfg.distill, cfg.train)


def train_global(
    agg: SyntheticSet,
    *,
    cfg: Config,
    init_state: dict[str, torch.Tensor],
    seed: int,
    n_classes: int,
    pipeline: str = "synthetic",
) -> nn.Module:
    """Train the global model from ``init_state`` (θ₀) on the aggregated set.

    Args:
        agg: the aggregated set.
        cfg: the whole config (``model``; ``train`` or ``distill.eval_*`` by ``pipeline``).
        init_state: θ₀ (or the current global model in multi-round mode).
        seed: the server's training seed.
        n_classes: number of classes.
        pipeline: which pipeline produced ``agg`` (chooses the training settings).

    Returns:
        The trained model in eval mode.
    """
    return train_model(
        agg.x, agg.y, model_cfg=cfg.model, train_cfg=global_train_config(cfg, pipeline), n_classes=n_classes,
        init_state=init_state, seed=seed,
    )  # fmt: skip


def model_from_arrays(arrays: dict[str, np.ndarray], *, cfg: Config, n_classes: int) -> nn.Module:
    """The configured model carrying ``arrays`` (a state dict as numpy), in eval mode."""
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    return build_model(cfg.model, n_classes=n_classes, init_state=state).eval()


def score(model: nn.Module, test: FeatureSet, *, n_classes: int) -> dict[str, Any]:
    """UAR, WA and confusion of ``model`` on the held-out test speakers."""
    m = evaluate(model, test.x, test.y, n_classes=n_classes)
    return {"uar": float(m["uar"]), "wa": float(m["wa"]), "confusion": m["confusion"]}


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
