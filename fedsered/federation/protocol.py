"""What crosses the line between the server and a client, independent of how it travels.

A ``Task`` is the server's instruction for one round (which pipeline, what to send back, the run seed, the round, the
model state to start from, the run config). A ``Reply`` is what one client sent back: arrays (a shared set ``x``/``y``,
a model update, or merf statistics ``sums``/``counts``), its metadata as one JSON string, and its own measurements
(timings, memory); or, when the client declined, ``error``. A ``Failure`` is the transport's word for a client
that gave no usable answer (it raised, timed out). A ``Transport`` carries tasks to clients and brings back
replies: ``fedsered.federation.inprocess`` calls the client function directly; ``simulations.grid`` goes through
Flower's ``Grid`` (Ray simulation or a real SuperLink). The federation loop (``fedsered.federation.loop``) is
written once against this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from fedsered.config import Config, FederatedPipeline
from fedsered.federation.payload import npy_bytes

TaskKind = Literal["share", "update", "statistics"]
"""``share``: upload a set of examples (synthetic, random subset, raw); ``update``: local training (FedAvg);
``statistics``: upload merf's one release for the server to synthesise from (``federation.merf_synthesis: server``)."""


@dataclass(frozen=True)
class Task:
    """The server's instruction to the clients of one round.

    Attributes:
        pipeline: the pipeline being run (the client's ledger of that counterfactual federation records it).
        kind: ``share``, ``update`` or ``statistics``.
        round: 1-based round.
        seed: the run seed.
        state: the model state to start from (θ₀ in round 1, the current global model after), numpy arrays.
        cfg: the resolved run config.
        centre: a statistics task's embedding centre (``federation.merf_centre``, ``[K·d]`` float32), else ``None``.
    """

    pipeline: FederatedPipeline
    kind: TaskKind
    round: int
    seed: int
    state: Mapping[str, np.ndarray]
    cfg: Config
    centre: np.ndarray | None = None


@dataclass(frozen=True)
class Reply:
    """One client's answer, as received (nothing in it is trusted until ``fedsered.federation.accept`` checked it).

    Attributes:
        client_id: the client the transport delivered the task to (not what the reply claims).
        arrays: named arrays as they arrived (numpy, or wire objects such as ``flwr.app.Array``).
        meta: the metadata JSON string (a shared set's metadata; an update's privacy release).
        metrics: the client's own measurements (seconds, CPU seconds, peak RSS MB, ...).
        error: the client declined the task (policy, budget, bad instruction): why. Nothing else is used then.
        node: the Ray node that ran the client (``""`` outside Ray): infrastructure telemetry of the transport,
            not private data (it depends on no record); never part of the payload or its bytes.
        to_numpy: turns one entry of ``arrays`` into a numpy array.
        size: the bytes one entry of ``arrays`` took on the wire, read without decoding it.
    """

    client_id: str
    arrays: Mapping[str, Any]
    meta: str = "{}"
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    node: str = ""
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    size: Callable[[Any], int] = npy_bytes

    @property
    def wire_bytes(self) -> int:
        """Bytes uploaded: every array as ``.npy`` plus the UTF-8 metadata."""
        return sum(int(self.size(a)) for a in self.arrays.values()) + len(self.meta.encode("utf-8"))


@dataclass(frozen=True)
class Failure:
    """A client that gave no usable answer: ``failed`` (it raised) or ``timeout``; ``error`` says what happened."""

    client_id: str
    status: Literal["failed", "timeout"]
    error: str


class Transport(Protocol):
    """Carries a task to clients and returns their replies (or failures); knows which clients can be reached."""

    def expected(self) -> list[str]:
        """Every client of the federation, connected or not (partition order)."""
        ...

    def connected(self) -> list[str]:
        """The clients that can be sent a task (partition order)."""
        ...

    def send(self, task: Task, clients: Sequence[str], *, timeout: float) -> dict[str, Reply | Failure]:
        """Deliver ``task`` to ``clients``; one entry per client, within ``timeout`` seconds where it can tell."""
        ...
