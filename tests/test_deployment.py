"""A real Flower deployment on loopback: one ``flower-superlink`` and two ``flower-supernode`` processes (insecure,
127.0.0.1 only), ``flwr run .`` from the repo root; every process stopped by PID.

Each SuperNode is a device: its own data folder (one speaker's recordings, RAVDESS layout), its own privacy policy
file and its own ledger folder, all in its node config; the server holds only the test speaker. Two runs against
the same SuperNodes: DP synthetic sharing plus a raw-sharing request that one device's policy forbids, then a second
run (another seed) that both devices refuse because their ledgers already spent the budget."""

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
from wavtrees import write_ravdess_tree

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


POLICIES = {  # device 0 shares synthetic sets only; device 1 also consents to raw sharing; both: at most eps 4 in all
    0: "privacy:\n  enabled: true\n  target_epsilon: 4\n  budget_epsilon: 4\n  share: [synthetic]\n",
    1: "privacy:\n  budget_epsilon: 4\n  share: [synthetic, raw_sharing]\n",
}


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[dict[str, str], list[int]]]:
    home = tmp_path / "flwr_home"
    home.mkdir()
    env = {
        **os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    for key in ("FEDSERED_POLICY_FILE", "FEDSERED_LEDGER_DIR"):
        env.pop(key, None)
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    pids: list[int] = []
    logs = []
    try:
        log = (tmp_path / "superlink.log").open("w")
        logs.append(log)
        # a file database: the in-memory one failed concurrent object pushes in flwr 1.41 (sqlite "SQL statements in
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
            device = tmp_path / f"device{k}"
            write_ravdess_tree(device / "data", actors=[k + 1], n_per=2, seconds=1.0, seed=k)
            (device / "policy.yaml").write_text(POLICIES[k])
            node_config = (f"partition-id={k} num-partitions=2 data-dir='{device / 'data'}' "
                           f"policy-file='{device / 'policy.yaml'}' ledger-dir='{device / 'ledgers'}'")  # fmt: skip
            log = (tmp_path / f"supernode{k}.log").open("w")
            logs.append(log)
            node = subprocess.Popen(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}", "--host",
                 "127.0.0.1", "--port", str(free_port()), "--node-config", node_config],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            pids.append(node.pid)
        yield env, pids
    finally:
        stop_tree(pids)
        for log in logs:
            log.close()


def flwr_run(env: dict[str, str], config_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flwr"), "run", ".", "loopback", "--stream",
         "--run-config", f"config-path='{config_path}' out-dir='{out}'"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip


@pytest.mark.slow
def test_devices_with_their_own_data_policy_and_ledger(
    loopback: tuple[dict[str, str], list[int]], tmp_path: Path
) -> None:
    env, pids = loopback
    write_ravdess_tree(tmp_path / "server" / "data", actors=[3], n_per=2, seconds=1.0, seed=3)
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        "data.corpus=ravdess", f"data.path={tmp_path / 'server' / 'data'}", "data.test_speakers=all",
        "features.segment_s=1.0", "features.n_mels=32", "features.cache_dir=null", "model.name=cnn_iot",
        "model.width=4", "train.epochs=2", "distill.dm_iterations=3", "distill.eval_epochs=3",
        "federation.num_clients=2", "federation.ipc=1", "federation.baselines=[raw_sharing]",
        "federation.min_fraction=0.5", "federation.node_wait_s=90", "federation.round_timeout_s=240",
        "privacy.enabled=true", "privacy.target_epsilon=4",
    ])  # fmt: skip
    config_path = tmp_path / "server" / "run.yaml"
    config_path.write_text(cfg.to_yaml())
    pyproject = (ROOT / "pyproject.toml").read_text()
    run = flwr_run(env, config_path, tmp_path / "out1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (ROOT / "pyproject.toml").read_text() == pyproject  # flwr run left the project file alone
    results = json.loads(wait_for(tmp_path / "out1" / "results.json").read_text())
    assert results["nodes"] == {"expected": 2, "connected": 2}
    assert [(c["id"], c["status"]) for c in results["clients"]] == [("client-0", "ok"), ("client-1", "ok")]
    assert all(c["privacy"]["epsilon"] == pytest.approx(4.0, rel=0.02) for c in results["clients"])
    assert all(c["seconds"] is None for c in results["clients"])  # DP devices publish no timings
    raw = {c["id"]: c for c in results["baselines"]["raw_sharing"]["clients"]}
    assert raw["client-0"]["status"] == "refused" and "does not allow raw_sharing" in raw["client-0"]["error"]
    assert raw["client-0"]["bytes_up"] == 0 and raw["client-1"]["status"] == "ok"
    assert (tmp_path / "out1" / "shared" / "synthetic.npz").exists()
    # a second run against the same devices with another seed: their ledgers persist, the budget is spent, both
    # refuse (the same run again would get the sets already released, filed beside the ledgers, at no new cost)
    config2 = tmp_path / "server" / "run2.yaml"
    config2.write_text(cfg.model_copy(update={"seed": cfg.seed + 1}).to_yaml())
    run2 = flwr_run(env, config2, tmp_path / "out2")
    wait_for(tmp_path / "out2" / "results.json", timeout=20, must_exist=False)
    assert not (tmp_path / "out2" / "results.json").exists()
    for k in range(2):
        ledger = json.loads((tmp_path / f"device{k}" / "ledgers" / f"client-{k}" / "synthetic.json").read_text())
        assert len(ledger["releases"]) == 1 and ledger["budget_epsilon"] == 4.0
    assert "PrivacyBudgetError" in run2.stdout + run2.stderr
    started = [psutil.Process(p) for p in pids]
    stop_tree(pids)
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_for(path: Path, *, timeout: float = 30, must_exist: bool = True) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert path.exists() or not must_exist, f"{path} not written"
    return path
