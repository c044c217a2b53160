"""Message ↔ fedsered objects: how a ``Task`` and a ``Reply`` travel in Flower records.

A task is ``RecordDict({"arrays": ArrayRecord(model state), "task": ConfigRecord({"fedsered-config": <resolved YAML>,
"pipeline", "kind", "round", "seed"})})`` (and a statistics task's ``"centre": ArrayRecord({"centre": ...})`` under
``federation.merf_centre``) with message type ``train``; a reply is ``RecordDict({"payload":
ArrayRecord(the set's x/y or the update), "meta": ConfigRecord({"json": <metadata>, "error": <refusal or "">,
"node": <the Ray node id, or "">}), "metrics": MetricRecord(...)})``. ``reply_of`` never raises: a reply missing
records arrives as an empty or undecodable ``Reply``, which the server's checks (``fedsered.federation.accept``)
reject with the client named.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedsered.config import PIPELINES, Config, config_from_text
from fedsered.errors import DataError
from fedsered.federation.protocol import Reply, Task, TaskKind

TASK_KEY, STATE_KEY, PAYLOAD_KEY, META_KEY, METRICS_KEY = "task", "arrays", "payload", "meta", "metrics"
CENTRE_KEY = "centre"


def array_record(arrays: dict[str, np.ndarray] | Any) -> ArrayRecord:
    """Named numpy arrays as an ``ArrayRecord`` (names and order kept)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def task_message(task: Task, node_id: int, *, cfg_yaml: str) -> Message:
    """The Message carrying ``task`` to one node (``cfg_yaml``: the task's config, serialised once per round)."""
    instr = ConfigRecord({"fedsered-config": cfg_yaml, "pipeline": task.pipeline, "kind": task.kind,
                          "round": task.round, "seed": task.seed})  # fmt: skip
    content = RecordDict({STATE_KEY: array_record(task.state), TASK_KEY: instr})
    if task.centre is not None:
        content[CENTRE_KEY] = array_record({CENTRE_KEY: task.centre})
    return Message(content, dst_node_id=node_id, message_type="train")


def _int(instr: ConfigRecord, key: str) -> int:
    value = instr.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"server instruction: {key!r} must be an integer, got {str(value)[:40]!r}")
    return value


def task_of(msg: Message) -> Task:
    """The ``Task`` a Message carries.

    Raises:
        DataError / ConfigError: a malformed instruction (named key).
    """
    content = msg.content
    if TASK_KEY not in content.config_records or STATE_KEY not in content.array_records:
        raise DataError(f"server instruction: expected the {TASK_KEY!r} config and the {STATE_KEY!r} arrays")
    instr = content.config_records[TASK_KEY]
    pipeline = next((p for p in PIPELINES if p == instr.get("pipeline")), None)
    kinds: dict[object, TaskKind] = {"share": "share", "update": "update", "statistics": "statistics"}
    kind = kinds.get(instr.get("kind"))
    if pipeline is None or kind is None:
        raise DataError(f"server instruction: unknown pipeline {str(instr.get('pipeline'))[:40]!r} or kind "
                        f"{str(instr.get('kind'))[:20]!r}")  # fmt: skip
    text = instr.get("fedsered-config")
    if not isinstance(text, str):
        raise DataError("server instruction: 'fedsered-config' must be the run's YAML text")
    cfg = _config(text)
    state = {k: np.array(a.numpy(), copy=True) for k, a in content.array_records[STATE_KEY].items()}
    record = content.array_records.get(CENTRE_KEY)
    centre = record.get(CENTRE_KEY) if record is not None else None
    return Task(pipeline=pipeline, kind=kind, round=_int(instr, "round"), seed=_int(instr, "seed"), state=state,
                cfg=cfg, centre=None if centre is None else np.array(centre.numpy(), copy=True))  # fmt: skip


@functools.lru_cache(maxsize=4)
def _config(text: str) -> Config:
    """The instruction's config, parsed and validated once per text (every client of a round gets the same; a
    ``Config`` is frozen, so sharing it is safe). A parse error is not cached: it raises again."""
    return config_from_text(text, source="server instruction")


def reply_message(msg: Message, reply: Reply) -> Message:
    """The Message answering ``msg`` with ``reply``."""
    content = RecordDict({
        PAYLOAD_KEY: array_record(reply.arrays),
        META_KEY: ConfigRecord({"json": reply.meta, "error": reply.error or "", "node": reply.node}),
        METRICS_KEY: MetricRecord({k: float(v) for k, v in reply.metrics.items()}),
    })  # fmt: skip
    return Message(content, reply_to=msg)


def reply_of(message: Message, *, client_id: str) -> Reply:
    """The ``Reply`` in a client's Message (``client_id`` as the transport knows the sender); never raises."""
    content = message.content
    arrays = dict(content.array_records[PAYLOAD_KEY].items()) if PAYLOAD_KEY in content.array_records else {}
    meta_rec = content.config_records.get(META_KEY)
    meta = meta_rec.get("json") if meta_rec is not None else None
    error = meta_rec.get("error") if meta_rec is not None else None
    node = meta_rec.get("node") if meta_rec is not None else None
    metrics = dict(content.metric_records[METRICS_KEY]) if METRICS_KEY in content.metric_records else {}
    return Reply(
        client_id=client_id, arrays=arrays, meta=meta if isinstance(meta, str) else "", metrics=metrics,
        error=str(error)[:500] if error else None, node=node[:100] if isinstance(node, str) else "",
        to_numpy=Array.numpy, size=lambda a: len(a.data),
    )  # fmt: skip
