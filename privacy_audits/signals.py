"""Signals: what an attack observes of one example on one model — the logits turned into the true-class probability,
the loss and LiRA's logit-scaled confidence, gathered as ``[examples, models]`` matrices.

All in float64 with log-sum-exp, so confidences near 1 keep their resolution (LiRA needs ``log p − log(1 − p)``
when ``1 − p`` underflows float32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsered.errors import DataError
from fedsered.training.train import predict_logits


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lg, y = np.asarray(logits), np.asarray(labels, dtype=np.int64)
    if lg.ndim != 2 or y.shape != (lg.shape[0],):
        raise DataError(f"signals: logits must be [n, classes] and labels [n], got {lg.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= lg.shape[1]):
        raise DataError("signals: labels outside [0, classes)")
    return lg, y


def log_true_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` log p_y: the log softmax probability of each example's true label (= −cross-entropy loss)."""
    lg, y = _check(logits, labels)
    return _log_softmax(lg)[np.arange(len(y)), y]


def loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` cross-entropy loss of each example."""
    return -log_true_prob(logits, labels)


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` LiRA's logit-scaled confidence φ = log p_y − log Σ_{y'≠y} p_{y'}, computed stably in float64."""
    lg, y = _check(logits, labels)
    logp = _log_softmax(lg)
    rows = np.arange(len(y))
    true = logp[rows, y]
    others = logp.copy()
    others[rows, y] = -np.inf
    m = others.max(axis=1, keepdims=True)
    log_rest = m[:, 0] + np.log(np.exp(others - m).sum(axis=1))
    return true - log_rest


def model_signals(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The per-example signals of one model: ``{"log_p": log p_y, "phi": logit-scaled confidence}`` (float64 [n])."""
    logits = predict_logits(model, x)
    return {"log_p": log_true_prob(logits, y), "phi": logit_confidence(logits, y)}


@torch.no_grad()
def embeddings(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """``[n, d]`` float32 embeddings ``model.embed(x)`` (the pooled features before the classifier)."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise DataError(f"signals: {type(model).__name__} has no embed() for embedding-space attacks")
    outs = [embed(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)
