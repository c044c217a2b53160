"""The server's side of one round over a Flower ``Grid``: wait for nodes, learn their partitions, broadcast an
instruction, collect replies with a timeout, validate every payload, and record each client's outcome.

Nothing a client sends can crash the server: an error reply is ``failed``, a missing reply ``timeout``, a payload
that fails ``decode_set`` (shape, dtype, NaN/inf, labels, size cap, wrong client id) ``rejected``; partitions whose
node never connected are ``absent``. ``fedsered.federation.records.check_quorum`` decides whether the round goes on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedsered.config import Config
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import PayloadError
from fedsered.federation.client import client_id, compose_privacy
from fedsered.federation.pipeline import max_payload_bytes
from fedsered.federation.records import ClientRecord, QuorumError, check_quorum, required_replies
from simulations.wire import INSTRUCTION_KEY, STATE_KEY, reply_metrics, reply_set, state_record


@dataclass(frozen=True)
class Federation:
    """The connected nodes of a run: node id → partition index, and the partitions expected."""

    nodes: dict[int, int]
    expected: int

    def absent(self, round_: int) -> list[ClientRecord]:
        """Records for partitions no node holds."""
        held = set(self.nodes.values())
        return [
            ClientRecord(id=client_id(k), status="absent", error="no node with this partition connected", round=round_)
            for k in range(self.expected) if k not in held
        ]  # fmt: skip


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


def discover(grid: Grid, cfg: Config) -> Federation:
    """Wait for the nodes and ask each which partition it holds (``query.partition``).

    Raises:
        QuorumError: fewer nodes than ``federation.min_fraction`` of ``federation.num_clients`` answered.
    """
    fed = cfg.federation
    expected = fed.num_clients
    need = required_replies(expected, fed.min_fraction)
    ids = wait_for_nodes(grid, expected=expected, timeout=fed.node_wait_s)
    if len(ids) < need:
        raise QuorumError(
            f"only {len(ids)} of {expected} expected nodes connected within federation.node_wait_s="
            f"{fed.node_wait_s:g} s; federation.min_fraction={fed.min_fraction} needs {need}"
        )
    msgs = [Message(RecordDict(), dst_node_id=n, message_type="query.partition") for n in ids]
    nodes: dict[int, int] = {}
    for reply in grid.send_and_receive(msgs, timeout=fed.discover_timeout_s):
        if reply.has_error():
            continue
        value = reply.content.config_records[INSTRUCTION_KEY]["partition-id"]
        if not isinstance(value, int):
            continue
        k = value
        if 0 <= k < expected and k not in nodes.values():
            nodes[reply.metadata.src_node_id] = k
    if len(nodes) < need:
        raise QuorumError(
            f"only {len(nodes)} of {expected} nodes reported a distinct partition-id in [0, {expected}); "
            f"federation.min_fraction={fed.min_fraction} needs {need}"
        )
    return Federation(nodes=dict(sorted(nodes.items(), key=lambda kv: kv[1])), expected=expected)


def instruction(cfg_yaml: str, **values: str | int) -> ConfigRecord:
    """The instruction every node receives: the resolved run config plus per-round values."""
    return ConfigRecord({"fedsered-config": cfg_yaml, **values})


def share_round(
    grid: Grid,
    federation: Federation,
    *,
    cfg: Config,
    cfg_yaml: str,
    kind: str,
    state: dict[str, torch.Tensor],
    seed: int,
    round_: int,
    n_classes: int,
    input_shape: tuple[int, ...],
    ledger_dir: str = "",
    spent: dict[str, dict[str, Any] | None] | None = None,
) -> tuple[list[SyntheticSet], list[ClientRecord]]:
    """One share round: broadcast ``state`` and the instruction, collect, validate, record, check the quorum.

    Returns:
        The accepted sets (partition order) and one record per expected client.

    Raises:
        QuorumError: too few accepted payloads.
    """
    content = RecordDict(
        {
            STATE_KEY: state_record(state),
            INSTRUCTION_KEY: instruction(cfg_yaml, kind=kind, seed=seed, round=round_, **{"ledger-dir": ledger_dir}),
        }
    )
    msgs = [Message(content, dst_node_id=n, message_type="train.share") for n in federation.nodes]
    replies = {r.metadata.src_node_id: r for r in grid.send_and_receive(msgs, timeout=cfg.federation.round_timeout_s)}
    sets, records = collect(replies.items(), federation, cfg=cfg, round_=round_, n_classes=n_classes,
                            input_shape=input_shape, spent={} if spent is None else spent)  # fmt: skip
    records += federation.absent(round_)
    records.sort(key=lambda r: int(r.id.rsplit("-", 1)[1]))
    check_quorum(records, expected=federation.expected, min_fraction=cfg.federation.min_fraction, round_=round_)
    return sets, records


def collect(
    replies: Iterable[tuple[int, Message]],
    federation: Federation,
    *,
    cfg: Config,
    round_: int,
    n_classes: int,
    input_shape: tuple[int, ...],
    spent: dict[str, dict[str, Any] | None],
) -> tuple[list[SyntheticSet], list[ClientRecord]]:
    """Validate the replies of a share round (absent and late nodes included); never raises on a client's fault.

    ``spent`` maps client id → its privacy object over earlier rounds; accepted DP sets are composed into it.
    """
    got = dict(replies)
    sets: list[SyntheticSet] = []
    records: list[ClientRecord] = []
    for node, k in federation.nodes.items():
        cid = client_id(k)
        reply = got.get(node)
        if reply is None:
            records.append(ClientRecord(id=cid, status="timeout", round=round_,
                                        error=f"no reply within {cfg.federation.round_timeout_s:g} s"))  # fmt: skip
            continue
        if reply.has_error():
            records.append(ClientRecord(id=cid, status="failed", round=round_, error=error_summary(reply)))
            continue
        metrics = reply_metrics(reply)
        try:
            s, nbytes = reply_set(reply, n_classes=n_classes, expected_shape=input_shape,
                                  max_bytes=max_payload_bytes(cfg), source=cid)  # fmt: skip
            if s.meta.get("client_id") != cid:
                raise PayloadError(f"{cid}: set claims client_id {s.meta.get('client_id')!r}")
        except PayloadError as exc:
            rejected = ClientRecord(
                id=cid, status="rejected", round=round_, error=str(exc)[:500], seconds=metrics.get("seconds"),
                peak_rss_mb=metrics.get("peak-rss-mb"),
            )  # fmt: skip
            records.append(rejected)
            continue
        sets.append(s)
        spent[cid] = compose_privacy(spent.get(cid), s.meta.get("privacy"))
        accepted = ClientRecord(
            id=cid, status="ok", bytes_up=nbytes, seconds=metrics.get("seconds"),
            peak_rss_mb=metrics.get("peak-rss-mb"), privacy=spent[cid],
            n_local=int(metrics["n-local"]) if "n-local" in metrics else None, round=round_,
            cpu_seconds=metrics.get("cpu-seconds"), setup_seconds=metrics.get("setup-seconds"),
            setup_cpu_seconds=metrics.get("setup-cpu-seconds"),
        )  # fmt: skip
        records.append(accepted)
    return sets, records
