"""The server's model steps: train the global model from θ₀ on the aggregated set, and score it on test speakers.

Small shared sets (synthetic, random subset) are trained with the distillation evaluation protocol
(``distill.eval_epochs``, ``eval_lr``, ``eval_batch_size``: the setting the sets were made for); full real data
(raw sharing, pooled) with the ``train`` section, as the centralised baseline. The server trains and scores at
``federation.server_threads`` torch threads (default 2: the server is a machine; clients run at ``train.threads``):
pinned, so a global model is bit-identical at that count whatever the caller set. Two threads halve the wall time
of the server's steps, the larger part of ``make run`` (BENCHMARKS.md).

Beside the CNN, ``linear_reference`` fits the field's simple baseline on the same examples: utterance functionals of
the log-Mel (mean and standard deviation over time of every mel bin) into the logistic regression of the centralised
functionals reference (``fedsered.models.functionals``). Without the audio (clients share log-Mel only) the prosodic
functionals are not available, so this is the log-Mel half of ``fedsered train``'s reference. It tells whether what a
pipeline delivered is useful beyond the one network it was made for, and it is the strong simple model every learned
one is read against.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from fedsered.config import Config, TrainConfig
from fedsered.data.types import FeatureSet
from fedsered.distill import eval_train_config
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import DataError
from fedsered.models import build_model
from fedsered.training.threads import torch_threads
from fedsered.training.train import evaluate, train_model

FULL_DATA_KINDS: tuple[str, ...] = ("raw_sharing", "pooled")
"""Pipelines whose server trains on full real data (the ``train`` section's settings)."""


def global_train_config(cfg: Config, pipeline: str) -> TrainConfig:
    """Training settings of the global model for ``pipeline``, at the server's thread count."""
    base = cfg.train if pipeline in FULL_DATA_KINDS else eval_train_config(cfg.distill, cfg.train)
    return base.model_copy(update={"threads": cfg.federation.server_threads})


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


def linear_reference(agg: SyntheticSet, test: FeatureSet, *, cfg: Config, n_classes: int) -> dict[str, Any] | None:
    """Fit the log-Mel functionals logistic regression on the examples the server holds; score it on ``test``.

    Args:
        agg: the examples the server trained the global CNN on (the aggregated set, or the pooled data).
        test: the held-out test speakers.
        cfg: the whole config (``functionals.C``, ``functionals.max_iter``).
        n_classes: number of classes.

    Returns:
        ``{"name": "logmel_functionals", "uar", "wa", "n_train", "converged"}``, or ``None`` when ``agg`` holds fewer
        than two emotions (a linear classifier needs two).
    """
    # Imported here: the functionals module loads librosa (for F0), which a client importing the federation never needs.
    from fedsered.data.functionals import logmel_statistics
    from fedsered.models.functionals import fit_functionals_model, predict_functionals
    from fedsered.training.metrics import classification_metrics

    def stats(x: np.ndarray) -> np.ndarray:  # every frame: a shared set carries no clip lengths
        return logmel_statistics(x, np.full(len(x), x.shape[-1]))

    try:
        model = fit_functionals_model(stats(agg.x), agg.y, cfg=cfg.functionals)
    except DataError:
        if len(np.unique(agg.y)) >= 2:
            raise
        return None
    pred = predict_functionals(model, stats(test.x))
    m = cast(dict[str, float], classification_metrics(test.y, pred, n_classes=n_classes))
    return {"name": "logmel_functionals", "uar": float(m["uar"]), "wa": float(m["wa"]), "n_train": len(agg),
            "converged": model.converged}  # fmt: skip


def model_from_arrays(arrays: dict[str, np.ndarray], *, cfg: Config, n_classes: int) -> nn.Module:
    """The configured model carrying ``arrays`` (a state dict as numpy), in eval mode."""
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    return build_model(cfg.model, n_classes=n_classes, init_state=state).eval()


def score(model: nn.Module, test: FeatureSet, *, n_classes: int, threads: int) -> dict[str, Any]:
    """UAR, WA and confusion of ``model`` on the held-out test speakers, at ``threads`` torch threads
    (``federation.server_threads``)."""
    with torch_threads(threads):
        m = evaluate(model, test.x, test.y, n_classes=n_classes)
    return {"uar": float(m["uar"]), "wa": float(m["wa"]), "confusion": m["confusion"]}


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
