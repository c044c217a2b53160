"""``flwr run .`` against a LOCAL SIMULATION connection (flwr 1.42): Flower's documented way to simulate a Flower App.

The connection is ``address = ":local:"`` in ``$FLWR_HOME/config.toml``; ``flwr run`` then starts a managed local
``flower-superlink --simulation`` itself (detached, left running afterwards), which runs the app with the Simulation
Runtime (Ray) in a ``flwr-simulation`` process. The simulation settings go with the run (``--federation-config``:
``num-supernodes`` = ``federation.num_clients``, one CPU and no GPU per virtual client, Ray's CPU count). The long-lived
SuperLink hands the virtual clients ITS start-up environment, not the caller's, so their ledger folder and policy come
from the run config (``ledger-dir``, ``policy-file``: honoured by virtual nodes only, ``simulations/client_app.py``).
Everything the run started — the SuperLink, its SuperExec and simulation processes, Ray — is stopped by PID: the
processes whose command line names this test's folders, and their children."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from flwr.app import Context, RecordDict

from fedsered.config import load_config
from simulations.client_app import ledger_root, own_setting, policy_of
from simulations.runner import RAY_SOCKET_BUDGET

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONNECTION = "local-sim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mentioning(*marks: Path) -> list[psutil.Process]:
    """Live processes whose command line names one of ``marks`` (ours: the folders are this test's own)."""
    found = []
    for p in psutil.process_iter():
        try:
            line = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if any(str(m) in line for m in marks):
            found.append(p)
    return found


def stop_started(*marks: Path) -> list[int]:
    """Terminate (then kill) the processes naming ``marks`` and all their children, by PID; returns the PIDs."""
    procs: dict[int, psutil.Process] = {}
    for p in mentioning(*marks):
        try:
            for q in [p, *p.children(recursive=True)]:
                procs[q.pid] = q
        except psutil.NoSuchProcess:
            continue
    for p in procs.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(list(procs.values()), timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)
    return sorted(procs)


@pytest.mark.slow
def test_flwr_run_against_a_local_simulation_connection(tmp_path: Path) -> None:
    home = tmp_path / "flwr_home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = ":local:"\n'
    )
    ray_tmp = tmp_path / "ray"  # Ray's socket paths must stay under 108 bytes: a short folder when this is too long
    short = len(str(ray_tmp)) > RAY_SOCKET_BUDGET
    if short:
        ray_tmp = Path(tempfile.mkdtemp(prefix="fsr-ray-"))
    ray_tmp.mkdir(exist_ok=True)
    env = {
        **os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # the managed local SuperLink listens on 39091 unless told otherwise: our own port, never another's SuperLink
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()), "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(256 * 2**20),
    }  # fmt: skip
    for key in ("FEDSERED_POLICY_FILE", "FEDSERED_LEDGER_DIR"):  # the run config must carry them, not the env
        env.pop(key, None)
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        "data.embedded.n_speakers=3", "data.test_speakers=0.34", "data.embedded.utterances_per_emotion=2",
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32",
        f"features.cache_dir={tmp_path / 'cache'}", "model.name=cnn_iot", "model.width=4", "train.epochs=2",
        "federation.num_clients=2", "federation.ipc=1", "distill.dm_iterations=3", "distill.eval_epochs=3",
        "federation.baselines=[]", "federation.node_wait_s=90", "federation.round_timeout_s=240",
        "privacy.enabled=true", "privacy.target_epsilon=4",
    ])  # fmt: skip
    config_path = tmp_path / "run.yaml"
    config_path.write_text(cfg.to_yaml())
    out, ledgers = tmp_path / "out", tmp_path / "ledgers"
    pyproject = (ROOT / "pyproject.toml").read_text()
    federation = (f"num-supernodes={cfg.federation.num_clients} client-resources-num-cpus=1 "
                  f"client-resources-num-gpus=0.0 init-args-num-cpus={cfg.federation.ray_num_cpus}")  # fmt: skip
    try:
        start = time.perf_counter()
        run = subprocess.run(
            [str(BIN / "flwr"), "run", ".", CONNECTION, "--stream", "--federation-config", federation,
             "--run-config", f"config-path='{config_path}' out-dir='{out}' ledger-dir='{ledgers}' "
             f"policy-file='{config_path}'"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
        )  # fmt: skip
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-4000:]
        assert (out / "results.json").exists(), log[-4000:]  # the stream ends with the run: results are written
        results = json.loads((out / "results.json").read_text())
        print(f"flwr run (local simulation, 2 clients): {time.perf_counter() - start:.1f} s")
        assert "Starting local SuperLink" in log and "(2 simulated SuperNodes)" in log, log[-4000:]
        # --stream exits 0 even when the run fails: ask the SuperLink how it ended
        listing = subprocess.run([str(BIN / "flwr"), "list", CONNECTION, "--format", "json"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert [r["status"] for r in json.loads(listing.stdout)["runs"]] == ["finished:completed"], listing.stdout
        assert (ROOT / "pyproject.toml").read_text() == pyproject  # flwr run left the project file alone
        assert results["nodes"] == {"expected": 2, "connected": 2}
        assert [(c["id"], c["status"]) for c in results["clients"]] == [("client-0", "ok"), ("client-1", "ok")]
        assert all(c["privacy"]["epsilon"] == pytest.approx(4.0, rel=0.02) for c in results["clients"])
        # the clients' own ledgers are in the run config's ledger-dir, under the policy-file's budget (its
        # target_epsilon 4; the default policy, had the file not reached them, would give 8)
        for k in range(2):
            ledger = json.loads((ledgers / f"client-{k}" / "synthetic.json").read_text())
            assert len(ledger["releases"]) == 1 and ledger["budget_epsilon"] == 4.0
        daemons = [p for p in mentioning(home) if "flower-superlink" in " ".join(p.cmdline())]
        assert len(daemons) == 1, "flwr run leaves its managed local SuperLink running"
        stopped = stop_started(tmp_path, ray_tmp)
        assert daemons[0].pid in stopped
        assert not mentioning(tmp_path, ray_tmp)
        assert not [pid for pid in stopped if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    finally:
        stop_started(tmp_path, ray_tmp)
        if short:
            shutil.rmtree(ray_tmp, ignore_errors=True)


def test_run_config_names_ledger_and_policy_for_virtual_nodes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("FEDSERED_POLICY_FILE", "FEDSERED_LEDGER_DIR"):
        monkeypatch.delenv(key, raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text("privacy:\n  share: [synthetic, raw_sharing]\n")
    run_config = {"ledger-dir": str(tmp_path / "sim"), "policy-file": str(policy)}
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)

    def ray_in(actor_id: str | None) -> SimpleNamespace:  # a connected Ray process: an actor, or the driver (None)
        runtime = SimpleNamespace(get_actor_id=lambda: actor_id)
        return SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: runtime)

    monkeypatch.setitem(sys.modules, "ray", ray_in(None))  # a Ray driver, not an actor: not a virtual node
    assert ledger_root(context) == Path("fedsered-ledgers") and policy_of(context).share == ("synthetic",)
    monkeypatch.delitem(sys.modules, "ray")  # a deployed SuperNode: no Ray at all
    assert own_setting(context, "ledger-dir", "FEDSERED_LEDGER_DIR") is None
    monkeypatch.setitem(sys.modules, "ray", ray_in("a1"))  # a virtual node of the Simulation Runtime
    assert ledger_root(context) == tmp_path / "sim" and policy_of(context).share == ("synthetic", "raw_sharing")
    monkeypatch.setenv("FEDSERED_LEDGER_DIR", str(tmp_path / "env"))  # the environment comes first ...
    assert ledger_root(context) == tmp_path / "env"
    node = Context(run_id=1, node_id=1, node_config={"ledger-dir": str(tmp_path / "own")}, state=RecordDict(),
                   run_config=run_config)  # fmt: skip
    assert ledger_root(node) == tmp_path / "own"  # ... and the node config before it
