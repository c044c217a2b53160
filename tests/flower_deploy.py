"""Helpers for the loopback deployment tests (``test_deployment.py``, ``test_deployment_secure.py``): one
``flower-superlink`` and ``flower-supernode`` processes started from this venv, each SuperNode a device with its own
data folder, policy file and ledger folder in its node config, and ``flwr run .`` from the repo root. Every process
is started through :class:`Processes`, which stops them (and their children) by PID.

Import as ``from flower_deploy import ...`` (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx
import psutil
from wavtrees import write_ravdess_tree

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# the smallest run the deployment tests make: 1 s clips, 32 mels, a width-4 CNN, 3 distillation steps
TINY = [
    "data.corpus=ravdess", "data.test_speakers=all", "features.segment_s=1.0", "features.n_mels=32",
    "features.cache_dir=null", "model.name=cnn_iot", "model.width=4", "train.epochs=2", "distill.dm_iterations=3",
    "distill.eval_epochs=3", "federation.num_clients=2", "federation.ipc=1", "federation.min_fraction=0.5",
    "federation.node_wait_s=90", "federation.round_timeout_s=240", "privacy.enabled=true",
    "privacy.target_epsilon=4",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_tree(pids: Sequence[int]) -> None:
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


def flower_env(home: Path) -> dict[str, str]:
    """The environment for every Flower process: its own ``FLWR_HOME``, no network calls, this venv's code and
    binaries, no runtime dependency installation (it would pull CUDA torch), no inherited device settings."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    for key in ("FEDSERED_POLICY_FILE", "FEDSERED_LEDGER_DIR"):
        env.pop(key, None)
    return env


class Processes:
    """The processes a test started, each logging to its own file; :meth:`stop` ends them all and their children by
    PID (use it in a ``finally``). A process already reaped is skipped, so a reused PID is never signalled."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.log_dir = env, logs
        self.started: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[str]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.started]

    def start(self, name: str, argv: Sequence[object], *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv``, its output in ``<logs>/<name>.log``."""
        log = (self.log_dir / f"{name}.log").open("w")
        self._logs.append(log)
        proc = subprocess.Popen([str(a) for a in argv], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def tree(self) -> list[psutil.Process]:
        """The started processes still running, and all their children."""
        out: list[psutil.Process] = []
        for proc in self.started:
            if proc.poll() is None:
                try:
                    p = psutil.Process(proc.pid)
                    out += [p, *p.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
        return out

    def stop(self) -> None:
        stop_tree([p.pid for p in self.started if p.poll() is None])
        for log in self._logs:
            log.close()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, *, ca: Path | None = None,
                 timeout: float = 60) -> None:  # fmt: skip
    """Wait until the SuperLink at ``url`` answers ``/health`` (``ca``: the root certificate, for TLS)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


def device(folder: Path, k: int, num: int, policy: str) -> str:
    """Make device ``k``'s own folder (one speaker's recordings, its policy; its ledgers land there) and return
    its node config."""
    write_ravdess_tree(folder / "data", actors=[k + 1], n_per=2, seconds=1.0, seed=k)
    (folder / "policy.yaml").write_text(policy)
    return (f"partition-id={k} num-partitions={num} data-dir='{folder / 'data'}' "
            f"policy-file='{folder / 'policy.yaml'}' ledger-dir='{folder / 'ledgers'}'")  # fmt: skip


def flwr_run_argv(config_path: Path, out: Path, superlink: str = "loopback") -> list[str]:
    """``flwr run .`` (from ``ROOT``) of the project's app against the connection ``superlink``."""
    return [str(BIN / "flwr"), "run", ".", superlink, "--stream",
            "--run-config", f"config-path='{config_path}' out-dir='{out}'"]  # fmt: skip


def flwr_run(env: dict[str, str], config_path: Path, out: Path, *, superlink: str = "loopback",
             timeout: float = 420) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(flwr_run_argv(config_path, out, superlink), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def wait_for(path: Path, *, timeout: float = 30, must_exist: bool = True) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert path.exists() or not must_exist, f"{path} not written"
    return path
