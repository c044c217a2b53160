"""The Flower transport: ``fedsered.federation``'s ``Transport`` over a Flower ``Grid`` (Ray simulation or a real
SuperLink with SuperNodes).

``GridTransport.connect`` waits for the expected nodes and asks each which partition it holds (``query.partition``);
``send`` turns a ``Task`` into one Message per node, waits up to the round's timeout, and turns what comes back into
``Reply`` objects (an error Message is a ``failed`` answer with the last line of its reason; a node that does not
answer in time has no entry, which the loop records as ``timeout``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedsered.config import Config
from fedsered.federation.client import client_id
from fedsered.federation.protocol import Failure, Reply, Task
from fedsered.federation.records import QuorumError, required_replies
from simulations.wire import TASK_KEY, reply_of, task_message


def error_summary(reply: Message, *, limit: int = 300) -> str:
    """The last line of an error reply's reason (Ray prepends a traceback), without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(reply.error.reason))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "client error without a reason")[:limit]


def wait_for_nodes(grid: Grid, *, expected: int, timeout: float, poll: float = 0.2) -> list[int]:
    """Node ids once ``expected`` nodes are connected, or whatever connected when ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= expected or time.monotonic() >= deadline:
            return ids
        time.sleep(poll)


class GridTransport:
    """Clients behind a Flower ``Grid``: node id ↔ client id from each node's ``partition-id``."""

    def __init__(self, grid: Grid, *, nodes: dict[int, int], expected: int) -> None:
        self.grid = grid
        self.node_of = {client_id(k): node for node, k in sorted(nodes.items(), key=lambda kv: kv[1])}
        self.n_expected = expected

    @classmethod
    def connect(cls, grid: Grid, cfg: Config) -> GridTransport:
        """Wait for the nodes and learn their partitions.

        Raises:
            QuorumError: fewer nodes than ``federation.min_fraction`` of ``federation.num_clients`` connected or
                reported a distinct partition.
        """
        fed = cfg.federation
        expected, need = fed.num_clients, required_replies(fed.num_clients, fed.min_fraction)
        ids = wait_for_nodes(grid, expected=expected, timeout=fed.node_wait_s)
        if len(ids) < need:
            raise QuorumError(
                f"only {len(ids)} of {expected} expected nodes connected within federation.node_wait_s="
                f"{fed.node_wait_s:g} s; federation.min_fraction={fed.min_fraction} needs {need}"
            )
        msgs = [Message(RecordDict(), dst_node_id=n, message_type="query.partition") for n in ids]
        nodes: dict[int, int] = {}
        for reply in grid.send_and_receive(msgs, timeout=fed.discover_timeout_s):
            if reply.has_error() or TASK_KEY not in reply.content.config_records:
                continue
            k = reply.content.config_records[TASK_KEY].get("partition-id")
            if isinstance(k, int) and not isinstance(k, bool) and 0 <= k < expected and k not in nodes.values():
                nodes[reply.metadata.src_node_id] = k
        if len(nodes) < need:
            raise QuorumError(
                f"only {len(nodes)} of {expected} nodes reported a distinct partition-id in [0, {expected}); "
                f"federation.min_fraction={fed.min_fraction} needs {need}"
            )
        return cls(grid, nodes=nodes, expected=expected)

    def expected(self) -> list[str]:
        return [client_id(k) for k in range(self.n_expected)]

    def connected(self) -> list[str]:
        return list(self.node_of)

    def send(self, task: Task, clients: Sequence[str], *, timeout: float) -> dict[str, Reply | Failure]:
        cfg_yaml = task.cfg.to_yaml()  # once per round, not per client
        msgs = [task_message(task, self.node_of[cid], cfg_yaml=cfg_yaml) for cid in clients]
        by_node = {node: cid for cid, node in self.node_of.items()}
        answers: dict[str, Reply | Failure] = {}
        for reply in self.grid.send_and_receive(msgs, timeout=timeout):
            cid = by_node.get(reply.metadata.src_node_id)
            if cid is None:
                continue
            if reply.has_error():
                answers[cid] = Failure(cid, "failed", error_summary(reply))
            else:
                answers[cid] = reply_of(reply, client_id=cid)
        return answers
