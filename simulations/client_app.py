"""The Flower ``ClientApp``: one simulated IoT client (or a real ``flower-supernode``) holding one partition.

Handlers, one per message type:
- ``query.partition``: which partition this node holds (``node_config["partition-id"]``);
- ``train.share``: build the set the instruction asks for (``kind``: ``synthetic`` — distil for the broadcast state,
  DP when configured —, ``random_subset`` or ``raw_sharing``) from the node's private partition, reply with the set
  (``ArrayRecord``), its metadata and a ``MetricRecord`` (n_local, seconds, CPU seconds, peak RSS, bytes; ε and δ
  under DP). Only the set leaves the node.
- ``train`` (default action, what ``flwr.serverapp.strategy.FedAvg`` sends): local training from the received
  weights for FedAvg (local DP-SGD with Opacus for DP-FedAvg, recorded in the client's ledger), reply with the
  weights, ``num-examples`` and, under DP, the round's release (σ, sample rate, steps, δ).

The run configuration arrives in each instruction (the resolved YAML), so a node needs no file from the server; the
data are built locally from it (``build_dataset``: the node's corpus and the run's partition) and kept per process.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from flwr.app import ConfigRecord, Context, Message, MetricRecord, MetricRecordValues, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from fedsered.config import Config, config_from_dict
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.errors import DataError
from fedsered.federation.client import (
    client_id,
    client_seed,
    local_update,
    local_update_dp,
    peak_rss_mb,
    share_client,
)
from fedsered.federation.payload import payload_bytes, state_bytes
from simulations.wire import INSTRUCTION_KEY, METRICS_KEY, STATE_KEY, record_state, set_reply, state_record

_DATA: dict[str, Dataset] = {}


def instruction_config(msg: Message) -> tuple[Config, ConfigRecord]:
    """The run config carried by a server instruction, and the instruction itself."""
    instr = msg.content.config_records[INSTRUCTION_KEY]
    text = str(instr["fedsered-config"])
    return config_from_dict(yaml.safe_load(text) or {}, source="server instruction"), instr


def local_data(cfg: Config) -> Dataset:
    """The dataset of ``cfg``, built once per process (Ray actors serve many clients in turn)."""
    key = cfg.model_dump_json()
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = build_dataset(cfg)
    return _DATA[key]


def partition_of(context: Context, data: Dataset) -> int:
    """This node's partition index (``--node-config partition-id=K`` on a real SuperNode)."""
    if "partition-id" not in context.node_config:
        raise DataError("this SuperNode has no partition-id in its node config (start it with "
                        "--node-config 'partition-id=K num-partitions=N')")  # fmt: skip
    k = int(context.node_config["partition-id"])
    if not 0 <= k < len(data.clients):
        raise DataError(f"partition-id {k} outside the run's {len(data.clients)} client partitions")
    return k


def instruction_int(instr: ConfigRecord, key: str) -> int:
    """An integer value of the server's instruction (``DataError`` naming the key when it is not one)."""
    value = instr.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"server instruction: {key!r} must be an integer, got {value!r}")
    return value


def query_partition(msg: Message, context: Context) -> Message:
    return Message(
        RecordDict({INSTRUCTION_KEY: ConfigRecord({"partition-id": int(context.node_config["partition-id"])})}),
        reply_to=msg,
    )


def share(msg: Message, context: Context) -> Message:
    cfg, instr = instruction_config(msg)
    setup, setup_cpu = time.perf_counter(), time.process_time()
    data = local_data(cfg)
    setup, setup_cpu = time.perf_counter() - setup, time.process_time() - setup_cpu
    k = partition_of(context, data)
    cid, part = client_id(k), data.client(k)
    ledger_dir = str(instr.get("ledger-dir", "") or "")
    start, cpu = time.perf_counter(), time.process_time()
    s = share_client(
        str(instr["kind"]), part, cfg=cfg, client_id=cid, n_classes=data.n_classes,
        init_state=record_state(msg.content.array_records[STATE_KEY]),
        seed=client_seed(instruction_int(instr, "seed"), cid, instruction_int(instr, "round")),
        ledger_path=Path(ledger_dir) / cid / "ledger.json" if ledger_dir else None,
    )  # fmt: skip
    metrics: dict[str, MetricRecordValues] = {
        "partition-id": k, "n-local": len(part), "seconds": time.perf_counter() - start,
        "cpu-seconds": time.process_time() - cpu, "peak-rss-mb": peak_rss_mb(), "bytes": payload_bytes(s),
        "setup-seconds": setup, "setup-cpu-seconds": setup_cpu,
    }  # fmt: skip
    privacy = s.meta.get("privacy")
    if isinstance(privacy, dict):
        metrics["epsilon"], metrics["delta"] = float(privacy["epsilon"]), float(privacy["delta"])
    return set_reply(msg, s, metrics)


def fedavg_train(msg: Message, context: Context) -> Message:
    cfg, instr = instruction_config(msg)
    data = local_data(cfg)
    k = partition_of(context, data)
    cid, part = client_id(k), data.client(k)
    start = time.perf_counter()
    state = record_state(msg.content.array_records[STATE_KEY])
    seed = client_seed(instruction_int(instr, "seed"), cid, instruction_int(instr, "server-round"))
    dp: dict[str, MetricRecordValues] = {}
    if instr.get("dp", 0):
        ledger_dir = str(instr.get("ledger-dir", "") or "")
        update, release, delta = local_update_dp(
            state, part, cfg=cfg, client_id=cid, seed=seed, n_classes=data.n_classes,
            ledger_path=Path(ledger_dir) / cid / "dp_fedavg_ledger.json" if ledger_dir else None,
        )  # fmt: skip
        dp = {"noise-multiplier": release.noise_multiplier, "sample-rate": release.sample_rate,
              "steps": release.steps, "delta": delta}  # fmt: skip
    else:
        update = local_update(state, part, cfg=cfg, seed=seed, n_classes=data.n_classes)
    values: dict[str, MetricRecordValues] = {
        "num-examples": len(part), "partition-id": k, "seconds": time.perf_counter() - start,
        "peak-rss-mb": peak_rss_mb(), "bytes": state_bytes(update), **dp,
    }  # fmt: skip
    metrics = MetricRecord(values)
    return Message(RecordDict({STATE_KEY: state_record(update), METRICS_KEY: metrics}), reply_to=msg)


def build_client_app(mods: list[Mod] | None = None) -> ClientApp:
    """A ``ClientApp`` with the handlers above; ``mods`` (Flower client mods) wrap every handler."""
    client = ClientApp(mods=mods or [])
    client.query("partition")(query_partition)
    client.train("share")(share)
    client.train()(fedavg_train)
    return client


app = build_client_app()
