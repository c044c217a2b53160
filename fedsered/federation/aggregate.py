"""The server's aggregation of shared sets: union per class, optional class re-balancing or re-distillation.

``aggregate(sets, ...)`` concatenates the clients' sets class by class (clients in the order given), then either
re-distils the union to ``federation.server_ipc`` examples per class (``distil`` with the clients' method, for θ₀) or,
when ``federation.rebalance`` is on, repeats examples of smaller classes (seeded draw) until every present class has
as many rows as the largest — the sampling form of class-balanced training. A class no client holds stays absent and
is listed in ``meta["missing_classes"]``. ``synthesise_from_statistics`` is the server's side of
``federation.merf_synthesis: server``: it adds the clients' merf releases (per-class sums and counts), takes the
means of the totals and synthesises one set under the same networks from a start that no client's data touches —
Gaussian noise, or utterances of the server's public corpus (``server_start``) — post-processing of the releases; no
client data, no client set; ``with_public`` is what the server then trains on when it adds its public corpus
(``server_train_public``). ``fedavg_average`` is the weighted mean of model updates (both transports).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.public import load_public, per_class_draw
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.distill.api import init_id
from fedsered.distill.formation import training_examples
from fedsered.distill.merf import NON_DP_MAX_NORM, embedding_nets, mean_embedding, means_of, noise_centre, synthesise
from fedsered.distill.synthetic_set import SyntheticSet, make_meta, validate_set
from fedsered.errors import DataError
from fedsered.federation.client import feature_settings, nets_seed
from fedsered.seeding import rng
from fedsered.training.threads import torch_threads


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


@dataclass(frozen=True)
class ClientStatistics:
    """One client's accepted merf release: its id, per-class ``sums`` ``[n_classes, K·d]`` and ``counts``
    ``[n_classes]`` (float32, noisy under DP), and the server's privacy object for it (``None`` without DP)."""

    client_id: str
    sums: np.ndarray
    counts: np.ndarray
    privacy: dict[str, Any] | None

    def release(self) -> np.ndarray:
        """What the client released, as one vector: its sums (row-major), then its counts."""
        return np.concatenate([self.sums.ravel(), self.counts.ravel()])


def synthesise_from_statistics(
    stats: Sequence[ClientStatistics],
    *,
    cfg: Config,
    n_classes: int,
    input_shape: tuple[int, ...],
    seed: int,
    run_seed: int,
    init_state: dict[str, torch.Tensor],
    public: FeatureSet | None = None,
    centre: np.ndarray | None = None,
) -> SyntheticSet:
    """The server's one synthetic set from the clients' merf releases (post-processing only).

    Args:
        stats: the accepted releases (client order).
        cfg: the whole config (``federation.server_ipc`` / ``ipc``, ``server_merf_iterations``,
            ``server_start_std``, ``server_threads``; the ``distill`` merf settings, ``model``,
            ``privacy.max_grad_norm``).
        n_classes: classes of the task.
        input_shape: per-example shape of the set.
        seed: the server's aggregation seed (the set's noise start).
        run_seed: the run seed the clients' networks were drawn from (``nets_seed``).
        init_state: θ₀ (network 0, as on the clients).
        public: under ``server_start: public``, the corpus ``public_pool`` checked before the round (loaded here
            when not given).
        centre: under ``merf_centre``, the centre the clients were sent (``merf_centre``; computed here when not
            given): the synthetic side is centred on it too.

    Returns:
        ``server_ipc`` (default ``ipc``: at ε = 8 on validation speakers 3 per class beat 10 over 5 seeds, and 24
        on one) examples of every class whose total count is at least 1 (a class
        no client holds stays absent: ``meta["missing_classes"]``); ``meta``: ``clients``, per-client ``privacy``,
        ``loss_history``.

    Raises:
        DataError: no release to synthesise from.
    """
    if not stats:
        raise DataError("aggregate: no client statistics to synthesise from (every client failed or was rejected)")
    fed = cfg.federation
    sums = torch.from_numpy(np.sum([s.sums for s in stats], axis=0, dtype=np.float64)).float()
    counts = torch.from_numpy(np.sum([s.counts for s in stats], axis=0, dtype=np.float64)).float()
    present = np.flatnonzero(counts.numpy() >= 1.0)
    if not len(present):
        raise DataError("aggregate: no class has a total count of at least 1 in the clients' statistics")
    ipc = fed.server_ipc or fed.ipc
    y0 = np.repeat(present.astype(np.int64), ipc)
    if fed.uses_public and public is None:
        public = public_pool(cfg, n_classes=n_classes, input_shape=input_shape)
    if fed.merf_centre != "none" and centre is None:
        centre = merf_centre(cfg, n_classes=n_classes, input_shape=input_shape, run_seed=run_seed,
                             init_state=init_state, public=public)  # fmt: skip
    x0 = server_start(cfg, y0, present=present, per_class=ipc, seed=seed, input_shape=input_shape, public=public)
    max_norm = cfg.privacy.max_grad_norm if cfg.privacy.enabled else NON_DP_MAX_NORM
    centre_t = None if centre is None else torch.from_numpy(centre)
    with torch_threads(fed.server_threads):
        nets = embedding_nets(cfg.model, n_classes=n_classes, init_state=init_state, seed=nets_seed(run_seed),
                              k=cfg.distill.merf_networks).centred(centre_t)  # fmt: skip
        its = cfg.distill.merf_iterations if fed.server_merf_iterations is None else fed.server_merf_iterations
        dcfg = cfg.distill.model_copy(update={"merf_iterations": its})
        x, history = synthesise(nets, means_of(sums, counts), x0, y0, cfg=dcfg, max_norm=max_norm)
    per_client = {s.client_id: s.privacy for s in stats if s.privacy is not None}
    meta = make_meta(
        method="merf-server", ipc=ipc, n_classes=n_classes, features=feature_settings(cfg),
        init=init_id(init_state, model_cfg=cfg.model, n_classes=n_classes),
        client_id=None, privacy={"per_client": per_client} if per_client else None,
        clients=[s.client_id for s in stats], missing_classes=sorted(set(range(n_classes)) - set(present.tolist())),
        merf_networks=cfg.distill.merf_networks, loss_history=history, start=fed.server_start,
        centre=fed.merf_centre,
    )  # fmt: skip
    out = SyntheticSet(x=x, y=y0, meta=meta)
    validate_set(out, n_classes=n_classes, expected_shape=input_shape, max_bytes=None, source="server synthesis")
    return out


def merf_centre(
    cfg: Config, *, n_classes: int, input_shape: tuple[int, ...], run_seed: int,
    init_state: dict[str, torch.Tensor], public: FeatureSet | None,
) -> np.ndarray | None:
    """The point the run's merf embeddings are centred on (``federation.merf_centre``), computed by the server and
    sent with the statistics task: ``None`` (none), the mean embedding of Gaussian inputs drawn from the public run
    seed (noise), or of the server's public corpus (public, ``public`` from ``public_pool``). Data-independent of every
    client: the clients clip ``embed(x) − centre``, so the sensitivity stays C whatever the centre is."""
    kind = cfg.federation.merf_centre
    if kind == "none":
        return None
    with torch_threads(cfg.federation.server_threads):
        nets = embedding_nets(cfg.model, n_classes=n_classes, init_state=init_state, seed=nets_seed(run_seed),
                              k=cfg.distill.merf_networks)  # fmt: skip
        if kind == "noise":
            return noise_centre(nets, input_shape, seed=nets_seed(run_seed)).numpy().astype(np.float32)
        assert public is not None, "merf_centre public: the caller passes public_pool's corpus"
        return mean_embedding(nets, public.x).numpy().astype(np.float32)


def public_pool(cfg: Config, *, n_classes: int, input_shape: tuple[int, ...]) -> FeatureSet:
    """The server's public corpus (``server_start: public``), checked before any client releases anything: the run's
    feature shape and at least ``server_ipc`` (default ``ipc``) utterances of every class.

    Raises:
        DataError: naming ``federation.public_data`` (unreadable, another feature shape, a class too small).
    """
    public = load_public(cfg)
    if tuple(public.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"federation.public_data: features of shape {public.x.shape[1:]}, the run's are {input_shape}")
    per_class = cfg.federation.server_ipc or cfg.federation.ipc
    counts = np.bincount(public.y, minlength=n_classes)
    short = np.flatnonzero(counts < per_class)
    if len(short):
        c = int(short[0])
        raise DataError(f"federation.public_data: class {c} has {counts[c]} examples, {per_class} are needed")
    return public


def with_public(agg: SyntheticSet, public: FeatureSet, *, seed: int) -> SyntheticSet:
    """What the server trains on under ``federation.server_train_public``: its synthesised set ``agg`` followed by its
    public corpus (``public_pool``) class-balanced — every class at the size of the corpus's smallest (UAR weighs
    classes equally; a balanced corpus, as the embedded one, is used whole), drawn with the aggregation ``seed`` and
    ordered by class, so the public-only baseline of the same size (``server_start: public``, ``server_ipc`` that
    size, no fit) trains on the same rows. The set the server shares stays ``agg``; ``meta["public_rows"]`` counts
    the rows added."""
    classes = np.unique(public.y)
    per_class = int(np.bincount(public.y)[classes].min())
    idx = per_class_draw(public.y, classes=classes.tolist(), per_class=per_class,
                         gen=rng(seed, "server/public-train"), source="federation.public_data")  # fmt: skip
    x = np.concatenate([agg.x, public.x[idx].astype(agg.x.dtype, copy=False)])
    y = np.concatenate([agg.y, public.y[idx].astype(agg.y.dtype, copy=False)])
    return SyntheticSet(x=x, y=y, meta={**agg.meta, "public_rows": len(idx)})


def server_start(
    cfg: Config, y0: np.ndarray, *, present: np.ndarray, per_class: int, seed: int, input_shape: tuple[int, ...],
    public: FeatureSet | None,
) -> np.ndarray:
    """The start of the server's synthesis, data-independent of every client: Gaussian noise of std
    ``federation.server_start_std``, or (``server_start: public``) ``per_class`` utterances of each present class of
    the server's public corpus (``public``, from ``public_pool``), drawn with the aggregation ``seed``."""
    if cfg.federation.server_start == "noise":
        noise = rng(seed, "server/merf-start").standard_normal((len(y0), *input_shape))
        return (cfg.federation.server_start_std * noise).astype(np.float32)
    assert public is not None, "server_start public: the caller passes public_pool's corpus"
    idx = per_class_draw(public.y, classes=present.tolist(), per_class=per_class,
                         gen=rng(seed, "server/public-start"), source="federation.public_data")  # fmt: skip
    return np.ascontiguousarray(public.x[idx])


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
