"""The federation loop, written once: every pipeline, every round, whatever carries the messages.

``run_federation(cfg, server, transport, pipeline=, seed=)`` runs one pipeline as a separate federation: each round
it sends the clients a ``Task`` (the pipeline, the round, the run seed and the current model state, θ₀ in round 1)
through ``transport``, checks every reply (``fedsered.federation.accept``), records each client's outcome, composes
each client's privacy releases as the server sees them, stops on a missed quorum, then aggregates and scores:

- share pipelines (``synthetic`` one-shot or multi-round, ``random_subset``, ``raw_sharing``): union of the accepted
  sets per class (``aggregate``), the global model trained from the current state, scored on the test speakers;
- ``synthetic`` with ``federation.merf_synthesis: server`` (kind ``statistics``): the clients' merf releases are
  added and the server synthesises one set from them (``synthesise_from_statistics``), then trains as above;
- update pipelines (``fedavg``, ``dp_fedavg``): the weighted mean of the accepted updates (``fedavg_average``);
- ``pooled``: no client is asked; the server trains on ``server.pooled`` (the oracle of centralised training).

One FedAvg serves both transports: ``fedavg_average`` here, not Flower's ``FedAvg`` strategy, because the strategy
owns its round loop and talks to a ``Grid`` only; driving both paths through one loop needs the aggregation as a
function. Its weights are the example counts clients report, each bounded by ``federation.max_client_examples``
(``federation.fedavg_weighting: uniform`` ignores them); DP-FedAvg weights clients equally (a count is private).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fedsered.config import PIPELINES, Config, FederatedPipeline
from fedsered.data.types import FeatureSet
from fedsered.distill.merf import embedding_nets
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import ConfigError, DataError, PayloadError
from fedsered.federation.accept import (
    accept_set,
    accept_statistics,
    accept_update,
    compose_privacy,
    reply_metric,
)
from fedsered.federation.aggregate import (
    ClientStatistics,
    aggregate,
    fedavg_average,
    merf_centre,
    public_pool,
    synthesise_from_statistics,
    with_public,
)
from fedsered.federation.client import UPDATE_KINDS, raw_client
from fedsered.federation.protocol import Failure, Reply, Task, TaskKind, Transport
from fedsered.federation.records import ClientRecord, check_quorum
from fedsered.federation.results import PipelineResult, RoundRecord
from fedsered.federation.server import linear_reference, model_from_arrays, score, state_arrays, train_global
from fedsered.models import fixed_init_state
from fedsered.seeding import int_seed

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ServerView:
    """What the server holds: the held-out test speakers, the task's shape, and — for the ``pooled`` oracle only —
    the union of the clients' data (``None`` where the server has none)."""

    test: FeatureSet
    n_classes: int
    input_shape: tuple[int, ...]
    pooled: FeatureSet | None = None


def server_seed(seed: int, role: str, round_: int = 1) -> int:
    """Seeds of the server's steps (``role``: ``aggregate`` or ``train``) in round ``round_``."""
    return int_seed(seed, f"server/{role}/round/{round_}")


def rounds_of(cfg: Config, pipeline: str) -> int:
    """Rounds a pipeline runs: FedAvg's rounds, multi-round synthetic sharing's rounds, otherwise 1."""
    if pipeline in UPDATE_KINDS:
        return cfg.federation.fedavg_rounds
    if pipeline == "synthetic" and cfg.federation.mode == "multi_round":
        return cfg.federation.rounds
    return 1


def _record(reply: Reply, *, status: str, round_: int, privacy: dict | None = None, error: str | None = None,
            bytes_up: int = 0) -> ClientRecord:  # fmt: skip
    m = reply.metrics
    return ClientRecord(
        id=reply.client_id, status=status, round=round_, bytes_up=bytes_up, error=error, privacy=privacy,
        seconds=reply_metric(m, "seconds"), cpu_seconds=reply_metric(m, "cpu-seconds"),
        peak_rss_mb=reply_metric(m, "peak-rss-mb"), setup_seconds=reply_metric(m, "setup-seconds"),
        setup_cpu_seconds=reply_metric(m, "setup-cpu-seconds"), node=reply.node or None,
    )  # fmt: skip


Payload = SyntheticSet | ClientStatistics | tuple[dict[str, np.ndarray], float]
"""What the server keeps of an accepted reply: a set, merf statistics, or an update and its weight."""


def task_kind(cfg: Config, pipeline: str) -> TaskKind:
    """What ``pipeline``'s clients are asked for: an update (FedAvg), statistics (server-side merf synthesis) or a
    set."""
    if pipeline in UPDATE_KINDS:
        return "update"
    return "statistics" if pipeline == "synthetic" and cfg.federation.merf_synthesis == "server" else "share"


def statistics_width(cfg: Config, *, n_classes: int, input_shape: tuple[int, ...]) -> int:
    """The width of a merf release under the run's networks (K nets x the model's embedding)."""
    theta0 = fixed_init_state(cfg.model, n_classes=n_classes)
    nets = embedding_nets(cfg.model, n_classes=n_classes, init_state=theta0, seed=0,  # the width is seed-free
                          k=cfg.distill.merf_networks)  # fmt: skip
    with torch.no_grad():
        return int(nets.embed(torch.zeros((1, *input_shape))).shape[1])


def _collect(
    task: Task,
    answers: dict[str, Reply | Failure],
    transport: Transport,
    *,
    server: ServerView,
    reference: dict[str, np.ndarray],
    spent: dict[str, dict | None],
) -> tuple[list[tuple[str, Payload]], list[ClientRecord]]:
    """Check each answer of a round; never raises on a client's fault. Returns the accepted payloads and one record
    per expected client (``absent`` for those never connected)."""
    fed, r = task.cfg.federation, task.round
    max_bytes = int(fed.max_payload_mb * 2**20)
    connected = set(transport.connected())
    accepted: list[tuple[str, Payload]] = []
    width = statistics_width(task.cfg, n_classes=server.n_classes, input_shape=server.input_shape) \
        if task.kind == "statistics" else 0  # fmt: skip
    records: list[ClientRecord] = []
    for cid in transport.expected():
        answer = answers.get(cid)
        if cid not in connected:
            records.append(ClientRecord(id=cid, status="absent", round=r, error="no node holds this partition"))
        elif answer is None:
            late = f"no reply within {fed.round_timeout_s:g} s"
            records.append(ClientRecord(id=cid, status="timeout", round=r, error=late))
        elif isinstance(answer, Failure):
            records.append(ClientRecord(id=cid, status=answer.status, round=r, error=answer.error[:500]))
        elif answer.error is not None:
            records.append(_record(answer, status="refused", round_=r, error=answer.error[:500]))
        else:
            try:
                if task.kind == "share":
                    raw = task.pipeline == "raw_sharing"  # the client's own data; the others: ipc per class
                    s, privacy = accept_set(answer, n_classes=server.n_classes, input_shape=server.input_shape,
                                            max_bytes=max_bytes, max_per_class=None if raw else fed.ipc,
                                            max_examples=fed.max_client_examples if raw else None,
                                            encoding=fed.set_encoding)  # fmt: skip
                    payload: Payload = s
                elif task.kind == "statistics":
                    sums, counts, privacy = accept_statistics(answer, n_classes=server.n_classes, dim=width,
                                                              max_bytes=max_bytes)  # fmt: skip
                    payload = ClientStatistics(client_id=cid, sums=sums, counts=counts, privacy=privacy)
                else:
                    weighted = task.pipeline == "fedavg" and fed.fedavg_weighting == "examples"
                    arrays, weight, privacy = accept_update(
                        answer, reference=reference, max_bytes=max_bytes, dp=task.pipeline == "dp_fedavg",
                        max_examples=fed.max_client_examples if weighted else None,
                    )  # fmt: skip
                    payload = (arrays, weight)
            except PayloadError as exc:
                records.append(_record(answer, status="rejected", round_=r, error=str(exc)[:500]))
                continue
            spent[cid] = compose_privacy(spent.get(cid), privacy)
            accepted.append((cid, payload))
            records.append(_record(answer, status="ok", round_=r, privacy=spent[cid], bytes_up=answer.wire_bytes))
    return accepted, records


def run_federation(
    cfg: Config,
    server: ServerView,
    transport: Transport,
    *,
    pipeline: FederatedPipeline,
    seed: int,
    progress: Progress | None = None,
    stop_at_uar: float | None = None,
) -> PipelineResult:
    """Run ``pipeline`` over ``transport`` as one federation.

    Args:
        cfg: the whole config.
        server: what the server holds (test speakers, shapes; the pooled data for ``pooled`` only).
        transport: carries tasks to the clients (in-process, or Flower's Grid).
        pipeline: one of ``PIPELINES``.
        seed: the run seed (clients, aggregation and training derive their seeds from it by role).
        progress: optional ``(pipeline, round done, rounds)`` callback.
        stop_at_uar: ``fedavg`` only: stop after the first round whose global UAR reaches it (``rounds_of`` is then
            the cap). Not for ``dp_fedavg``, whose clients calibrate their noise for every planned round.

    Returns:
        The ``PipelineResult`` (global model, shared set and client sets of the last round included).

    Raises:
        ConfigError: unknown pipeline, or ``pooled`` without pooled data.
        QuorumError: a round with fewer accepted replies than ``federation.min_fraction`` needs.
    """
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    start = time.perf_counter()
    theta0 = fixed_init_state(cfg.model, n_classes=server.n_classes)
    if pipeline == "pooled":
        return _pooled(cfg, server, theta0=theta0, seed=seed, start=start)
    kind = task_kind(cfg, pipeline)
    reference = {k: v.detach().cpu().numpy() for k, v in theta0.items()}
    state = {k: v.copy() for k, v in reference.items()}
    spent: dict[str, dict | None] = {}
    records: list[ClientRecord] = []
    rounds: list[RoundRecord] = []
    total = rounds_of(cfg, pipeline)
    public = None  # the server's public corpus, read and checked before any client releases anything
    if kind == "statistics" and cfg.federation.uses_public:
        public = public_pool(cfg, n_classes=server.n_classes, input_shape=server.input_shape)
    centre = merf_centre(cfg, n_classes=server.n_classes, input_shape=server.input_shape, run_seed=seed,
                         init_state=theta0, public=public) if kind == "statistics" else None  # fmt: skip
    for r in range(1, total + 1):
        task = Task(pipeline=pipeline, kind=kind, round=r, seed=seed, state=state, cfg=cfg, centre=centre)
        answers = transport.send(task, transport.connected(), timeout=cfg.federation.round_timeout_s)
        accepted, recs = _collect(task, answers, transport, server=server, reference=reference, spent=spent)
        records += recs
        check_quorum(recs, expected=len(transport.expected()), min_fraction=cfg.federation.min_fraction, round_=r)
        t, t_cpu = time.perf_counter(), time.thread_time()
        agg: SyntheticSet | None = None
        sets: dict[str, SyntheticSet] = {}
        releases: dict[str, np.ndarray] = {}
        if kind != "update":
            if kind == "statistics":
                stats = [p for _, p in accepted if isinstance(p, ClientStatistics)]
                releases = {st.client_id: st.release() for st in stats}
                agg = synthesise_from_statistics(
                    stats, cfg=cfg, n_classes=server.n_classes,
                    input_shape=server.input_shape, seed=server_seed(seed, "aggregate", r), run_seed=seed,
                    init_state=theta0, public=public, centre=centre,
                )  # fmt: skip
            else:
                sets = {cid: p for cid, p in accepted if isinstance(p, SyntheticSet)}
                agg = aggregate(list(sets.values()), cfg=cfg, n_classes=server.n_classes,
                                seed=server_seed(seed, "aggregate", r), init_state=theta0)  # fmt: skip
            current = {k: torch.from_numpy(v) for k, v in state.items()}
            trained_on = agg
            if kind == "statistics" and public is not None and cfg.federation.server_train_public:
                trained_on = with_public(agg, public, seed=server_seed(seed, "aggregate", r))
            model = train_global(trained_on, cfg=cfg, init_state=current, seed=server_seed(seed, "train", r),
                                 n_classes=server.n_classes, pipeline=pipeline)  # fmt: skip
            state = state_arrays(model)
        else:
            updates = [p for _, p in accepted if isinstance(p, tuple)]
            state = fedavg_average([u for u, _ in updates], [w for _, w in updates])
            model = model_from_arrays(state, cfg=cfg, n_classes=server.n_classes)
        m = score(model, server.test, n_classes=server.n_classes, threads=cfg.federation.server_threads)
        rounds.append(RoundRecord(round=r, uar=m["uar"], wa=m["wa"], bytes_up=sum(x.bytes_up for x in recs),
                                  server_seconds=time.perf_counter() - t,
                                  server_cpu_seconds=time.thread_time() - t_cpu))  # fmt: skip
        if progress is not None:
            progress(pipeline, r, total)
        if pipeline == "fedavg" and stop_at_uar is not None and m["uar"] >= stop_at_uar:
            break
    return PipelineResult(
        pipeline=pipeline, uar=m["uar"], wa=m["wa"], confusion=m["confusion"], clients=records, rounds=rounds,
        seconds=time.perf_counter() - start, model=model, shared=agg, sets=sets, releases=releases,
        reference=_reference(cfg, agg, server),
    )  # fmt: skip


def _reference(cfg: Config, agg: SyntheticSet | None, server: ServerView) -> dict | None:
    """The linear baseline on the examples the server holds at the end (``federation.linear_reference``)."""
    if agg is None or not cfg.federation.linear_reference:
        return None
    return linear_reference(agg, server.test, cfg=cfg, n_classes=server.n_classes)


def _pooled(
    cfg: Config, server: ServerView, *, theta0: dict[str, torch.Tensor], seed: int, start: float
) -> PipelineResult:
    if server.pooled is None or len(server.pooled) == 0:
        raise DataError("pooled: the server holds no pooled client data in this deployment")
    agg = raw_client(server.pooled, cfg=cfg, client_id="pooled", n_classes=server.n_classes)
    model = train_global(agg, cfg=cfg, init_state=theta0, seed=server_seed(seed, "train"), n_classes=server.n_classes,
                         pipeline="pooled")  # fmt: skip
    m = score(model, server.test, n_classes=server.n_classes, threads=cfg.federation.server_threads)
    return PipelineResult(
        pipeline="pooled", uar=m["uar"], wa=m["wa"], confusion=m["confusion"], clients=[],
        rounds=[RoundRecord(round=1, uar=m["uar"], wa=m["wa"], bytes_up=0)], seconds=time.perf_counter() - start,
        model=model, reference=_reference(cfg, agg, server),
    )  # fmt: skip
