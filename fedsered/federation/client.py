"""What one client computes from its private data, and the one function every transport calls on a client.

``run_task(task, client)`` is the client's side of a round, whoever delivers the task: the in-process transport calls
it directly, the Flower ``ClientApp`` after decoding a Message. It builds what the task's pipeline asks for — a shared
set (``distil_client``, the random subset, ``raw_client``), merf statistics the server synthesises from
(``statistics_client``) or a model update (``local_update``, ``local_update_dp``) —
with the client's ledger checked before any DP work and recorded after it (one ledger file per pipeline: each
pipeline of a comparison is its own counterfactual federation), and answers with a ``Reply``. A refusal of the
client's own (a ``FedseredError``: budget, bad instruction) is a reply with ``error`` and no arrays.
A client that keeps its replies (``LocalClient.keep_replies``) answers a task it has answered before with the filed
reply — no new work, no new DP release — and files a new one before its release is recorded and before it is sent
(``fedsered.federation.reply_store``), so that no crash makes it release twice.
Seeds: client ``cid`` in round ``r`` uses ``client_seed(seed, cid, r)``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsered.config import Config, PrivacyConfig
from fedsered.data.types import FeatureSet
from fedsered.distill import MerfStatistics, distil, release_statistics
from fedsered.distill.synthetic_set import SyntheticSet, make_meta
from fedsered.errors import ConfigError, DataError, FedseredError, PrivacyBudgetError
from fedsered.federation.payload import wire_form
from fedsered.federation.protocol import Reply, Task
from fedsered.federation.reply_store import DeferredLedger, FiledReply, ReplyStore, task_key
from fedsered.models import build_model
from fedsered.privacy.accountant import privacy_object
from fedsered.privacy.client import client_privacy
from fedsered.privacy.dpsgd import train_dp_sgd
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.mechanism import calibrate, reproducible_note, steps_per_epoch
from fedsered.privacy.policy import effective_privacy
from fedsered.seeding import int_seed
from fedsered.training.threads import torch_threads
from fedsered.training.train import train_model

SHARE_KINDS: tuple[str, ...] = ("synthetic", "random_subset", "raw_sharing")
"""Pipelines in which a client uploads a set of examples (as opposed to a model update)."""

UPDATE_KINDS: tuple[str, ...] = ("fedavg", "dp_fedavg")
"""Pipelines in which a client uploads a model update."""


@dataclass(frozen=True)
class LocalClient:
    """What a client holds: its id, its private data, the task's class count and its own ledger folder.

    Attributes:
        client_id: ``"client-<partition>"``.
        data: the client's private features.
        n_classes: classes of the task.
        ledger_dir: the folder of the client's ledgers (``<pipeline>.json`` each); ``None`` keeps none.
        policy: the client's own privacy section (``fedsered.privacy.policy``); ``None``: the task's config is the
            client's own (in-process runs of one YAML).
        keep_replies: file every reply under ``ledger_dir / "replies"`` and answer a repeated task from there
            (``fedsered.federation.reply_store``); needs ``ledger_dir``.
    """

    client_id: str
    data: FeatureSet
    n_classes: int
    ledger_dir: Path | None = None
    policy: PrivacyConfig | None = None
    keep_replies: bool = False

    def ledger_path(self, pipeline: str) -> Path | None:
        """The ledger file of ``pipeline``'s federation."""
        return None if self.ledger_dir is None else self.ledger_dir / f"{pipeline}.json"

    def reply_store(self) -> ReplyStore | None:
        """The client's filed replies (``None`` unless ``keep_replies``)."""
        return ReplyStore(self.ledger_dir / "replies") if self.keep_replies and self.ledger_dir is not None else None


def run_task(task: Task, client: LocalClient) -> Reply:
    """The client's side of one round: do what ``task`` asks on the client's data and answer.

    Returns:
        A ``Reply`` with the shared set (``x``, ``y`` and its metadata JSON) or the update (the model's arrays; the
        metadata holds ``num_examples`` for example-weighted FedAvg, or the round's DP release); ``error`` instead
        when the client refuses (``FedseredError``). Metrics: ``seconds``, ``cpu-seconds``, ``peak-rss-mb``. A task
        the client has answered before (``keep_replies``) gets the filed reply.
    """
    cid = client.client_id
    try:
        # the client acts under its own policy, tightened (never loosened) by what the task asks for
        own = task.cfg.privacy if client.policy is None else client.policy
        cfg = task.cfg.model_copy(update={"privacy": effective_privacy(own, task.cfg.privacy, client_id=cid,
                                                                       pipeline=task.pipeline)})  # fmt: skip
        ledger = client_ledger(task.pipeline, cfg, client)
        store = client.reply_store()
        if store is None:
            filed = _work(task, client, cfg, ledger)
            if ledger is not None:
                ledger.commit(task=None)
            return Reply(client_id=cid, arrays=filed.arrays, meta=filed.meta, metrics=filed.metrics)
        d = client.data
        key = task_key(client_id=cid, pipeline=task.pipeline, kind=task.kind, round_=task.round, seed=task.seed,
                       cfg=cfg, state=task.state, data={"x": d.x, "y": d.y, "id": d.utterance_id})  # fmt: skip
        filed_before = store.get(key)
        if filed_before is not None:  # answered before (the upload, or the whole run, was lost): the same reply
            if ledger is not None and filed_before.release is not None and ledger.recorded(key) is None:
                ledger.pending = filed_before.release  # filed, then the process died before the ledger recorded it
                ledger.commit(task=key)
            return Reply(client_id=cid, arrays=filed_before.arrays, meta=filed_before.meta,
                         metrics=filed_before.metrics)  # fmt: skip
        if ledger is not None and ledger.recorded(key) is not None:
            raise PrivacyBudgetError(
                f"client {cid}: its ledger {ledger.path} records a release for this task ({task.pipeline}, round "
                f"{task.round}) whose filed reply in {store.folder} is gone; it will not release for this task again"
            )
        filed = _work(task, client, cfg, ledger)
        store.put(key, filed, about={"pipeline": task.pipeline, "round": task.round, "seed": task.seed})
        if ledger is not None:
            ledger.commit(task=key)
    except FedseredError as exc:
        return Reply(client_id=cid, arrays={}, error=f"{type(exc).__name__}: {exc}"[:500])
    return Reply(client_id=cid, arrays=filed.arrays, meta=filed.meta, metrics=filed.metrics)


def client_ledger(pipeline: str, cfg: Config, client: LocalClient) -> DeferredLedger | None:
    """The client's ledger of ``pipeline``'s federation when the task makes a DP release (DP synthetic sharing,
    DP-FedAvg) and the client keeps ledgers; loading it verifies its history (``PrivacyLedger``)."""
    path = client.ledger_path(pipeline)
    if path is None or pipeline not in ("synthetic", "dp_fedavg"):
        return None
    privacy = cfg.privacy if pipeline == "synthetic" else cfg.privacy.model_copy(update={"enabled": True})
    cp = client_privacy(privacy, client_id=client.client_id, n_local=len(client.data))
    if cp is None:
        return None
    return DeferredLedger(path, budget_epsilon=cp.budget_epsilon, delta=cp.delta, accountant=cp.accountant,
                          client_id=client.client_id)  # fmt: skip


def _work(task: Task, client: LocalClient, cfg: Config, ledger: PrivacyLedger | None) -> FiledReply:
    """The task's work on the client's data: the reply's arrays, metadata and metrics, and the release it cost (a
    ``DeferredLedger`` holds it, not yet recorded)."""
    start, cpu = time.perf_counter(), time.process_time()
    cid = client.client_id
    bad = [k for k, v in task.state.items() if not np.isfinite(v).all()]
    if bad:  # a finite state can still overflow on some inputs: the DP clipping guards that (finite_rows)
        raise ConfigError(f"{cid}: the task's model state holds non-finite values in {', '.join(bad[:3])}")
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in task.state.items()}
    seed = client_seed(task.seed, cid, task.round)
    arrays: dict[str, np.ndarray]
    if task.kind == "share":
        if task.pipeline not in SHARE_KINDS:
            raise ConfigError(f"a share task for pipeline {task.pipeline!r}; sharing pipelines: {SHARE_KINDS}")
        s = share_client(
            task.pipeline, client.data, cfg=cfg, client_id=cid, n_classes=client.n_classes, init_state=state,
            seed=seed, ledger=ledger,
        )  # fmt: skip
        arrays, meta = wire_form(s, encoding=cfg.federation.set_encoding)  # post-processing of the release
    elif task.kind == "statistics":
        stats = statistics_client(client.data, cfg=cfg, client_id=cid, n_classes=client.n_classes, init_state=state,
                                  run_seed=task.seed, seed=seed, ledger=ledger, centre=task.centre)  # fmt: skip
        arrays, meta = statistics_wire(stats, client_id=cid, merf_networks=cfg.distill.merf_networks)
    elif task.pipeline == "dp_fedavg":
        arrays, obj = local_update_dp(state, client.data, cfg=cfg, client_id=cid, seed=seed,
                                      n_classes=client.n_classes, ledger=ledger)  # fmt: skip
        meta = json.dumps({"privacy": obj}, allow_nan=False)
    elif task.pipeline == "fedavg":
        arrays = local_update(state, client.data, cfg=cfg, seed=seed, n_classes=client.n_classes)
        weighted = cfg.federation.fedavg_weighting == "examples"
        meta = json.dumps({"num_examples": len(client.data)} if weighted else {})
    else:
        raise ConfigError(f"an update task for pipeline {task.pipeline!r}; update pipelines: {UPDATE_KINDS}")
    # timings and memory grow with the client's data: a DP client keeps them to itself (the accounting covers the
    # shared set or update, not side channels)
    metrics = {} if cfg.privacy.enabled else _metrics(start, cpu)
    release = ledger.pending if isinstance(ledger, DeferredLedger) else None
    return FiledReply(arrays=arrays, meta=meta, metrics=metrics, release=release)


def _metrics(start: float, cpu: float) -> dict[str, float]:
    return {"seconds": time.perf_counter() - start, "cpu-seconds": time.process_time() - cpu,
            "peak-rss-mb": peak_rss_mb()}  # fmt: skip


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


def feature_settings(cfg: Config) -> dict[str, Any]:
    """The feature settings a set records (normalisation included; not the cache folder or backend)."""
    return cfg.features.model_dump(mode="json", exclude={"cache_dir", "backend"})  # normalisation included


def distil_client(
    data: FeatureSet,
    *,
    cfg: Config,
    client_id: str,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
    n_classes: int,
    ledger: PrivacyLedger | None = None,
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
        ledger: the client's privacy ledger (DP only; ``client_ledger``): the release is checked against the client's
            budget before the work and recorded after it; ``None`` keeps no ledger.
        method: overrides ``federation.method`` (e.g. ``"random"`` for the random-subset baseline).
        ipc: overrides ``federation.ipc``.

    Returns:
        The validated set (``meta["privacy"]`` is ``None`` unless a DP release covers it).

    Raises:
        ConfigError: bad privacy settings for this client, or a method without DP mechanism under DP.
        PrivacyBudgetError: the client's ledger refuses the release (its budget would be exceeded).
    """
    cp = client_privacy(cfg.privacy, client_id=client_id, n_local=len(data))
    return distil(
        data,
        method=method or cfg.federation.method,
        ipc=ipc or cfg.federation.ipc,
        cfg=cfg.distill,
        model_cfg=cfg.model,
        n_classes=n_classes,
        init_state=init_state,
        seed=seed,
        features=feature_settings(cfg),
        client_id=client_id,
        privacy=cp,
        ledger=ledger if cp is not None else None,
        threads=cfg.train.threads,
    )


def nets_seed(seed: int) -> int:
    """The seed of the embedding networks every client of run ``seed`` releases merf statistics under (public: the
    server draws the same networks to synthesise from the sum)."""
    return int_seed(seed, "merf/shared-nets")


def statistics_client(
    data: FeatureSet,
    *,
    cfg: Config,
    client_id: str,
    n_classes: int,
    init_state: dict[str, torch.Tensor],
    run_seed: int,
    seed: int,
    ledger: PrivacyLedger | None = None,
    centre: np.ndarray | None = None,
) -> MerfStatistics:
    """A client's merf release for server-side synthesis (``federation.merf_synthesis: server``): per-class sums and
    counts of its clipped embeddings under the run's shared networks (θ₀ first), centred on the server's ``centre``
    under ``federation.merf_centre`` (any centre keeps the sensitivity C: the rows are clipped after centring), noisy
    under DP, checked against and recorded in its ledger as one release.

    Raises:
        ConfigError: the run is not ``synthetic`` with method merf and server synthesis (what the client checks for
            itself, whatever the task's kind says), bad privacy settings, or a centre missing, unasked for,
            non-finite or of the wrong width.
        PrivacyBudgetError: the client's ledger refuses the release.
    """
    fed = cfg.federation
    if fed.method != "merf" or fed.merf_synthesis != "server":
        raise ConfigError(f"{client_id}: a statistics task needs federation.method merf and merf_synthesis server, "
                          f"got {fed.method} and {fed.merf_synthesis}")  # fmt: skip
    if (centre is None) != (fed.merf_centre == "none"):
        raise ConfigError(f"{client_id}: federation.merf_centre is {fed.merf_centre} but the task "
                          f"{'has no' if centre is None else 'has a'} centre")  # fmt: skip
    if centre is not None and (centre.ndim != 1 or not np.isfinite(centre).all()):
        raise ConfigError(f"{client_id}: the task's centre must be one finite vector, got shape {centre.shape}")
    cp = client_privacy(cfg.privacy, client_id=client_id, n_local=len(data))
    return release_statistics(
        data, cfg=cfg.distill, model_cfg=cfg.model, n_classes=n_classes, init_state=init_state,
        nets_seed=nets_seed(run_seed), seed=seed, client_id=client_id, privacy=cp,
        ledger=ledger if cp is not None else None, threads=cfg.train.threads, centre=centre,
    )  # fmt: skip


def statistics_wire(stats: MerfStatistics, *, client_id: str, merf_networks: int) -> tuple[dict[str, np.ndarray], str]:
    """What a client uploads for ``stats``: the arrays ``sums`` and ``counts`` and the metadata JSON (its id, the
    method, K and the release's privacy object)."""
    meta = json.dumps({"client_id": client_id, "method": "merf", "merf_networks": merf_networks,
                       "privacy": stats.privacy}, allow_nan=False)  # fmt: skip
    return {"sums": stats.sums, "counts": stats.counts}, meta


def raw_client(data: FeatureSet, *, cfg: Config, client_id: str, n_classes: int) -> SyntheticSet:
    """The raw-sharing baseline: the client's own features and labels, as a set (privacy worst case).

    The set's ``ipc`` records the client's largest class count; ``method`` is ``"raw"``.
    """
    if len(data) == 0:
        raise DataError(f"{client_id}: no examples to share")
    counts = np.bincount(data.y, minlength=n_classes)
    meta = make_meta(
        method="raw", ipc=int(counts.max()), n_classes=n_classes, features=feature_settings(cfg), init="random",
        client_id=client_id,
    )  # fmt: skip
    return SyntheticSet(x=np.ascontiguousarray(data.x), y=np.ascontiguousarray(data.y), meta=meta)


def share_client(
    kind: str, data: FeatureSet, *, cfg: Config, client_id: str, n_classes: int, **distil_args: Any
) -> SyntheticSet:
    """The set a client uploads in pipeline ``kind`` (one of ``SHARE_KINDS``).

    ``distil_args`` (``init_state``, ``seed``, ``ledger``) go to ``distil_client``; raw sharing needs none.
    """
    if kind == "synthetic":
        return distil_client(data, cfg=cfg, client_id=client_id, n_classes=n_classes, **distil_args)
    if kind == "random_subset":
        distil_args.pop("ledger", None)
        no_dp = cfg.model_copy(update={  # real examples as they are: no DP, no multi-formation packing
            "privacy": cfg.privacy.model_copy(update={"enabled": False}),
            "distill": cfg.distill.model_copy(update={"formation": 1}),
        })  # fmt: skip
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


def local_update_dp(
    state: dict[str, torch.Tensor],
    data: FeatureSet,
    *,
    cfg: Config,
    client_id: str,
    seed: int,
    n_classes: int,
    ledger: PrivacyLedger | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """DP-FedAvg's client step: local DP-SGD (Opacus ``PrivacyEngine``, Poisson sampling) from ``state``.

    The noise multiplier is calibrated so that all ``federation.fedavg_rounds`` rounds together spend
    ``privacy.target_epsilon`` (per-client overrides apply; DP is on for this baseline whatever ``privacy.enabled``
    says). Each round is one release of ``fedavg_local_epochs × ⌈1 / q⌉`` steps at the public rate
    q = ``privacy.sample_rate``; with ``ledger`` the client's ledger checks it before training and records it
    after. Sampling and noise come from the client's secret DP seed (``privacy.reproducible_noise`` aside).

    Returns:
        The updated weights and the round's privacy object (the release, δ, accountant).
    """
    cp = client_privacy(cfg.privacy.model_copy(update={"enabled": True}), client_id=client_id, n_local=len(data))
    assert cp is not None
    fed = cfg.federation
    steps = fed.fedavg_local_epochs * steps_per_epoch(cp.sample_rate)
    total = calibrate(cp, mechanism="dp_fedavg", sample_rate=cp.sample_rate, steps=steps * fed.fedavg_rounds,
                      what=f"dp_fedavg's {fed.fedavg_rounds} rounds x {steps} steps", seed=seed)  # fmt: skip
    spec = replace(total, steps=steps)  # one round's share of the calibrated mechanism
    if ledger is not None:
        ledger.check(spec.release())
    model = build_model(cfg.model, n_classes=n_classes, init_state=state)
    with torch_threads(cfg.train.threads):
        release = train_dp_sgd(
            model, data.x, data.y, noise_multiplier=spec.noise_multiplier, max_grad_norm=cp.max_grad_norm,
            sample_rate=spec.sample_rate, steps=steps, lr=fed.dp_lr, seed=spec.noise_seed, accountant=cp.accountant,
            mechanism="dp_fedavg",
        )  # fmt: skip
    if ledger is not None:
        ledger.record(release)
    obj = privacy_object([release], delta=cp.delta, accountant=cp.accountant)
    obj.update(reproducible_note(spec.reproducible))
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}, obj
