"""The networks distillation matches against: their initial weights per method and index, without dropout.

gm and dm draw a fresh initialisation per network index from ``random_init_state`` under role ``<method>/net/<k>``;
in the fixed-initialisation setting network 0 is θ₀ itself, so the set is matched at the initialisation it will be
trained from as well as at random ones. Distillation networks run without dropout (it would only add noise to the
matched quantities); parameter names are unchanged, so states load into the configured model and back.
"""

from __future__ import annotations

import torch

from fedsered.config import ModelConfig
from fedsered.models.build import random_init_state
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
    """Initial weights of network ``k`` of ``method`` (``"gm"`` or ``"dm"``).

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
