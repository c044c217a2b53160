"""The centralised baselines: a model fitted on the whole training split, evaluated on the held-out test speakers.

Two models, scored by the same metrics on the same split: the SER CNN trained from θ₀ (``run_centralised``), and
the classic reference, utterance functionals with a logistic regression (``run_functionals_baseline``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.errors import DataError
from fedsered.models import complexity, fixed_init_state
from fedsered.models.functionals import fit_functionals_model, predict_functionals
from fedsered.seeding import int_seed
from fedsered.training.metrics import classification_metrics
from fedsered.training.train import evaluate, train_model


def train_centralised(
    cfg: Config, data: Dataset, *, progress: Callable[[str, int, int], None] | None = None
) -> nn.Module:
    """The CNN trained from θ₀ on all training speakers (seed role ``train/centralised``).

    Args:
        cfg: the whole config (``model``, ``train``, ``seed``).
        data: the prepared dataset.
        progress: optional ``(stage, done, total)`` callback (stage ``"training"``).

    Returns:
        The trained model in eval mode.
    """
    init = fixed_init_state(cfg.model, n_classes=data.n_classes)
    cb = (lambda done, total: progress("training", done, total)) if progress else None
    return train_model(
        data.train.x,
        data.train.y,
        model_cfg=cfg.model,
        train_cfg=cfg.train,
        n_classes=data.n_classes,
        init_state=init,
        seed=int_seed(cfg.seed, "train/centralised"),
        progress=cb,
    )


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
    model = train_centralised(cfg, data, progress=progress)
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


def run_functionals_baseline(cfg: Config, data: Dataset) -> dict[str, Any]:
    """Fit the functionals reference on all training speakers and report test metrics.

    Args:
        cfg: the whole config (``functionals`` is read).
        data: the prepared dataset, built with ``functionals=True``.

    Returns:
        ``uar``, ``wa``, ``confusion``, ``n_train``, ``n_test``, the speakers of both splits, ``seconds`` (fit and
        prediction) and ``model``
        (``name``, ``features``, ``C``, ``converged``, ``n_iter``).

    Raises:
        DataError: ``data`` carries no functionals, or their rows do not match the log-Mel splits.
    """
    if data.functionals is None:
        raise DataError("run_functionals_baseline: the dataset was built without functionals")
    fx = data.functionals
    for name, feats, rows in (("train", data.train, fx.train), ("test", data.test, fx.test)):
        if not np.array_equal(feats.utterance_id, rows.utterance_id):
            raise DataError(f"run_functionals_baseline: {name} functionals are not in the order of the {name} split")
    start = time.perf_counter()
    model = fit_functionals_model(fx.train.x, data.train.y, cfg=cfg.functionals)
    pred = predict_functionals(model, fx.test.x)
    metrics = classification_metrics(data.test.y, pred, n_classes=data.n_classes)
    return {
        **metrics,
        "n_train": len(data.train),
        "n_test": len(data.test),
        "train_speakers": data.summary["train_speakers"],
        "test_speakers": data.summary["test_speakers"],
        "model": {
            "name": "functionals", "features": model.n_features, "C": cfg.functionals.C,
            "converged": model.converged, "n_iter": model.n_iter,
        },
        "seconds": time.perf_counter() - start,
    }
