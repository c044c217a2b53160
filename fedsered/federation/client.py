"""What one client computes from its private data: a shared set (distilled, selected or raw) or a local model update.

Plain functions of numpy/torch (no Flower, no Ray): the Flower ``ClientApp`` and the direct path both call them, so one
seed gives the same bytes through either. Seeds: client ``cid`` in round ``r`` uses ``client_seed(seed, cid, r)``.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.distill.synthetic_set import SyntheticSet, make_meta
from fedsered.errors import ConfigError, DataError
from fedsered.seeding import int_seed
from fedsered.training.train import train_model

SHARE_KINDS: tuple[str, ...] = ("synthetic", "random_subset", "raw_sharing")
"""Pipelines in which a client uploads a set of examples (as opposed to a model update)."""


def client_id(k: int) -> str:
    """The id of the client holding partition ``k`` (``"client-<k>"``)."""
    return f"client-{k}"


def client_seed(seed: int, cid: str, round_: int = 0) -> int:
    """The seed of client ``cid`` in round ``round_`` under run seed ``seed``."""
    return int_seed(seed, f"client/{cid}/round/{round_}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``; a Ray actor's lifetime peak)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


def _features(cfg: Config) -> dict[str, Any]:
    return cfg.features.model_dump(mode="json", exclude={"cache_dir", "backend"})


def distil_client(
    data: FeatureSet,
    *,
    cfg: Config,
    client_id: str,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
    n_classes: int,
    ledger_path: str | Path | None = None,
    method: str | None = None,
    ipc: int | None = None,
) -> SyntheticSet:
    """Distil (or select) a client's shared set for θ₀ (or the current global model in multi-round mode).

    Args:
        data: the client's private features.
        cfg: the whole config (``federation.method``/``ipc`` unless given, ``distill``, ``model``, ``privacy``).
        client_id: recorded in the set's metadata and named in errors.
        init_state: the state every client distils for (θ₀, or the current global model).
        seed: this client's seed (``client_seed``).
        n_classes: number of classes of the task.
        ledger_path: the client's privacy ledger (used when DP is enabled).
        method: overrides ``federation.method`` (e.g. ``"random"`` for the random-subset baseline).
        ipc: overrides ``federation.ipc``.

    Returns:
        The validated set (``meta["privacy"]`` is ``None`` unless a DP release covers it).

    Raises:
        ConfigError: DP requested while this build has no DP mechanism.
    """
    if cfg.privacy.enabled:
        # The DP mechanisms belong to fedsered.privacy (issue 4); no second implementation lives here.
        raise ConfigError(
            "privacy.enabled: DP synthetic sharing needs fedsered.privacy's client_privacy/PrivacyLedger, "
            "which this build does not provide yet; set privacy.enabled=false"
        )
    del ledger_path
    return distil(
        data,
        method=method or cfg.federation.method,
        ipc=ipc or cfg.federation.ipc,
        cfg=cfg.distill,
        model_cfg=cfg.model,
        n_classes=n_classes,
        init_state=init_state,
        seed=seed,
        features=_features(cfg),
        client_id=client_id,
    )


def raw_client(data: FeatureSet, *, cfg: Config, client_id: str, n_classes: int) -> SyntheticSet:
    """The raw-sharing baseline: the client's own features and labels, as a set (privacy worst case).

    The set's ``ipc`` records the client's largest class count; ``method`` is ``"raw"``.
    """
    if len(data) == 0:
        raise DataError(f"{client_id}: no examples to share")
    counts = np.bincount(data.y, minlength=n_classes)
    meta = make_meta(
        method="raw", ipc=int(counts.max()), n_classes=n_classes, features=_features(cfg), init="random",
        client_id=client_id,
    )  # fmt: skip
    return SyntheticSet(x=np.ascontiguousarray(data.x), y=np.ascontiguousarray(data.y), meta=meta)


def share_client(
    kind: str, data: FeatureSet, *, cfg: Config, client_id: str, n_classes: int, **distil_args: Any
) -> SyntheticSet:
    """The set a client uploads in pipeline ``kind`` (one of ``SHARE_KINDS``).

    ``distil_args`` (``init_state``, ``seed``, ``ledger_path``) go to ``distil_client``; raw sharing needs none.
    """
    if kind == "synthetic":
        return distil_client(data, cfg=cfg, client_id=client_id, n_classes=n_classes, **distil_args)
    if kind == "random_subset":
        distil_args.pop("ledger_path", None)
        no_dp = cfg.model_copy(update={"privacy": cfg.privacy.model_copy(update={"enabled": False})})
        return distil_client(data, cfg=no_dp, client_id=client_id, n_classes=n_classes, method="random", **distil_args)
    if kind == "raw_sharing":
        return raw_client(data, cfg=cfg, client_id=client_id, n_classes=n_classes)
    raise ConfigError(f"unknown sharing pipeline {kind!r}; expected one of {', '.join(SHARE_KINDS)}")


def local_update(
    state: dict[str, torch.Tensor],
    data: FeatureSet,
    *,
    cfg: Config,
    seed: int,
    n_classes: int,
) -> dict[str, np.ndarray]:
    """FedAvg's client step: ``federation.fedavg_local_epochs`` epochs of the ``train`` settings from ``state``.

    Returns:
        The updated weights as numpy arrays (same names as ``state``).
    """
    train_cfg = cfg.train.model_copy(update={"epochs": cfg.federation.fedavg_local_epochs})
    model = train_model(
        data.x, data.y, model_cfg=cfg.model, train_cfg=train_cfg, n_classes=n_classes, init_state=state, seed=seed
    )
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
