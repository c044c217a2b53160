"""The Flower transport: ``fedsered.federation``'s ``Transport`` over a Flower ``Grid`` (Ray simulation or a real
SuperLink with SuperNodes).

``GridTransport.connect`` waits for the expected nodes and asks each which partition it holds (``query.partition``);
``send`` turns a ``Task`` into one Message per node, waits up to the round's timeout, and turns what comes back into
``Reply`` objects (an error Message is a ``failed`` answer with the last line of its reason; a node that does not
answer in time has no entry, which the loop records as ``timeout``).

``exchange`` is ``Grid.send_and_receive`` with at most ``in_flight`` messages outstanding (``push_messages`` /
``pull_messages``, Flower's public Grid API), a new one pushed as each answer comes back. A deployment sends every
node its task at once (``in_flight=None``: devices work in parallel); a simulation caps it at a few messages per Ray
actor (``fedsered simulate`` passes ``in-flight`` in the run config). Why: the simulation engine (pinned flwr 1.42.0)
polls its in-memory state every 0.1 s for every node, and each poll scans every stored message — O(nodes ×
outstanding messages) per tick: 1024 nodes with 1024 outstanding messages kept a driver core busy with bookkeeping,
with a few per actor it is negligible. Only virtual nodes with an actor free can run a task anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

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


def exchange(
    grid: Grid, messages: Sequence[Message], *, timeout: float, in_flight: int | None = None, poll: float | None = None
) -> Iterator[Message]:
    """Send ``messages`` and yield the replies as they arrive, until all answered or ``timeout`` seconds passed.

    Args:
        grid: the Flower Grid.
        messages: one Message per node.
        timeout: seconds for the whole exchange (a message still unsent then is never sent).
        in_flight: most messages outstanding at once (``None``: all at once, as ``Grid.send_and_receive``).
        poll: seconds between pulls while nothing came back (``None``: 0.1 s sending all at once, as
            ``Grid.send_and_receive`` — a deployment's SuperLink is asked no more often than Flower asks it —, 0.02 s
            with a window, whose next message waits for a pull).
    """
    if poll is None:
        poll = 0.1 if in_flight is None else 0.02
    deadline = time.monotonic() + timeout
    queue = list(reversed(messages))
    window = len(queue) if in_flight is None else max(1, in_flight)
    pending: set[str] = set()
    while True:
        if queue and len(pending) < window:
            pending.update(grid.push_messages([queue.pop() for _ in range(min(window - len(pending), len(queue)))]))
        if not pending and not queue:
            return
        replies = list(grid.pull_messages(pending)) if pending else []
        pending.difference_update(r.metadata.reply_to_message_id for r in replies)
        yield from replies
        if time.monotonic() >= deadline:
            return
        if not replies:
            time.sleep(poll)


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

    def __init__(self, grid: Grid, *, nodes: dict[int, int], expected: int, in_flight: int | None = None) -> None:
        self.grid = grid
        self.node_of = {client_id(k): node for node, k in sorted(nodes.items(), key=lambda kv: kv[1])}
        self.n_expected = expected
        self.in_flight = in_flight

    @classmethod
    def connect(cls, grid: Grid, cfg: Config, *, in_flight: int | None = None) -> GridTransport:
        """Wait for the nodes and learn their partitions (``in_flight``: see ``exchange``).

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
        for reply in exchange(grid, msgs, timeout=fed.discover_timeout_s, in_flight=in_flight):
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
        return cls(grid, nodes=nodes, expected=expected, in_flight=in_flight)

    def expected(self) -> list[str]:
        return [client_id(k) for k in range(self.n_expected)]

    def connected(self) -> list[str]:
        return list(self.node_of)

    def send(self, task: Task, clients: Sequence[str], *, timeout: float) -> dict[str, Reply | Failure]:
        cfg_yaml = task.cfg.to_yaml()  # once per round, not per client
        msgs = [task_message(task, self.node_of[cid], cfg_yaml=cfg_yaml) for cid in clients]
        by_node = {node: cid for cid, node in self.node_of.items()}
        answers: dict[str, Reply | Failure] = {}
        for reply in exchange(self.grid, msgs, timeout=timeout, in_flight=self.in_flight):
            cid = by_node.get(reply.metadata.src_node_id)
            if cid is None:
                continue
            if reply.has_error():
                answers[cid] = Failure(cid, "failed", error_summary(reply))
            else:
                answers[cid] = reply_of(reply, client_id=cid)
        return answers
