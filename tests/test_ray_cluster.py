"""``fedsered simulate`` and ``fedsered audit`` on a real two-node Ray cluster (``federation.ray_address``).

A Ray head and a second Ray node start on this machine with ``ray start`` — their own ports (free ones, every port
Ray would otherwise take by default), 1 CPU each, temp dirs under the test's folder, this checkout on their
``PYTHONPATH`` — and a marker in their environment, which every process they start inherits: teardown stops exactly
those processes by PID (never ``ray stop``, which would hit anyone's Ray on a shared machine), on failure too. (Ray
turns a loopback node address into the machine's own, so the nodes register under that; the driver joins through
``127.0.0.1:<head port>``.) Then a
tiny simulation and a tiny audit join the cluster; both must have run work on both nodes (the node ids the clients'
records and the audit's runs carry) and give what a local run of the same seed gives.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from fedsered.cli import main
from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.federation import run_pipeline
from privacy_audits.shadows import OneRunOutput, load_output, save_output

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
RAY = Path(sys.executable).with_name("ray")
MARKER = "FEDSERED_TEST_RAY_CLUSTER"

SIM = [  # tests/test_simulation.py's tiny(...): 4 training speakers = 4 clients, one test speaker
    "data.embedded.n_speakers=5", "data.test_speakers=0.2", "data.embedded.utterances_per_emotion=2",
    "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32", "model.name=cnn_iot",
    "model.width=4", "train.epochs=2", "federation.num_clients=4", "federation.ipc=1", "distill.dm_iterations=3",
    "distill.eval_epochs=3", "federation.fedavg_rounds=2", "federation.baselines=[raw_sharing, fedavg]",
    "federation.node_wait_s=60", "federation.fedavg_until_reached=false",  # all rounds, as run_pipeline runs them
]  # fmt: skip
AUDIT = [  # tests/test_audit_pipeline.py's TINY, raw sharing only
    "data.embedded.n_speakers=10", "data.embedded.utterances_per_emotion=3", "data.embedded.duration_s=[0.8,1.0]",
    "features.n_mels=16", "features.segment_s=1.0", "model.name=cnn_iot", "model.width=8", "train.epochs=8",
    "distill.eval_epochs=10", "federation.num_clients=5", "federation.ipc=2", "federation.fedavg_rounds=2",
    "audit.clients=3", "audit.audited_per_client=6", "audit.population=30", "audit.canaries=2", "audit.shadows=4",
    "audit.one_run_canaries=12", "audit.one_run_runs=2", "audit.pipelines=[raw_sharing]",
]  # fmt: skip


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, taken: set[int]) -> list[int]:
    """``n`` distinct ports that are free now and not in ``taken`` (added to it)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in taken:
            taken.add(p)
            ports.append(p)
    return ports


def free_range(k: int, taken: set[int]) -> tuple[int, int]:
    """``k`` consecutive free ports (a node's worker ports), none in ``taken`` (added to it)."""
    while True:
        lo = random.randint(20000, 60000 - k)
        span = set(range(lo, lo + k))
        if not span & taken and all(_free(p) for p in span):
            taken |= span
            return lo, lo + k - 1


def node_flags(taken: set[int], *, head: bool) -> list[str]:
    """Every port a node would take by default, chosen free, so that it meets no one else's Ray."""
    p = free_ports(7, taken)
    lo, hi = free_range(60, taken)
    flags = [
        "--num-cpus", "1", "--object-store-memory", str(128 * 2**20), "--disable-usage-stats",
        "--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
        "--min-worker-port", str(lo), "--max-worker-port", str(hi),
        "--dashboard-agent-listen-port", str(p[2]), "--dashboard-agent-grpc-port", str(p[3]),
        "--metrics-export-port", str(p[4]), "--runtime-env-agent-port", str(p[5]),
    ]  # fmt: skip
    if head:
        flags += ["--include-dashboard=false", "--ray-client-server-port", str(p[6])]
    return flags


def marked(marker: str) -> list[psutil.Process]:
    """The processes whose environment carries this cluster's marker (every process its nodes started)."""
    out = []
    for p in psutil.process_iter():
        with suppress(psutil.Error):
            if p.pid != os.getpid() and p.environ().get(MARKER) == marker:
                out.append(p)
    return out


def stop(procs: list[psutil.Process]) -> None:
    for p in procs:
        with suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=3)
    for p in alive:
        with suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


@dataclass(frozen=True)
class Cluster:
    address: str
    nodes: tuple[str, str]  # head, second node
    marker: str


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # a short path of its own: Ray's socket paths under it must stay within 107 bytes (pytest's own temp folders
    # grow with the xdist worker's name)
    tmp = Path(tempfile.mkdtemp(prefix="fsr-c-", dir="/tmp"))
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}  # fmt: skip
    taken: set[int] = set()
    gcs = free_ports(1, taken)[0]
    address = f"127.0.0.1:{gcs}"
    started: list[psutil.Process] = []
    try:
        for name, flags in (("head", ["--head", "--port", str(gcs)]), ("node", ["--address", address])):
            cmd = [str(RAY), "start", *flags, "--temp-dir", str(tmp / name), *node_flags(taken, head=name == "head")]
            r = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=120)
            started = marked(marker)
            assert r.returncode == 0, f"ray start ({name}) failed: {r.stdout[-2000:]} {r.stderr[-2000:]}"
        import ray

        ray.init(address=address, log_to_driver=False, configure_logging=False)
        try:
            deadline = time.monotonic() + 60
            while len(alive := [n for n in ray.nodes() if n["Alive"]]) < 2:
                assert time.monotonic() < deadline, "the second node never joined"
                time.sleep(0.5)
            head = next(n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"])
            other = next(n["NodeID"] for n in alive if n["NodeID"] != head)
            assert ray.cluster_resources()["CPU"] == 2
        finally:
            ray.shutdown()
        yield Cluster(address=address, nodes=(head, other), marker=marker)
    finally:
        stop(list({p.pid: p for p in [*started, *marked(marker)]}.values()))
        deadline = time.monotonic() + 10
        while (left := marked(marker)) and time.monotonic() < deadline:
            stop(left)
            time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not marked(marker), "processes of the test cluster left running"


@pytest.mark.slow
def test_simulate_on_two_nodes_equals_in_process(cluster: Cluster, tmp_path: Path) -> None:
    sets = [*SIM, f"features.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "run"
    args = ["simulate", DEFAULT, "--out", str(out), *(f"--set={s}" for s in sets)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the ServerApp runs here; Ray actors run torch on one thread, so does the reference
    try:
        assert main([*args, f"--set=federation.ray_address={cluster.address}"]) == 0
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
        cfg = load_config(DEFAULT, sets)
        data = build_dataset(cfg)
        for name in ("synthetic", "raw_sharing", "fedavg"):
            flower = results if name == "synthetic" else results["baselines"][name]
            assert all(c["status"] == "ok" for c in flower["clients"]), flower["clients"]
            direct = run_pipeline(cfg, data, pipeline=name, seed=cfg.seed, ledger_root=tmp_path / "direct")  # type: ignore[arg-type]
            assert flower["global_uar"] == direct.uar and flower["confusion"] == direct.confusion, name
            assert flower["bytes_up_total"] == direct.bytes_up_total, name
            assert all(c.node is None for c in direct.clients)  # in-process: no Ray node
    finally:
        torch.set_num_threads(before)
    rows = [c for r in (results, *results["baselines"].values()) for c in r["clients"]]
    assert {c["node"] for c in rows} == set(cluster.nodes), "the clients did not run on both nodes"
    # the clients' ledgers went where the run's clients keep them (their environment reached every node)
    for k in range(4):
        assert list((out / "clients" / f"client-{k}" / "replies").iterdir()), k


@pytest.mark.slow
def test_audit_on_two_nodes_equals_local(cluster: Cluster, tmp_path: Path) -> None:
    cfg_file = tmp_path / "audit.yaml"
    cfg_file.write_text("seed: 0\n", encoding="utf-8")
    sets = [f"--set={s}" for s in [*AUDIT, f"features.cache_dir={tmp_path / 'cache'}"]]
    ray_run, local = tmp_path / "cluster", tmp_path / "local"
    on = ["--set=audit.workers=4", f"--set=federation.ray_address={cluster.address}"]
    assert main(["audit", str(cfg_file), *sets, *on, "--out", str(ray_run)]) == 0
    assert main(["audit", str(cfg_file), *sets, "--set=audit.workers=0", "--out", str(local)]) == 0
    got = json.loads((ray_run / "results.json").read_text(encoding="utf-8"))
    ref = json.loads((local / "results.json").read_text(encoding="utf-8"))
    assert got["pipelines"]["raw_sharing"]["nodes"] == 2 and ref["pipelines"]["raw_sharing"]["nodes"] == 0
    nodes = set()
    for r in range(4):
        with np.load(ray_run / "runs" / "raw_sharing" / f"shadow-{r}.npz") as z:
            nodes.add(str(z["node"]))
    assert nodes == set(cluster.nodes)
    assert not (ray_run / "ray").exists()  # the cluster's own temp dirs, none under the run folder
    for key in ("uar", "uar_std", "auc", "tpr_at_fpr", "epsilon_lower_bound", "attacks", "canaries", "bytes_up_total"):
        assert got["pipelines"]["raw_sharing"][key] == ref["pipelines"]["raw_sharing"][key], key


def test_a_runs_node_is_saved_and_older_runs_load_without_one(tmp_path: Path) -> None:
    out = OneRunOutput(target="fedavg", run=1, log_p=np.zeros(3), dcr_feature=None, domias=None, uar=0.5,
                       epsilon_accounted=None, cpu_s=1.0, wall_s=1.0, node="ab12")  # fmt: skip
    save_output(tmp_path / "a.npz", out)
    loaded = load_output(tmp_path / "a.npz", OneRunOutput)
    assert loaded is not None and loaded.node == "ab12" and loaded.run == 1
    with np.load(tmp_path / "a.npz") as z:  # a run saved before nodes were recorded
        np.savez(tmp_path / "old.npz", **{k: z[k] for k in z.files if k != "node"})
    old = load_output(tmp_path / "old.npz", OneRunOutput)
    assert old is not None and old.node == ""
