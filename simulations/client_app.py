"""The Flower ``ClientApp``: one simulated IoT client (or a real ``flower-supernode``) holding one partition.

Handlers, one per message type, each a thin adapter (Message → ``Task`` → ``fedsered.federation.run_task`` →
``Reply`` → Message):
- ``query.partition``: which partition this node holds (``node_config["partition-id"]``);
- ``train``: the round's task — share a set (synthetic, random subset, raw) or train locally (FedAvg, DP-FedAvg) —
  on this node's private partition. Only the reply leaves the node.

The client's privacy policy and ledgers are its own: the policy from its node config ``policy-file`` (else
``$FEDSERED_POLICY_FILE``, which ``fedsered simulate`` writes from the run's YAML for its virtual clients), the
ledgers under ``node_config["ledger-dir"]`` (else ``$FEDSERED_LEDGER_DIR``, else ``./fedsered-ledgers``); nothing
the server sends chooses either, and a task can only tighten the policy (``fedsered.privacy.policy``). Every reply
is filed beside the ledgers (``<ledger dir>/<client>/replies/``): a task sent again — after a crash, a lost upload or
a resumed run — gets the filed reply, never a new DP release (``fedsered.federation.reply_store``).
SIMULATION ONLY, last: a virtual node of Flower's Simulation Runtime (a Ray actor, as under ``flwr run .`` against a
local simulation connection, whose long-lived SuperLink hands its virtual clients its own start-up environment, not
the caller's) also reads ``ledger-dir`` / ``policy-file`` from the run config — the experimenter's, who plays every
client there. A deployed SuperNode never does: its run config comes from whoever submits the run. Its data: with
``data-dir`` in its node config (a real device), its own recordings only (``fedsered.data.local.node_data``); in
simulation, its own file of the partitions ``fedsered simulate`` wrote before starting Ray (``$FEDSERED_CLIENT_DATA``,
``fedsered.data.client_files``), else (``flwr run .`` on a local simulation) its partition of the corpus built from
the run config (``build_dataset``), kept per process.
What every task repeats is parsed once per process: the config text (the same for every client of a round) and the
policy file (until it changes on disk).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from fedsered.config import PrivacyConfig, load_config
from fedsered.data.client_files import read_client_file
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError
from fedsered.federation.client import LocalClient, client_id, run_task
from fedsered.federation.protocol import Task
from simulations.wire import TASK_KEY, reply_message, task_of

if TYPE_CHECKING:
    from fedsered.data.dataset import Dataset

_DATA: dict[str, Dataset | FeatureSet] = {}
"""The data this process built, kept across tasks (one entry: a Ray actor serves many clients of one run)."""


def partition_of(context: Context) -> int:
    """This node's partition index (``--node-config partition-id=K`` on a real SuperNode)."""
    value = context.node_config.get("partition-id")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError("this SuperNode has no partition-id K >= 0 in its node config (start it with "
                        "--node-config 'partition-id=K num-partitions=N')")  # fmt: skip
    return value


def virtual_node() -> bool:
    """Whether this ClientApp runs as a virtual node of Flower's Simulation Runtime, i.e. inside a Ray actor. A
    deployed SuperNode runs its ClientApps in processes without Ray (``ray`` is not imported here to find out)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def ray_node() -> str:
    """The id of the Ray node running this virtual client (``""`` outside Ray). Infrastructure telemetry for the
    experimenter (which machine of a cluster ran which client), not private data: it depends on no record."""
    return str(sys.modules["ray"].get_runtime_context().get_node_id() or "") if virtual_node() else ""


def own_setting(context: Context, key: str, env: str) -> str | None:
    """A client-side setting: the node config's ``key``, else ``$env``, else — SIMULATION ONLY — the run config's
    ``key`` (``flwr run . <local simulation> --run-config "... ledger-dir='...' policy-file='...'"``)."""
    value = context.node_config.get(key) or os.environ.get(env)
    if not value and virtual_node():
        value = context.run_config.get(key)
    return str(value) if value else None


def ledger_root(context: Context) -> Path:
    """The folder of this client's ledgers: its node config, else the simulation's, else the working folder's."""
    configured = own_setting(context, "ledger-dir", "FEDSERED_LEDGER_DIR")
    return Path(configured) if configured else Path("fedsered-ledgers")


def policy_of(context: Context) -> PrivacyConfig:
    """This client's own privacy policy: the ``privacy`` section of the YAML file named by its node config
    ``policy-file`` (a SuperNode), else ``$FEDSERED_POLICY_FILE`` (what ``fedsered simulate`` writes for its virtual
    clients from the run's YAML), else — a virtual node only — the run config's ``policy-file``, else the defaults
    (synthetic sets only). Never anything the server sends."""
    path = own_setting(context, "policy-file", "FEDSERED_POLICY_FILE")
    if not path:
        return PrivacyConfig()
    try:
        st = os.stat(path)
    except OSError:
        return load_config(path).privacy  # load_config names the missing file
    return _policy(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _policy(path: str, mtime_ns: int, size: int) -> PrivacyConfig:
    """The policy file parsed once per version on disk (its path, modification time and size)."""
    return load_config(path).privacy


def query_partition(msg: Message, context: Context) -> Message:
    return Message(
        RecordDict({TASK_KEY: ConfigRecord({"partition-id": partition_of(context)})}),
        reply_to=msg,
    )


def local_client(task: Task, context: Context) -> tuple[LocalClient, float, float]:
    """This node's client: its partition of the simulated corpus, or — with ``data-dir`` in its node config (a real
    SuperNode) — its own recordings and nothing else; plus the wall and CPU seconds loading took now."""
    start, cpu = time.perf_counter(), time.process_time()
    k = partition_of(context)
    cid = client_id(k)
    own = context.node_config.get("data-dir")
    files = None if own else os.environ.get("FEDSERED_CLIENT_DATA")
    if files and virtual_node():  # simulation: this client's own file of the run's partitions
        data: Dataset | FeatureSet = read_client_file(Path(files), k, cfg=task.cfg)
    else:
        key = f"{own}|{task.cfg.model_dump_json(include={'data', 'features'})}" if own else \
            task.cfg.model_dump_json(include={"seed", "data", "features", "federation"})  # fmt: skip
        if key not in _DATA:
            _DATA.clear()
            _DATA[key] = _node_data(task, str(own)) if own else _corpus(task)
        data = _DATA[key]
    if not isinstance(data, FeatureSet):  # the whole corpus (a Dataset): this client's partition of it
        if k >= len(data.clients):
            raise DataError(f"partition-id {k} outside the run's {len(data.clients)} client partitions")
        data = data.client(k)
    client = LocalClient(cid, data, len(task.cfg.data.emotions), ledger_root(context) / cid, policy_of(context),
                         keep_replies=True)  # fmt: skip
    return client, time.perf_counter() - start, time.process_time() - cpu


def _node_data(task: Task, own: str) -> FeatureSet:
    # imported here: the audio and feature pipeline (librosa, numba) only where a device reads recordings
    from fedsered.data.local import node_data

    return node_data(task.cfg, own)


def _corpus(task: Task) -> Dataset:
    # imported here: the whole corpus pipeline only where no client files were written (``flwr run .``)
    from fedsered.data.dataset import build_dataset

    return build_dataset(task.cfg)


def train(msg: Message, context: Context) -> Message:
    task = task_of(msg)
    client, setup, setup_cpu = local_client(task, context)
    reply = run_task(task, client)
    if reply.metrics:  # a DP client publishes no timings
        reply = replace(reply, metrics={**reply.metrics, "setup-seconds": setup, "setup-cpu-seconds": setup_cpu})
    return reply_message(msg, replace(reply, node=ray_node()))


def build_client_app(mods: list[Mod] | None = None) -> ClientApp:
    """A ``ClientApp`` with the handlers above; ``mods`` (Flower client mods) wrap every handler."""
    client = ClientApp(mods=mods or [])
    client.query("partition")(query_partition)
    client.train()(train)
    return client


app = build_client_app()
