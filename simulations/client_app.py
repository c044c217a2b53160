"""The Flower ``ClientApp``: one simulated IoT client (or a real ``flower-supernode``) holding one partition.

Handlers, one per message type, each a thin adapter (Message → ``Task`` → ``fedsered.federation.run_task`` →
``Reply`` → Message):
- ``query.partition``: which partition this node holds (``node_config["partition-id"]``);
- ``train``: the round's task — share a set (synthetic, random subset, raw) or train locally (FedAvg, DP-FedAvg) —
  on this node's private partition. Only the reply leaves the node.

The client's privacy policy and ledgers are its own: the policy from its node config ``policy-file`` (else
``$FEDSERED_POLICY_FILE``, which ``fedsered simulate`` writes from the run's YAML for its virtual clients), the
ledgers under ``node_config["ledger-dir"]`` (else ``$FEDSERED_LEDGER_DIR``, else ``./fedsered-ledgers``); nothing
the server sends chooses either, and a task can only tighten the policy (``fedsered.privacy.policy``). The data are
built locally from the run config the task carries (``build_dataset``) and kept per process (Ray actors serve many
clients in turn).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from fedsered.config import Config, PrivacyConfig, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.errors import DataError
from fedsered.federation.client import LocalClient, client_id, run_task
from simulations.wire import TASK_KEY, reply_message, task_of

_DATA: dict[str, Dataset] = {}


def local_data(cfg: Config) -> tuple[Dataset, float, float]:
    """The dataset of ``cfg``, built once per process, and the wall and CPU seconds building it took now."""
    start, cpu = time.perf_counter(), time.process_time()
    key = cfg.model_dump_json(include={"seed", "data", "features", "federation"})
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = build_dataset(cfg)
    return _DATA[key], time.perf_counter() - start, time.process_time() - cpu


def partition_of(context: Context, data: Dataset) -> int:
    """This node's partition index (``--node-config partition-id=K`` on a real SuperNode)."""
    if "partition-id" not in context.node_config:
        raise DataError("this SuperNode has no partition-id in its node config (start it with "
                        "--node-config 'partition-id=K num-partitions=N')")  # fmt: skip
    k = int(context.node_config["partition-id"])
    if not 0 <= k < len(data.clients):
        raise DataError(f"partition-id {k} outside the run's {len(data.clients)} client partitions")
    return k


def ledger_root(context: Context) -> Path:
    """The folder of this client's ledgers: its node config, else the simulation's, else the working folder's."""
    configured = context.node_config.get("ledger-dir") or os.environ.get("FEDSERED_LEDGER_DIR")
    return Path(str(configured)) if configured else Path("fedsered-ledgers")


def policy_of(context: Context) -> PrivacyConfig:
    """This client's own privacy policy: the ``privacy`` section of the YAML file named by its node config
    ``policy-file`` (a SuperNode), else ``$FEDSERED_POLICY_FILE`` (what ``fedsered simulate`` writes for its virtual
    clients from the run's YAML), else the defaults (synthetic sets only). Never anything the server sends."""
    path = context.node_config.get("policy-file") or os.environ.get("FEDSERED_POLICY_FILE")
    return load_config(str(path)).privacy if path else PrivacyConfig()


def query_partition(msg: Message, context: Context) -> Message:
    return Message(
        RecordDict({TASK_KEY: ConfigRecord({"partition-id": int(context.node_config["partition-id"])})}),
        reply_to=msg,
    )


def train(msg: Message, context: Context) -> Message:
    task = task_of(msg)
    data, setup, setup_cpu = local_data(task.cfg)
    k = partition_of(context, data)
    cid = client_id(k)
    client = LocalClient(cid, data.client(k), data.n_classes, ledger_root(context) / cid, policy_of(context))
    reply = run_task(task, client)
    metrics = {**reply.metrics, "setup-seconds": setup, "setup-cpu-seconds": setup_cpu}
    return reply_message(msg, replace(reply, metrics=metrics))


def build_client_app(mods: list[Mod] | None = None) -> ClientApp:
    """A ``ClientApp`` with the handlers above; ``mods`` (Flower client mods) wrap every handler."""
    client = ClientApp(mods=mods or [])
    client.query("partition")(query_partition)
    client.train()(train)
    return client


app = build_client_app()
