"""A real Flower deployment on loopback: one ``flower-superlink`` and two ``flower-supernode`` processes (insecure,
127.0.0.1 only), ``flwr run .`` from the repo root, one synthetic-sharing round; every process stopped by PID."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from fedsered.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_tree(pids: list[int]) -> None:
    """Terminate the processes we started and their children (SuperExec, app processes), by PID."""
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs += [*p.children(recursive=True), p]
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[dict[str, str], int, list[int]]]:
    home = tmp_path / "flwr_home"
    home.mkdir()
    env = {
        **os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    pids: list[int] = []
    logs = []
    try:
        log = (tmp_path / "superlink.log").open("w")
        logs.append(log)
        # a file database: the in-memory one fails concurrent object pushes in flwr 1.41 (sqlite "SQL statements in
        # progress")
        link = subprocess.Popen(
            [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
             "--database", str(tmp_path / "state.db")], env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        pids.append(link.pid)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert link.poll() is None and time.monotonic() < deadline, (tmp_path / "superlink.log").read_text()
            time.sleep(0.5)
        for k in range(2):
            log = (tmp_path / f"supernode{k}.log").open("w")
            logs.append(log)
            node = subprocess.Popen(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}", "--host",
                 "127.0.0.1", "--port", str(free_port()), "--node-config", f"partition-id={k} num-partitions=2"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            pids.append(node.pid)
        yield env, port, pids
    finally:
        stop_tree(pids)
        for log in logs:
            log.close()


@pytest.mark.slow
def test_superlink_and_two_supernodes_run_one_round(
    loopback: tuple[dict[str, str], int, list[int]], tmp_path: Path
) -> None:
    env, _, pids = loopback
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        "data.embedded.n_speakers=3", "data.test_speakers=0.34", "data.embedded.utterances_per_emotion=2",
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32",
        f"features.cache_dir={tmp_path / 'cache'}", "model.name=cnn_iot", "model.width=4", "train.epochs=2",
        "distill.dm_iterations=3", "distill.eval_epochs=3", "federation.num_clients=2", "federation.ipc=1",
        "federation.baselines=[]", "federation.node_wait_s=90", "federation.round_timeout_s=240",
    ])  # fmt: skip
    config_path, out = tmp_path / "tiny.yaml", tmp_path / "out"
    config_path.write_text(cfg.to_yaml())
    pyproject = (ROOT / "pyproject.toml").read_text()
    run = subprocess.run(
        [str(BIN / "flwr"), "run", ".", "loopback", "--stream",
         "--run-config", f"config-path='{config_path}' out-dir='{out}'"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (ROOT / "pyproject.toml").read_text() == pyproject  # flwr run left the project file alone
    deadline = time.monotonic() + 30
    while not (out / "results.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    results = json.loads((out / "results.json").read_text())
    assert results["nodes"] == {"expected": 2, "connected": 2}
    assert [(c["id"], c["status"]) for c in results["clients"]] == [("client-0", "ok"), ("client-1", "ok")]
    assert all(c["bytes_up"] > 0 for c in results["clients"]) and 0.0 <= results["global_uar"] <= 1.0
    assert (out / "shared" / "synthetic.npz").exists()
    started = [psutil.Process(p) for p in pids]
    stop_tree(pids)
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
