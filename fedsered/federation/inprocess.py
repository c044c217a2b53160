"""The in-process transport: tasks handed straight to ``run_task`` on each client's data, in client order.

No Flower, no Ray, no serialisation: what the privacy audit's shadow runs and ``run_pipeline`` use. Replies are the
same ``Reply`` objects the Flower transport builds from Messages, so the loop checks, counts and records them the
same way. A client that raises is a ``failed`` answer (its exception named), as a ``ClientApp`` error is on Flower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fedsered.config import PrivacyConfig
from fedsered.data.types import FeatureSet
from fedsered.federation.client import LocalClient, run_task
from fedsered.federation.protocol import Failure, Reply, Task


class InProcessTransport:
    """Clients living in this process.

    Args:
        clients: client id → its private data (partition order).
        n_classes: classes of the task.
        ledger_root: folder of the clients' ledgers (``<root>/<client id>/<pipeline>.json``); ``None`` keeps none.
        policy: every client's own privacy section (the run's YAML: one config plays the clients and the server).
    """

    def __init__(
        self, clients: Mapping[str, FeatureSet], *, n_classes: int, ledger_root: Path | None, policy: PrivacyConfig
    ) -> None:
        self.clients = {
            cid: LocalClient(cid, data, n_classes, None if ledger_root is None else ledger_root / cid, policy)
            for cid, data in clients.items()
        }

    def expected(self) -> list[str]:
        return list(self.clients)

    def connected(self) -> list[str]:
        return list(self.clients)

    def send(self, task: Task, clients: Sequence[str], *, timeout: float) -> dict[str, Reply | Failure]:
        answers: dict[str, Reply | Failure] = {}
        for cid in clients:
            try:
                answers[cid] = run_task(task, self.clients[cid])
            except Exception as exc:  # a client's bug must not end the federation (as on Flower)
                answers[cid] = Failure(cid, "failed", f"{type(exc).__name__}: {exc}")
        return answers
