"""The networks distillation matches against: their initial weights per method and index, without dropout.

gm, dm and merf draw a fresh initialisation per network index from ``random_init_state`` under role
``<method>/net/<k>``; in the fixed-initialisation setting network 0 is θ₀ itself, so the set is matched at the
initialisation it will be trained from as well as at random ones. Distillation networks run without dropout (it would
only add noise to the matched quantities); parameter names are unchanged, so states load into the configured model
and back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fedsered.config import ModelConfig
from fedsered.models.build import build_model, random_init_state
from fedsered.seeding import int_seed


def no_dropout(model_cfg: ModelConfig) -> ModelConfig:
    """``model_cfg`` with dropout 0."""
    return model_cfg.model_copy(update={"dropout": 0.0})


def network_state(
    method: str,
    k: int,
    *,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Initial weights of network ``k`` of ``method`` (``"gm"``, ``"dm"`` or ``"merf"``).

    Args:
        method: the method's name (part of the seed role).
        k: network index.
        model_cfg: architecture.
        n_classes: number of classes.
        init_state: θ₀ (network 0 is θ₀) or ``None`` (every network random).
        seed: the distillation seed.

    Returns:
        A state dict.
    """
    if k == 0 and init_state is not None:
        return dict(init_state)
    return dict(random_init_state(model_cfg, n_classes=n_classes, seed=int_seed(seed, f"{method}/net/{k}")))


def frozen_net(state: dict[str, torch.Tensor], *, model_cfg: ModelConfig, n_classes: int) -> nn.Module:
    """The network of ``state`` without dropout, weights frozen, in eval mode."""
    model = build_model(no_dropout(model_cfg), n_classes=n_classes, init_state=state)
    model.requires_grad_(False)
    return model.eval()


NetLoss = Callable[[nn.Module, torch.Tensor, np.ndarray, torch.Tensor, np.ndarray], torch.Tensor]
"""A method's loss on one network: ``(net, x_real, y_real, x_syn, y_syn) -> scalar``."""


def matching_loss(
    net_loss: NetLoss,
    x_syn: np.ndarray,
    y_syn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    states: list[dict[str, torch.Tensor]],
    model_cfg: ModelConfig,
    n_classes: int,
) -> float:
    """Mean of ``net_loss`` over fixed networks (``frozen_net`` of each state): a deterministic yardstick to compare
    synthetic sets, e.g. before and after distillation (``gm_matching_loss``, ``dm_matching_loss``).

    Args:
        net_loss: the method's loss on one network (with all real examples of each class).
        x_syn: synthetic features.
        y_syn: synthetic labels.
        x: real features.
        y: real labels.
        states: the networks' weights.
        model_cfg: architecture.
        n_classes: number of classes.

    Returns:
        The mean loss.
    """
    xr, xs = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(x_syn))
    losses = [
        float(net_loss(frozen_net(s, model_cfg=model_cfg, n_classes=n_classes), xr, y, xs, y_syn)) for s in states
    ]
    return float(np.mean(losses))
