"""The FedAvg baselines through Flower's own strategy (``flwr.serverapp.strategy.FedAvg``) on the same Grid.

``RecordingFedAvg`` adds what the comparison needs and the strategy does not do: it validates every update before
aggregation (same parameter names and shapes as θ₀, finite values; a bad update is recorded ``rejected`` and left
out instead of failing the round), records each client's bytes, seconds and peak RSS per round, and enforces the
quorum. The global model is scored on the test speakers after every round (``evaluate_fn``), giving the UAR-vs-bytes
curve used for "bytes to reach the synthetic set's UAR".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedsered.config import Config
from fedsered.errors import PayloadError
from fedsered.federation.client import client_id, compose_privacy
from fedsered.federation.records import ClientRecord, check_quorum, required_replies
from fedsered.privacy.accountant import privacy_object
from fedsered.privacy.release import PrivacyRelease
from simulations.rounds import Federation, error_summary
from simulations.wire import METRICS_KEY, STATE_KEY, record_arrays, reply_metrics


def check_update(reply: Message, reference: dict[str, tuple[tuple[int, ...], np.dtype[Any]]], *, source: str) -> int:
    """Validate a FedAvg update against θ₀'s names, shapes and dtypes; returns its bytes on the wire.

    Raises:
        PayloadError: wrong records, names, shapes or dtypes, or non-finite values.
    """
    arrays = reply.content.array_records
    if list(arrays) != [STATE_KEY] or METRICS_KEY not in reply.content.metric_records:
        raise PayloadError(f"{source}: a FedAvg reply holds one ArrayRecord {STATE_KEY!r} and metrics")
    record = arrays[STATE_KEY]
    if set(record) != set(reference):
        raise PayloadError(f"{source}: update has parameters {sorted(record)[:3]}..., expected those of the model")
    for name, arr in record.items():
        shape, dtype = reference[name]
        if tuple(arr.shape) != shape or np.dtype(arr.dtype) != dtype:
            raise PayloadError(
                f"{source}: parameter {name} is {arr.dtype} {list(arr.shape)}, expected {dtype} {list(shape)}"
            )
        if not np.isfinite(arr.numpy()).all():
            raise PayloadError(f"{source}: parameter {name} holds non-finite values")
    return sum(len(a.data) for a in record.values())


def release_privacy(metrics: dict[str, Any], *, accountant: str) -> dict[str, Any]:
    """The privacy object of one DP-FedAvg round from a client's metrics (σ, sample rate, steps, δ).

    Raises:
        PayloadError: a metric is missing.
    """
    try:
        release = PrivacyRelease(mechanism="dp_fedavg", noise_multiplier=float(metrics["noise-multiplier"]),
                                 sample_rate=float(metrics["sample-rate"]), steps=int(metrics["steps"]))  # fmt: skip
        return privacy_object([release], delta=float(metrics["delta"]), accountant=accountant)
    except KeyError as exc:
        raise PayloadError(f"DP-FedAvg reply lacks the metric {exc}") from None


class RecordingFedAvg(FedAvg):
    """``FedAvg`` that validates and records every reply before aggregating the accepted ones."""

    def __init__(self, *, cfg: Config, federation: Federation, reference: ArrayRecord, dp: bool = False) -> None:
        need = required_replies(federation.expected, cfg.federation.min_fraction)
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=need, min_evaluate_nodes=0,
                         min_available_nodes=need)  # fmt: skip
        self.cfg, self.federation = cfg, federation
        self.reference = {k: (tuple(a.shape), np.dtype(a.dtype)) for k, a in reference.items()}
        self.records: list[ClientRecord] = []
        self.dp = dp
        self.accountant = cfg.privacy.accountant
        self.spent: dict[str, dict[str, Any] | None] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted, records = [], []
        got = {r.metadata.src_node_id: r for r in replies}
        for node, k in self.federation.nodes.items():
            cid, reply = client_id(k), got.get(node)
            if reply is None:
                records.append(ClientRecord(id=cid, status="timeout", round=server_round, error="no reply in time"))
                continue
            if reply.has_error():
                records.append(ClientRecord(id=cid, status="failed", round=server_round, error=error_summary(reply)))
                continue
            m = reply_metrics(reply)
            try:
                nbytes = check_update(reply, self.reference, source=cid)
            except PayloadError as exc:
                records.append(ClientRecord(id=cid, status="rejected", round=server_round, error=str(exc)))
                continue
            accepted.append(reply)
            if self.dp:
                self.spent[cid] = compose_privacy(self.spent.get(cid), release_privacy(m, accountant=self.accountant))
            records.append(ClientRecord(
                id=cid, status="ok", bytes_up=nbytes, seconds=m.get("seconds"), peak_rss_mb=m.get("peak-rss-mb"),
                n_local=int(m["num-examples"]), round=server_round, privacy=self.spent.get(cid),
            ))  # fmt: skip
        records += self.federation.absent(server_round)
        check_quorum(records, expected=self.federation.expected, min_fraction=self.cfg.federation.min_fraction,
                     round_=server_round)  # fmt: skip
        self.records += records
        return super().aggregate_train(server_round, accepted)


def run_fedavg(
    grid: Grid,
    federation: Federation,
    *,
    cfg: Config,
    initial: ArrayRecord,
    instruction: ConfigRecord,
    evaluate: Callable[[dict[str, np.ndarray]], dict[str, Any]],
    dp: bool = False,
) -> tuple[dict[str, np.ndarray], list[ClientRecord], list[dict[str, Any]]]:
    """Run ``federation.fedavg_rounds`` rounds of FedAvg (DP-FedAvg with ``dp``: clients run local DP-SGD and each
    client's ε is composed over the rounds) from ``initial`` (θ₀).

    Returns:
        The final global weights, the per-client records of every round, and per round ``uar``/``wa``/``bytes_up``.
    """
    strategy = RecordingFedAvg(cfg=cfg, federation=federation, reference=initial, dp=dp)
    curve: dict[int, dict[str, Any]] = {}
    final: dict[str, dict[str, np.ndarray]] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        weights = record_arrays(arrays)
        m = evaluate(weights)
        if server_round > 0:
            curve[server_round] = m
        final["weights"] = weights
        return MetricRecord({"uar": float(m["uar"]), "wa": float(m["wa"])})

    strategy.start(
        grid=grid, initial_arrays=initial, num_rounds=cfg.federation.fedavg_rounds,
        timeout=cfg.federation.round_timeout_s, train_config=instruction, evaluate_fn=evaluate_fn,
    )  # fmt: skip
    rounds = []
    for r, m in sorted(curve.items()):
        sent = sum(rec.bytes_up for rec in strategy.records if rec.round == r)
        rounds.append({"round": r, "uar": float(m["uar"]), "wa": float(m["wa"]), "bytes_up": sent,
                       "confusion": m.get("confusion")})  # fmt: skip
    return final["weights"], strategy.records, rounds
