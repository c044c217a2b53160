"""``run_pipeline``: one federated pipeline in this process (the in-process transport under the one loop).

What the privacy audit's shadow runs call, and the reference the Flower path is tested against (one seed, same global
model, UAR and bytes). Every run is its own counterfactual federation: the clients' ledgers live in ``ledger_root``
(a fresh temporary folder when not given), so budgets are enforced here exactly as through Flower.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedsered.config import Config, FederatedPipeline
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError
from fedsered.federation.client import client_id
from fedsered.federation.inprocess import InProcessTransport
from fedsered.federation.loop import Progress, ServerView, run_federation
from fedsered.federation.results import PipelineResult
from fedsered.privacy.client import check_overrides

if TYPE_CHECKING:  # a type only: a client importing this package never loads the corpus pipeline
    from fedsered.data.dataset import Dataset

ClientsArg = Sequence[int] | Mapping[str, FeatureSet] | None


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


def server_view(data: Dataset, parts: Mapping[str, FeatureSet]) -> ServerView:
    """The server's view of a simulated federation: the test speakers, and the participants' union for ``pooled``."""
    pooled = FeatureSet.concat(list(parts.values())) if parts else None
    return ServerView(test=data.test, n_classes=data.n_classes, input_shape=data.input_shape, pooled=pooled)


def run_pipeline(
    cfg: Config,
    data: Dataset,
    *,
    pipeline: FederatedPipeline,
    seed: int,
    clients: ClientsArg = None,
    ledger_root: Path | None = None,
    progress: Progress | None = None,
) -> PipelineResult:
    """Run one federated pipeline in this process.

    Args:
        cfg: the whole config.
        data: the prepared dataset (clients' partitions and the held-out test speakers).
        pipeline: one of ``fedsered.config.PIPELINES``.
        seed: the run seed.
        clients: ``None`` (every partition), partition indices, or ``{client_id: FeatureSet}``.
        ledger_root: where the clients' ledgers live (``<root>/<client id>/<pipeline>.json``); default a fresh
            temporary folder, removed afterwards.
        progress: optional ``(pipeline, round, rounds)`` callback.

    Returns:
        The run's ``PipelineResult``.

    Raises:
        ConfigError: unknown pipeline, bad privacy settings, overrides naming no client of the run.
        QuorumError: too few clients answered a round (e.g. their ledgers refused it).
    """
    check_overrides(cfg.privacy, client_ids=[client_id(k) for k in range(len(data.clients))])
    parts = select_clients(data, clients)
    with tempfile.TemporaryDirectory(prefix="fedsered-ledgers-") as tmp:
        transport = InProcessTransport(parts, n_classes=data.n_classes, ledger_root=ledger_root or Path(tmp),
                                       policy=cfg.privacy)  # fmt: skip
        return run_federation(cfg, server_view(data, parts), transport, pipeline=pipeline, seed=seed,
                              progress=progress)  # fmt: skip
