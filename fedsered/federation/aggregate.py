"""The server's aggregation of shared sets: union per class, optional class re-balancing or re-distillation.

``aggregate(sets, ...)`` concatenates the clients' sets class by class (clients in the order given), then either
re-distils the union to ``federation.server_ipc`` examples per class (``distil`` with the clients' method, for θ₀) or,
when ``federation.rebalance`` is on, repeats examples of smaller classes (seeded draw) until every present class has
as many rows as the largest — the sampling form of class-balanced training. A class no client holds stays absent and
is listed in ``meta["missing_classes"]``. ``fedavg_average`` is the example-weighted mean of model updates used by the
direct path (the Flower path uses ``flwr.serverapp.strategy.FedAvg``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.distill.formation import training_examples
from fedsered.distill.synthetic_set import SyntheticSet, make_meta, validate_set
from fedsered.errors import DataError
from fedsered.seeding import rng


def union_per_class(sets: Sequence[SyntheticSet], *, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """All training examples of ``sets`` (multi-formation sets decoded), grouped by class (class 0 first), clients in
    the given order within a class."""
    if not sets:
        raise DataError("aggregate: no client set to aggregate (every client failed or was rejected)")
    examples = [training_examples(s.x, s.y, s.meta) for s in sets]
    x = np.concatenate([e[0] for e in examples])
    y = np.concatenate([e[1] for e in examples])
    order = np.argsort(y, kind="stable")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise DataError(f"aggregate: labels outside [0, {n_classes})")
    return np.ascontiguousarray(x[order]), np.ascontiguousarray(y[order])


def rebalance(x: np.ndarray, y: np.ndarray, *, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Repeat rows of smaller classes up to the largest class's count (whole copies first, the rest drawn without
    replacement); returns the new ``(x, y)`` (grouped by class) and the rows added per class present."""
    classes, counts = np.unique(y, return_counts=True)
    target = int(counts.max())
    index: list[np.ndarray] = []
    added: list[int] = []
    for c, n in zip(classes.tolist(), counts.tolist(), strict=True):
        idx = np.flatnonzero(y == c)
        reps, rest = divmod(target, n)
        extra = gen.choice(idx, size=rest, replace=False) if rest else np.zeros(0, dtype=np.int64)
        index.append(np.concatenate([np.tile(idx, reps), np.sort(extra)]))
        added.append(target - n)
    sel = np.concatenate(index)
    return np.ascontiguousarray(x[sel]), np.ascontiguousarray(y[sel]), added


def _merged_privacy(sets: Sequence[SyntheticSet]) -> dict[str, Any] | None:
    """Each client's DP statement, by client (the union is post-processing of per-client releases)."""
    per_client = {str(s.meta.get("client_id")): s.meta["privacy"] for s in sets if s.meta.get("privacy") is not None}
    return {"per_client": per_client} if per_client else None


def aggregate(
    sets: Sequence[SyntheticSet],
    *,
    cfg: Config,
    n_classes: int,
    seed: int,
    init_state: dict[str, torch.Tensor] | None = None,
) -> SyntheticSet:
    """Aggregate the accepted clients' sets into the server's training set.

    Args:
        sets: validated sets of the accepted clients (in client order).
        cfg: the whole config (``federation.rebalance``, ``server_ipc``, ``method``; ``distill`` and ``model`` for
            re-distillation).
        n_classes: number of classes of the task.
        seed: the server's aggregation seed.
        init_state: θ₀ for server-side re-distillation.

    Returns:
        The aggregated set (``meta``: ``clients``, ``rows_per_client``, ``rebalanced_rows``, ``missing_classes``,
        per-client ``privacy``).

    Raises:
        DataError: no set to aggregate.
    """
    x, y = union_per_class(sets, n_classes=n_classes)
    fed = cfg.federation
    extra: dict[str, Any] = {
        "clients": [s.meta.get("client_id") for s in sets],
        "rows_per_client": [len(s) for s in sets],
        "methods": sorted({str(s.meta.get("method")) for s in sets}),
        "missing_classes": sorted(set(range(n_classes)) - set(np.unique(y).tolist())),
        "rebalanced_rows": None,
        "server_ipc": fed.server_ipc,
    }
    method, ipc = "union", int(np.bincount(y, minlength=n_classes).max())
    if fed.server_ipc is not None:
        pooled = FeatureSet(
            x, y, np.array(["union"] * len(y)), np.array([f"union/{i}" for i in range(len(y))])
        )
        redone = distil(
            pooled, method=fed.method, ipc=fed.server_ipc, cfg=cfg.distill, model_cfg=cfg.model,
            n_classes=n_classes, init_state=init_state, seed=seed, client_id="server",
            threads=cfg.train.threads,
        )  # fmt: skip
        x, y, method, ipc = redone.x, redone.y, f"union+{fed.method}", fed.server_ipc
    elif fed.rebalance:
        x, y, added = rebalance(x, y, gen=rng(seed, "server/rebalance"))
        extra["rebalanced_rows"] = added
    features = sets[0].meta.get("features") if isinstance(sets[0].meta.get("features"), dict) else {}
    meta = make_meta(
        method=method, ipc=ipc, n_classes=n_classes, features=features, init=str(sets[0].meta.get("init")),
        client_id=None, privacy=_merged_privacy(sets), **extra,
    )  # fmt: skip
    out = SyntheticSet(x=x, y=y, meta=meta)
    validate_set(out, n_classes=n_classes, expected_shape=sets[0].input_shape, max_bytes=None, source="aggregate")
    return out


def fedavg_average(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """Example-weighted mean of model updates (FedAvg's server step for the direct path)."""
    if not updates:
        raise DataError("fedavg: no client update to average")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return {
        k: np.sum([wi * u[k].astype(np.float64) for wi, u in zip(w, updates, strict=True)], axis=0).astype(
            updates[0][k].dtype
        )
        for k in updates[0]
    }
