"""The centralised baseline: train the SER model from θ₀ on the whole training split, evaluate on test speakers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.models import complexity, fixed_init_state
from fedsered.seeding import int_seed
from fedsered.training.train import evaluate, train_model


def run_centralised(
    cfg: Config, data: Dataset, *, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Train on all training speakers from the fixed initialisation and report test metrics.

    Args:
        cfg: the whole config (``model``, ``train``, ``seed``).
        data: the prepared dataset.
        progress: optional ``(stage, done, total)`` callback.

    Returns:
        ``results.json`` content: ``uar``, ``wa``, ``confusion``, ``emotions``, ``n_train``, ``n_test``, ``seconds``
        and the model's size.
    """
    start = time.perf_counter()
    init = fixed_init_state(cfg.model, n_classes=data.n_classes)
    cb = (lambda done, total: progress("training", done, total)) if progress else None
    model = train_model(
        data.train.x,
        data.train.y,
        model_cfg=cfg.model,
        train_cfg=cfg.train,
        n_classes=data.n_classes,
        init_state=init,
        seed=int_seed(cfg.seed, "train/centralised"),
        progress=cb,
    )
    metrics = evaluate(model, data.test.x, data.test.y, n_classes=data.n_classes)
    return {
        **metrics,
        "emotions": list(data.emotions),
        "n_train": len(data.train),
        "n_test": len(data.test),
        "train_speakers": data.summary["train_speakers"],
        "test_speakers": data.summary["test_speakers"],
        "model": {"name": cfg.model.name, "width": cfg.model.width, **complexity(model, data.input_shape)},
        "seconds": time.perf_counter() - start,
    }
