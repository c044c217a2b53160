"""Client mods that misbehave on purpose (Flower ``Mod``s around the ClientApp), to show that the server survives.

``fault_mod({partition: kind})`` makes the client of a partition raise, answer late, or corrupt its share reply after
the real handler ran: ``raise``, ``sleep`` (``sleep_s`` before answering), ``nan`` (a NaN in ``x``), ``shape`` (one
frame short), ``oversize`` (rows repeated ``oversize_factor`` times), ``wrong_id`` (claims another client's id),
``privacy`` (a malformed privacy object in the metadata).
Used by the tests and for demonstrations (``build_client_app(mods=[fault_mod(...)])``); never by default.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from simulations.wire import META_KEY, PAYLOAD_KEY, TASK_KEY

FAULTS: tuple[str, ...] = ("raise", "sleep", "nan", "shape", "oversize", "wrong_id", "privacy")


class InjectedFaultError(RuntimeError):
    """The failure a ``raise`` fault injects."""


def _corrupt(reply: Message, kind: str, *, oversize_factor: int) -> Message:
    arrays = {k: a.numpy().copy() for k, a in reply.content.array_records[PAYLOAD_KEY].items()}
    if kind == "nan":  # under set_encoding=int8 x is uint8: the NaN goes into its scale
        arrays["scale" if "scale" in arrays else "x"].flat[0] = np.nan
    elif kind == "shape":
        arrays["x"] = np.ascontiguousarray(arrays["x"][..., :-1])
    elif kind == "oversize":  # every array of a set is per example
        arrays = {k: np.repeat(a, oversize_factor, axis=0) for k, a in arrays.items()}
    elif kind == "wrong_id":
        meta = json.loads(str(reply.content.config_records[META_KEY]["json"]))
        meta["client_id"] = "client-999"
        reply.content[META_KEY] = ConfigRecord({"json": json.dumps(meta), "error": ""})
    elif kind == "privacy":
        meta = json.loads(str(reply.content.config_records[META_KEY]["json"]))
        meta["privacy"] = {"releases": "all of them", "delta": 2.0}
        reply.content[META_KEY] = ConfigRecord({"json": json.dumps(meta), "error": ""})
    reply.content[PAYLOAD_KEY] = ArrayRecord({k: Array(np.ascontiguousarray(a)) for k, a in arrays.items()})
    return reply


def fault_mod(faults: Mapping[int, str], *, sleep_s: float = 30.0, oversize_factor: int = 64) -> Mod:
    """A mod injecting ``faults`` (partition → one of ``FAULTS``) into share replies."""
    unknown = sorted(set(faults.values()) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {FAULTS}")
    plan = dict(faults)

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        kind = plan.get(int(str(context.node_config.get("partition-id", -1))))
        task = msg.content.config_records.get(TASK_KEY) if msg.metadata.message_type == "train" else None
        if kind is None or task is None or task.get("kind") != "share":
            return call_next(msg, context)
        if kind == "raise":
            raise InjectedFaultError(f"injected fault on partition {context.node_config['partition-id']}")
        if kind == "sleep":
            time.sleep(sleep_s)
            return call_next(msg, context)
        return _corrupt(call_next(msg, context), kind, oversize_factor=oversize_factor)

    return mod
