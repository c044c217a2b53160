"""Message ↔ fedsered objects: how a shared set, a model state and the run instructions travel in Flower records.

A share reply is ``RecordDict({"set": ArrayRecord({"x", "y"}), "meta": ConfigRecord({"json": <metadata>}),
"metrics": MetricRecord(...)})``; model states (θ₀, the global model, FedAvg updates) travel as ``ArrayRecord`` of
numpy arrays keyed by parameter name. The server decodes every reply with ``fedsered.federation.payload.decode_set``
(size cap before decoding, then shape, dtype, finiteness and labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, MetricRecordValues, RecordDict

from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import PayloadError
from fedsered.federation.payload import decode_set, meta_json

SET_KEY, META_KEY, METRICS_KEY, INSTRUCTION_KEY, STATE_KEY = "set", "meta", "metrics", "config", "arrays"


def state_record(state: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> ArrayRecord:
    """A model state as an ``ArrayRecord`` of numpy arrays (names kept, order kept)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v.detach().cpu().numpy() if torch.is_tensor(v) else v))
                        for k, v in state.items()})  # fmt: skip


def record_state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """The state dict carried by ``record`` (torch tensors, copies)."""
    return {k: torch.from_numpy(np.array(a.numpy(), copy=True)) for k, a in record.items()}


def record_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The arrays carried by ``record`` as numpy."""
    return {k: a.numpy() for k, a in record.items()}


def set_reply(msg: Message, s: SyntheticSet, metrics: dict[str, MetricRecordValues]) -> Message:
    """The reply carrying a shared set and the client's metrics."""
    content = RecordDict(
        {
            SET_KEY: ArrayRecord({"x": Array(np.ascontiguousarray(s.x)), "y": Array(np.ascontiguousarray(s.y))}),
            META_KEY: ConfigRecord({"json": meta_json(s)}),
            METRICS_KEY: MetricRecord(metrics),
        }
    )
    return Message(content, reply_to=msg)


def reply_set(
    reply: Message, *, n_classes: int, expected_shape: tuple[int, ...], max_bytes: int, source: str
) -> tuple[SyntheticSet, int]:
    """Decode and validate the set in a share reply; returns it and the bytes it took on the wire.

    Raises:
        PayloadError: missing records, or any defect ``decode_set`` finds.
    """
    content = reply.content
    if SET_KEY not in content.array_records or META_KEY not in content.config_records:
        raise PayloadError(f"{source}: reply lacks the {SET_KEY!r} arrays or the {META_KEY!r} metadata")
    arrays = content.array_records[SET_KEY]
    meta = content.config_records[META_KEY].get("json")
    if not isinstance(meta, str):
        raise PayloadError(f"{source}: metadata must be a JSON string")
    s = decode_set(
        dict(arrays.items()), meta, to_numpy=Array.numpy, nbytes=lambda a: len(a.data), n_classes=n_classes,
        expected_shape=expected_shape, max_bytes=max_bytes, source=source,
    )  # fmt: skip
    nbytes = sum(len(a.data) for a in arrays.values()) + len(meta.encode("utf-8"))
    return s, nbytes


def reply_metrics(reply: Message) -> dict[str, Any]:
    """The client's metrics of a reply (empty when absent)."""
    records = reply.content.metric_records
    return dict(records[METRICS_KEY]) if METRICS_KEY in records else {}
