"""The direct path: one federated pipeline as plain function calls (no Flower, no Ray).

``run_pipeline(cfg, data, pipeline=..., seed=...)`` runs the same client and server steps as the Flower App
(``simulations/``), in-process and in client order, and returns the global model, the shared sets and the byte
counts. It is what the privacy audit's shadow runs call, the pooled baseline of ``fedsered simulate``, and the
reference the Flower path is tested against (one seed, same global model). Pipelines: ``synthetic`` (one-shot or
FedDM-style multi-round; DP when ``privacy.enabled``), ``random_subset``, ``raw_sharing``, ``fedavg``, ``dp_fedavg``
(local DP-SGD, ε over all rounds), ``pooled``. Client records carry each client's privacy object composed over all its
releases so far (Opacus accountant).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.data.types import FeatureSet
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import ConfigError, DataError
from fedsered.federation.aggregate import aggregate, fedavg_average
from fedsered.federation.client import (
    SHARE_KINDS,
    client_id,
    client_seed,
    compose_privacy,
    local_update,
    local_update_dp,
    peak_rss_mb,
    raw_client,
    share_client,
)
from fedsered.federation.payload import decode_local, payload_bytes, state_bytes
from fedsered.federation.records import ClientRecord
from fedsered.federation.server import model_from_arrays, score, state_arrays, train_global
from fedsered.models import fixed_init_state
from fedsered.privacy.accountant import privacy_object
from fedsered.privacy.client import check_overrides
from fedsered.seeding import int_seed

PIPELINES: tuple[str, ...] = ("synthetic", "random_subset", "raw_sharing", "fedavg", "dp_fedavg", "pooled")

ClientsArg = Sequence[int] | Mapping[str, FeatureSet] | None


def server_seed(seed: int, role: str, round_: int = 1) -> int:
    """Seeds of the server's steps (``role``: ``aggregate`` or ``train``) in round ``round_``."""
    return int_seed(seed, f"server/{role}/round/{round_}")


def max_payload_bytes(cfg: Config) -> int:
    """``federation.max_payload_mb`` in bytes."""
    return int(cfg.federation.max_payload_mb * 2**20)


def select_clients(data: Dataset, clients: ClientsArg) -> dict[str, FeatureSet]:
    """The participating clients' private data by id: all partitions, a subset of partition indices, or given data
    (e.g. an audit shadow's own client sets)."""
    if clients is None:
        return {client_id(k): data.client(k) for k in range(len(data.clients))}
    if isinstance(clients, Mapping):
        out = dict(clients)
    else:
        for k in clients:
            if not 0 <= int(k) < len(data.clients):
                raise DataError(f"run_pipeline: client index {k} outside [0, {len(data.clients)})")
        out = {client_id(int(k)): data.client(int(k)) for k in clients}
    if not out:
        raise DataError("run_pipeline: no client selected")
    return out


def rounds_of(cfg: Config, pipeline: str) -> int:
    """Rounds a pipeline runs: FedAvg's rounds, multi-round synthetic sharing's rounds, otherwise 1."""
    if pipeline in ("fedavg", "dp_fedavg"):
        return cfg.federation.fedavg_rounds
    if pipeline == "synthetic" and cfg.federation.mode == "multi_round":
        return cfg.federation.rounds
    return 1


def _share_round(
    kind: str,
    parts: dict[str, FeatureSet],
    *,
    cfg: Config,
    data: Dataset,
    state: dict[str, torch.Tensor],
    seed: int,
    round_: int,
    spent: dict[str, dict[str, Any] | None],
) -> tuple[list[SyntheticSet], list[ClientRecord]]:
    sets, records = [], []
    for cid, part in parts.items():
        start = time.perf_counter()
        s = share_client(
            kind, part, cfg=cfg, client_id=cid, init_state=state, seed=client_seed(seed, cid, round_),
            n_classes=data.n_classes,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        s = decode_local(
            s, n_classes=data.n_classes, expected_shape=data.input_shape, max_bytes=max_payload_bytes(cfg), source=cid
        )
        sets.append(s)
        spent[cid] = compose_privacy(spent.get(cid), s.meta.get("privacy"))
        records.append(
            ClientRecord(
                id=cid, status="ok", bytes_up=payload_bytes(s), seconds=seconds, peak_rss_mb=peak_rss_mb(),
                privacy=spent[cid], n_local=len(part), round=round_,
            )
        )
    return sets, records


def server_step(
    sets: Sequence[SyntheticSet],
    *,
    cfg: Config,
    data: Dataset,
    theta0: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    seed: int,
    round_: int,
    pipeline: str,
) -> tuple[SyntheticSet, torch.nn.Module, dict[str, Any]]:
    """The server's work in a share round: aggregate the accepted sets, train the global model from ``state`` (θ₀
    in round 1, the previous global model after), score it on the test speakers.

    Returns:
        The aggregated set, the global model and its metrics (``uar``, ``wa``, ``confusion``).
    """
    agg = aggregate(
        sets, cfg=cfg, n_classes=data.n_classes, seed=server_seed(seed, "aggregate", round_), init_state=theta0
    )
    model = train_global(
        agg, cfg=cfg, init_state=state, seed=server_seed(seed, "train", round_), n_classes=data.n_classes,
        pipeline=pipeline,
    )  # fmt: skip
    return agg, model, score(model, data.test, n_classes=data.n_classes)


def run_pipeline(
    cfg: Config,
    data: Dataset,
    *,
    pipeline: str,
    seed: int,
    clients: ClientsArg = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run one federated pipeline directly.

    Args:
        cfg: the whole config.
        data: the prepared dataset (clients' partitions and the held-out test speakers).
        pipeline: one of ``PIPELINES``.
        seed: the run seed (clients, aggregation and training derive their seeds from it by role).
        clients: ``None`` (every partition), partition indices, or ``{client_id: FeatureSet}``.
        progress: optional ``(stage, done, total)`` callback, one tick per round.

    Returns:
        ``pipeline``, ``global_uar``, ``global_wa``, ``confusion``, ``bytes_up_total``, ``clients`` (one
        ``ClientRecord`` JSON per client and round), ``rounds`` (UAR and bytes per round) and, not JSON-ready,
        ``model`` (the global model), ``shared`` (the aggregated set or ``None``), ``sets`` (client id → shared set
        of the last round).

    Raises:
        ConfigError: unknown pipeline, or bad privacy settings.
    """
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    check_overrides(cfg.privacy, client_ids=[client_id(k) for k in range(len(data.clients))])
    parts = select_clients(data, clients)
    theta0 = fixed_init_state(cfg.model, n_classes=data.n_classes)
    n_classes = data.n_classes
    if pipeline == "pooled":
        pooled = FeatureSet(
            np.concatenate([p.x for p in parts.values()]), np.concatenate([p.y for p in parts.values()]),
            np.concatenate([p.speaker for p in parts.values()]),
            np.concatenate([p.utterance_id for p in parts.values()]),
        )  # fmt: skip
        agg = raw_client(pooled, cfg=cfg, client_id="pooled", n_classes=n_classes)
        model = train_global(
            agg, cfg=cfg, init_state=theta0, seed=server_seed(seed, "train"), n_classes=n_classes, pipeline="pooled"
        )
        m = score(model, data.test, n_classes=n_classes)
        return pipeline_result(pipeline, m, model=model, shared=None, sets={}, records=[], rounds=[{"round": 1, **m}])
    if pipeline in ("fedavg", "dp_fedavg"):
        return _run_fedavg(cfg, data, parts, theta0=theta0, seed=seed, progress=progress, dp=pipeline == "dp_fedavg")
    state: dict[str, torch.Tensor] = dict(theta0)
    records: list[ClientRecord] = []
    rounds: list[dict[str, Any]] = []
    total_rounds = rounds_of(cfg, pipeline)
    kind = pipeline if pipeline in SHARE_KINDS else "synthetic"
    spent: dict[str, dict[str, Any] | None] = {}
    for r in range(1, total_rounds + 1):
        sets, recs = _share_round(kind, parts, cfg=cfg, data=data, state=state, seed=seed, round_=r, spent=spent)
        records += recs
        agg, model, m = server_step(sets, cfg=cfg, data=data, theta0=theta0, state=state, seed=seed, round_=r,
                                    pipeline=pipeline)  # fmt: skip
        rounds.append({"round": r, **m, "bytes_up": sum(x.bytes_up for x in recs)})
        state = {k: torch.from_numpy(v) for k, v in state_arrays(model).items()}
        if progress is not None:
            progress(pipeline, r, total_rounds)
    return pipeline_result(
        pipeline, m, model=model, shared=agg, sets={s.meta["client_id"]: s for s in sets}, records=records,
        rounds=rounds,
    )  # fmt: skip


def _run_fedavg(
    cfg: Config,
    data: Dataset,
    parts: dict[str, FeatureSet],
    *,
    theta0: dict[str, torch.Tensor],
    seed: int,
    progress: Callable[[str, int, int], None] | None,
    dp: bool,
) -> dict[str, Any]:
    name = "dp_fedavg" if dp else "fedavg"
    spent: dict[str, dict[str, Any] | None] = {}
    global_arrays = {k: v.detach().cpu().numpy().copy() for k, v in theta0.items()}
    records: list[ClientRecord] = []
    rounds: list[dict[str, Any]] = []
    total = cfg.federation.fedavg_rounds
    for r in range(1, total + 1):
        state = {k: torch.from_numpy(v.copy()) for k, v in global_arrays.items()}
        updates, weights, recs = [], [], []
        for cid, part in parts.items():
            start = time.perf_counter()
            if dp:
                upd, release, delta = local_update_dp(
                    state, part, cfg=cfg, client_id=cid, seed=client_seed(seed, cid, r), n_classes=data.n_classes
                )
                spent[cid] = compose_privacy(
                    spent.get(cid), privacy_object([release], delta=delta, accountant=cfg.privacy.accountant)
                )
            else:
                upd = local_update(state, part, cfg=cfg, seed=client_seed(seed, cid, r), n_classes=data.n_classes)
            recs.append(
                ClientRecord(
                    id=cid, status="ok", bytes_up=state_bytes(upd), seconds=time.perf_counter() - start,
                    peak_rss_mb=peak_rss_mb(), n_local=len(part), round=r, privacy=spent.get(cid),
                )
            )
            updates.append(upd)
            weights.append(len(part))
        global_arrays = fedavg_average(updates, weights)
        model = model_from_arrays(global_arrays, cfg=cfg, n_classes=data.n_classes)
        m = score(model, data.test, n_classes=data.n_classes)
        rounds.append({"round": r, **m, "bytes_up": sum(x.bytes_up for x in recs)})
        records += recs
        if progress is not None:
            progress(name, r, total)
    return pipeline_result(name, m, model=model, shared=None, sets={}, records=records, rounds=rounds)


def pipeline_result(
    pipeline: str,
    metrics: dict[str, Any],
    *,
    model: torch.nn.Module,
    shared: SyntheticSet | None,
    sets: dict[str, SyntheticSet],
    records: list[ClientRecord],
    rounds: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "global_uar": metrics["uar"],
        "global_wa": metrics["wa"],
        "confusion": metrics["confusion"],
        "bytes_up_total": int(sum(r.bytes_up for r in records)),
        "clients": [r.to_json() for r in records],
        "rounds": [{k: v for k, v in r.items() if k != "confusion"} for r in rounds],
        "model": model,
        "shared": shared,
        "sets": sets,
    }


JSON_KEYS: tuple[str, ...] = ("pipeline", "global_uar", "global_wa", "confusion", "bytes_up_total", "clients", "rounds")
"""The JSON-ready keys of a ``run_pipeline`` result."""


def json_view(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of a ``run_pipeline`` result."""
    return {k: result[k] for k in JSON_KEYS if k in result}
