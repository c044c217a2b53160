"""A real Flower deployment on loopback: one ``flower-superlink`` and two ``flower-supernode`` processes (insecure,
127.0.0.1 only), ``flwr run .`` from the repo root; every process stopped by PID. The same over TLS with SuperNode
authentication: ``test_deployment_secure.py``; the helpers both use: ``flower_deploy.py``.

Each SuperNode is a device: its own data folder (one speaker's recordings, RAVDESS layout), its own privacy policy
file and its own ledger folder, all in its node config; the server holds only the test speaker. Two runs against
the same SuperNodes: DP synthetic sharing plus a raw-sharing request that one device's policy forbids, then a second
run (another seed) that both devices refuse because their ledgers already spent the budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from flower_deploy import (
    BIN,
    ROOT,
    TINY,
    Processes,
    device,
    flower_env,
    flwr_run,
    free_port,
    stop_tree,
    wait_for,
    wait_healthy,
)
from wavtrees import write_ravdess_tree

from fedsered.config import load_config

POLICIES = {  # device 0 shares synthetic sets only; device 1 also consents to raw sharing; both: at most eps 4 in all
    0: "privacy:\n  enabled: true\n  target_epsilon: 4\n  budget_epsilon: 4\n  share: [synthetic]\n",
    1: "privacy:\n  budget_epsilon: 4\n  share: [synthetic, raw_sharing]\n",
}


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[dict[str, str], list[int]]]:
    home = tmp_path / "flwr_home"
    env = flower_env(home)
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    procs = Processes(env, tmp_path)
    try:
        # a file database: the in-memory one failed concurrent object pushes in flwr 1.41 (sqlite "SQL statements in
        # progress")
        link = procs.start("superlink", [BIN / "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port",
                                         port, "--database", tmp_path / "state.db"])  # fmt: skip
        wait_healthy(f"http://127.0.0.1:{port}", link, tmp_path / "superlink.log")
        for k in range(2):
            node_config = device(tmp_path / f"device{k}", k, 2, POLICIES[k])
            procs.start(f"supernode{k}", [
                BIN / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                "--port", free_port(), "--node-config", node_config,
            ])  # fmt: skip
        yield env, procs.pids
    finally:
        procs.stop()


@pytest.mark.slow
def test_devices_with_their_own_data_policy_and_ledger(
    loopback: tuple[dict[str, str], list[int]], tmp_path: Path
) -> None:
    env, pids = loopback
    write_ravdess_tree(tmp_path / "server" / "data", actors=[3], n_per=2, seconds=1.0, seed=3)
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        *TINY, f"data.path={tmp_path / 'server' / 'data'}", "federation.baselines=[raw_sharing]",
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
    run2 = flwr_run(env, config2, tmp_path / "out2")  # --stream: returns once the run has ended
    assert not (tmp_path / "out2" / "results.json").exists()
    for k in range(2):
        ledger = json.loads((tmp_path / f"device{k}" / "ledgers" / f"client-{k}" / "synthetic.json").read_text())
        assert len(ledger["releases"]) == 1 and ledger["budget_epsilon"] == 4.0
    assert "PrivacyBudgetError" in run2.stdout + run2.stderr
    started = [psutil.Process(p) for p in pids]
    stop_tree(pids)
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

