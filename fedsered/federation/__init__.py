"""Federated sharing as plain functions (no Flower, no Ray inside): one loop, any transport.

- ``protocol``: ``Task`` (the server's instruction), ``Reply`` / ``Failure`` (a client's answer), ``Transport``;
- ``client``: ``run_task`` (the one client function every transport calls) and the client steps it uses;
- ``accept``: the server's checks on a reply (``accept_set``, ``accept_update``, privacy objects re-derived);
- ``loop``: ``run_federation`` — rounds, records, privacy composition, quorum, aggregation, scoring, written once;
- ``inprocess`` / ``pipeline``: the in-process transport and ``run_pipeline`` (the audit's shadows);
- ``compare``: ``run_comparison`` (synthetic sharing and its baselines over one transport);
- ``reply_store``: a client's filed replies by task key (a task sent again never costs a second DP release);
- ``checkpoint``: the server's finished pipelines in the run folder (what a resumed ``simulate`` takes);
- ``results``: ``PipelineResult``, ``ComparisonResult`` (typed, ``to_json``); ``records``: ``ClientRecord``, quorum;
- ``encoding``: a shared set's arrays under ``federation.set_encoding`` (float32, float16, int8) and back;
- ``payload``, ``aggregate``, ``server``: the wire form of a set, the server's aggregation and model steps.
The Flower transport lives in ``simulations/grid.py`` (this package never imports Flower).
"""

from fedsered.federation.aggregate import aggregate, fedavg_average
from fedsered.federation.client import client_id, client_seed, run_task
from fedsered.federation.compare import run_comparison
from fedsered.federation.loop import ServerView, run_federation
from fedsered.federation.payload import decode_set, payload_bytes
from fedsered.federation.pipeline import run_pipeline
from fedsered.federation.protocol import Failure, Reply, Task, Transport
from fedsered.federation.records import ClientRecord, QuorumError, check_quorum
from fedsered.federation.results import ComparisonResult, PipelineResult
from fedsered.federation.server import score, train_global

__all__ = [
    "ClientRecord",
    "ComparisonResult",
    "Failure",
    "PipelineResult",
    "QuorumError",
    "Reply",
    "ServerView",
    "Task",
    "Transport",
    "aggregate",
    "check_quorum",
    "client_id",
    "client_seed",
    "decode_set",
    "fedavg_average",
    "payload_bytes",
    "run_comparison",
    "run_federation",
    "run_pipeline",
    "run_task",
    "score",
    "train_global",
]
