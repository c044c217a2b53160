"""Federated synthetic-set sharing as plain functions (no Flower, no Ray): what the Flower App and the audit call.

- ``client``: ``distil_client`` / ``share_client`` (a client's shared set), ``local_update`` (FedAvg's client step);
- ``payload``: the wire form of a set, ``payload_bytes``, ``decode_set`` (validation with a size cap);
- ``aggregate``: ``aggregate`` (union per class, re-balancing, optional re-distillation), ``fedavg_average``;
- ``server``: ``train_global`` (from θ₀), ``score``;
- ``records``: ``ClientRecord``, ``check_quorum``, ``QuorumError``;
- ``pipeline``: ``run_pipeline(cfg, data, pipeline=, seed=, clients=)`` — the direct path.
"""

from fedsered.federation.aggregate import aggregate, fedavg_average
from fedsered.federation.client import client_id, client_seed, distil_client, local_update, share_client
from fedsered.federation.payload import decode_set, payload_bytes
from fedsered.federation.pipeline import PIPELINES, json_view, run_pipeline
from fedsered.federation.records import ClientRecord, QuorumError, check_quorum
from fedsered.federation.server import score, train_global

__all__ = [
    "PIPELINES",
    "ClientRecord",
    "QuorumError",
    "aggregate",
    "check_quorum",
    "client_id",
    "client_seed",
    "decode_set",
    "distil_client",
    "fedavg_average",
    "json_view",
    "local_update",
    "payload_bytes",
    "run_pipeline",
    "score",
    "share_client",
    "train_global",
]
