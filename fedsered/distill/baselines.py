"""Selection baselines: a random real subset per class, and herding (Welling, ICML 2009) per class.

Both return real examples unchanged, capped at what a class has (``ipc_effective`` records it).

Herding's embedding: a quick model trained on the client's own data for ``herding_epochs`` epochs from θ₀ (or, in
random-init mode, from an initialisation drawn from the seed), then ``model.embed`` — the pooled features before
the classifier. A trained embedding separates emotions better than an untrained one; with ``herding_epochs: 0`` the
untrained initialisation's embedding is used. Embeddings are L2-normalised before herding (as in iCaRL).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsered.config import DistillConfig, ModelConfig, TrainConfig
from fedsered.distill.init import ClassPlan, class_index
from fedsered.models.build import build_model, random_init_state
from fedsered.seeding import int_seed, rng
from fedsered.training.train import train_model


def random_subset(y: np.ndarray, *, plan: ClassPlan, gen: np.random.Generator) -> np.ndarray:
    """Indices of ``plan.rows[c]`` random examples of each class ``c`` (without replacement), in class order."""
    picks = [gen.choice(class_index(y, c), size=rows, replace=False) for c, rows in enumerate(plan.rows) if rows]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def herding_select(emb: np.ndarray, k: int) -> np.ndarray:
    """Welling's herding: greedily pick ``k`` rows whose running mean stays closest to the mean of all rows.

    Args:
        emb: ``[n, d]`` embeddings of one class.
        k: how many to pick (at most ``n``).

    Returns:
        ``[min(k, n)]`` row indices, in the order picked.
    """
    emb = np.asarray(emb, dtype=np.float64)
    n = len(emb)
    mu = emb.mean(axis=0)
    chosen: list[int] = []
    running = np.zeros_like(mu)
    free = np.ones(n, dtype=bool)
    for i in range(min(k, n)):
        dist = np.linalg.norm(mu - (running[None] + emb) / (i + 1), axis=1)
        dist[~free] = np.inf
        j = int(np.argmin(dist))
        chosen.append(j)
        free[j] = False
        running += emb[j]
    return np.array(chosen, dtype=np.int64)


def l2_normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norm > 0, norm, 1.0)


def herding_embeddings(
    x: np.ndarray,
    y: np.ndarray,
    *,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
) -> np.ndarray:
    """``[n, d]`` L2-normalised embeddings of ``x`` by a quick model trained on ``(x, y)`` (see module docstring).

    Args:
        x: ``[n, 1, mels, frames]`` float32.
        y: ``[n]`` int64.
        cfg: ``herding_epochs``, ``eval_lr``, ``eval_batch_size``.
        model_cfg: architecture.
        n_classes: number of classes.
        init_state: θ₀, or ``None`` for an initialisation drawn from ``seed``.
        seed: derives the initialisation (random-init mode) and the training order.

    Returns:
        The embeddings.
    """
    start = init_state
    if start is None:
        start = random_init_state(model_cfg, n_classes=n_classes, seed=int_seed(seed, "herding/init"))
    if cfg.herding_epochs > 0:
        tcfg = TrainConfig(epochs=cfg.herding_epochs, lr=cfg.eval_lr, batch_size=cfg.eval_batch_size)
        model = train_model(
            x, y, model_cfg=model_cfg, train_cfg=tcfg, n_classes=n_classes, init_state=start,
            seed=int_seed(seed, "herding/train"),
        )  # fmt: skip
    else:
        model = build_model(model_cfg, n_classes=n_classes, init_state=start)
    model.eval()
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        emb = torch.cat([model.embed(xt[i : i + 256]) for i in range(0, len(xt), 256)])  # type: ignore[operator]
    return l2_normalise(emb.numpy().astype(np.float64))


def herding_subset(emb: np.ndarray, y: np.ndarray, *, plan: ClassPlan) -> np.ndarray:
    """Indices chosen by herding within each class, ``plan.rows[c]`` per class, in class order."""
    picks = []
    for c, rows in enumerate(plan.rows):
        if rows:
            idx = class_index(y, c)
            picks.append(idx[herding_select(emb[idx], rows)])
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def select_random(
    x: np.ndarray, y: np.ndarray, *, plan: ClassPlan, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The random-subset baseline: ``(x_sel, y_sel, meta)``."""
    idx = random_subset(y, plan=plan, gen=rng(seed, "random/subset"))
    return x[idx].copy(), y[idx].copy(), {}


def select_herding(
    x: np.ndarray,
    y: np.ndarray,
    *,
    plan: ClassPlan,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The herding baseline: ``(x_sel, y_sel, meta)`` (meta records the embedding used)."""
    emb = herding_embeddings(x, y, cfg=cfg, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state, seed=seed)
    idx = herding_subset(emb, y, plan=plan)
    return x[idx].copy(), y[idx].copy(), {"herding_embedding": f"embed after {cfg.herding_epochs} epochs"}
