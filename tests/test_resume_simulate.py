"""``fedsered simulate`` survives faults: SIGINT and SIGTERM stop it within 10 s with one line and no process left;
after them and a SIGKILL half-way, the same command again gives the uninterrupted run's ``results.json`` without any
finished client work redone or any DP release made twice; a changed config in the same folder is refused with one
line.

One chain of CLI runs, each a subprocess in its own session, on a tiny DP config (2 clients; synthetic sharing and
DP-FedAvg over 3 rounds; reproducible noise only so that the two runs can be compared bit for bit). Every process a
run started is collected by PID while it runs and stopped by PID afterwards. Five Ray start-ups (the uninterrupted
reference runs alongside the chain): ~2-4 min on the shared 2-core box, depending on its load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
CLIENTS, ROUNDS = 2, 3
SECRET_FREE = ("seconds", "rss_mb", "phases")
"""Keys (suffixes) of what differs between two runs of one config: timings and memory."""


def command(tmp: Path, out: Path, *extra: str) -> list[str]:
    sets = [
        "data.embedded.n_speakers=3", "data.test_speakers=0.34", "data.embedded.utterances_per_emotion=2",
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32",
        f"features.cache_dir={tmp / 'cache'}", "model.name=cnn_iot", "model.width=4", "train.epochs=2",
        f"federation.num_clients={CLIENTS}", "federation.ipc=1", "distill.dm_iterations=3", "distill.eval_epochs=3",
        "federation.node_wait_s=30", "privacy.enabled=true", "privacy.reproducible_noise=true",
        "privacy.share=[synthetic, dp_fedavg]", "federation.baselines=[dp_fedavg]",
        f"federation.fedavg_rounds={ROUNDS}", *extra,
    ]  # fmt: skip
    args = [sys.executable, "-m", "fedsered.cli", "simulate", DEFAULT, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return args


def environment(tmp: Path) -> dict[str, str]:
    (tmp / "ray").mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(tmp / "ray"), "MPLCONFIGDIR": str(tmp / "mpl"),
            "NUMBA_CACHE_DIR": str(tmp / "numba")}  # fmt: skip


class Run:
    """One CLI run in its own session; ``track`` remembers every descendant seen, ``stop`` kills them by PID."""

    def __init__(self, tmp: Path, out: Path, *extra: str) -> None:
        self.log = (tmp / f"{out.name}-{len(list(tmp.glob('*.log')))}.log").open("w")
        self.proc = subprocess.Popen(command(tmp, out, *extra), cwd=ROOT, env=environment(tmp), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.seen: dict[int, psutil.Process] = {}
        self.path = Path(self.log.name)

    def track(self) -> list[psutil.Process]:
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def wait_for(self, ready: Any, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the run ended early:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output()[-3000:]}"
            self.track()
            time.sleep(0.1)
        self.track()

    def output(self) -> str:
        self.log.flush()
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        self.track()  # whatever it runs now, too
        for p in [psutil.Process(self.proc.pid) if self.proc.poll() is None else None, *self.seen.values()]:
            if p is not None and alive(p):
                with_suppress(p.kill)
        self.proc.wait(timeout=30)
        psutil.wait_procs(list(self.seen.values()), timeout=10)
        self.log.close()


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def with_suppress(f: Any) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        f()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp folder with a path short enough for Ray's sockets (``simulations.runner.RAY_SOCKET_BUDGET``), so that
    each run's Ray temp dir is ``<out>/ray`` inside it — also after a SIGKILL, which leaves it behind — and removed
    with it."""
    tmp = Path(tempfile.mkdtemp(prefix="fsr-t-", dir="/tmp"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def run_of(short_tmp: Path) -> Iterator[Any]:
    runs: list[Run] = []

    def start(out: Path, *extra: str) -> Run:
        runs.append(Run(short_tmp, out, *extra))
        return runs[-1]

    yield start
    for r in runs:
        r.stop()


def finished(run: Run) -> subprocess.CompletedProcess[str]:
    rc = run.proc.wait(timeout=300)
    run.track()
    return subprocess.CompletedProcess(run.proc.args, rc, run.output(), "")


def deterministic(obj: Any) -> Any:
    """``obj`` without timings, memory, the runtime section and the Ray node that ran each client (another Ray
    session, another node id)."""
    if isinstance(obj, dict):
        return {k: deterministic(v) for k, v in obj.items()
                if k not in ("runtime", "node") and not k.endswith(SECRET_FREE)}  # fmt: skip
    if isinstance(obj, list):
        return [deterministic(v) for v in obj]
    return obj


def filed(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every filed reply and ledger of the run's clients: path -> (mtime_ns, bytes)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted((out / "clients").rglob("*")) if p.is_file()}  # fmt: skip


def ledger_tasks(out: Path, pipeline: str) -> dict[str, list[str]]:
    """Per client, the task key of every release in its ledger of ``pipeline``."""
    paths = {f"client-{k}": out / "clients" / f"client-{k}" / f"{pipeline}.json" for k in range(CLIENTS)}
    return {cid: [e["task"] for e in json.loads(p.read_text())["releases"]] for cid, p in paths.items()}


def replies_of(out: Path, pipeline: str) -> list[Path]:
    """The clients' filed replies of ``pipeline``."""
    return [p for p in (out / "clients").glob("*/replies/*.json") if json.loads(p.read_text())["task"]["pipeline"]
            == pipeline]  # fmt: skip


def interrupt(run: Run, sig: signal.Signals, *, group: bool = False) -> None:
    """Send ``sig`` to the driver (``group``: to its whole process group, as Ctrl-C in a terminal does); it must end
    within 10 s, say one line, leave no process behind."""
    procs = run.track()
    assert any("raylet" in " ".join(p.cmdline()) for p in procs if alive(p))
    start = time.monotonic()
    if group:
        os.killpg(run.proc.pid, sig)  # the run is the leader of its own session and group
    else:
        run.proc.send_signal(sig)
    try:
        rc = run.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sig.name} did not stop the run within 20 s:\n{run.output()[-3000:]}")
    took = time.monotonic() - start
    assert rc == 128 + sig and took < 10, (rc, took, run.output()[-2000:])
    last = run.output().strip().splitlines()[-1]
    assert f"interrupted by {sig.name}" in last and "resume" in last, last
    left = [p for p in procs if alive(p)]
    assert not left, [(p.pid, p.cmdline()) for p in left]


@pytest.mark.slow
def test_interrupted_thrice_then_resumed_equals_the_uninterrupted_run(short_tmp: Path, run_of: Any) -> None:
    """Ctrl-C (SIGINT to the process group) once the nodes connected, SIGTERM to the driver once synthetic sharing is
    filed, SIGKILL half-way through DP-FedAvg, then the same command once more: the uninterrupted run's results, each
    client's releases made once."""
    out = short_tmp / "run"
    reference = run_of(short_tmp / "ref")  # uninterrupted, alongside the chain (it waits on start-ups mostly)
    first = run_of(out)
    first.wait_for(lambda: "nodes connected" in first.output())  # Ray up, the clients' actors starting
    interrupt(first, signal.SIGINT, group=True)  # Ctrl-C
    second = run_of(out)
    second.wait_for(lambda: (out / "pipelines" / "synthetic.json").exists())
    interrupt(second, signal.SIGTERM)
    assert not (out / "results.json").exists() and (out / "simulate-run.json").exists()
    synthetic_filed = (out / "pipelines" / "synthetic.json").stat().st_mtime_ns
    started = len(replies_of(out, "dp_fedavg"))
    third = run_of(out)
    third.wait_for(lambda: len(replies_of(out, "dp_fedavg")) > started)  # DP-FedAvg under way, not finished
    third.proc.send_signal(signal.SIGKILL)
    third.stop()  # ... and every Ray process it had started, by PID (a SIGKILLed driver leaves them orphaned)
    assert not (out / "results.json").exists()
    before = filed(out)
    assert 0 < len(replies_of(out, "dp_fedavg")) < CLIENTS * ROUNDS, "the kill came too late to test a resume"

    resumed = finished(run_of(out))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "synthetic (resumed)" in resumed.stdout
    done = finished(reference)
    assert done.returncode == 0, done.stdout[-3000:]

    got = json.loads((out / "results.json").read_text())
    want = json.loads((short_tmp / "ref" / "results.json").read_text())
    assert deterministic(got) == deterministic(want)
    # nothing finished was computed again: the synthetic pipeline was taken as filed, and every reply filed before
    # the kill is still the same file, untouched
    assert (out / "pipelines" / "synthetic.json").stat().st_mtime_ns == synthetic_filed
    after = filed(out)
    for path, (mtime, data) in before.items():
        if "/replies/" in path:
            assert after[path] == (mtime, data), path
    # one release per client and round, none twice: the same ledgers as the uninterrupted run's
    for pipeline, n in (("synthetic", 1), ("dp_fedavg", ROUNDS)):
        tasks = ledger_tasks(out, pipeline)
        assert all(len(t) == n and len(set(t)) == n for t in tasks.values()), tasks
        assert tasks == ledger_tasks(short_tmp / "ref", pipeline)

    changed = subprocess.run(command(short_tmp, out, "train.epochs=3"), cwd=ROOT, env=environment(short_tmp),
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = changed.stderr.strip().splitlines()
    assert changed.returncode == 2 and len(lines) == 1 and "holds a simulation of another configuration" in lines[0]


HUNG_DRIVER = """
import signal, subprocess, sys, threading, time
from pathlib import Path
from simulations.runner import stop_on_signals
child = subprocess.Popen(["sleep", "120"])
hanging = threading.Thread(target=time.sleep, args=(120,))  # not a daemon, like Flower's ServerApp thread
hanging.start()
with stop_on_signals(set(), out=Path(sys.argv[1])):
    print(child.pid, flush=True)
    if sys.argv[2] == "join":  # the main thread waits in join, as in Flower's engine, and the kernel gives the
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # signal to another thread
        hanging.join()
    time.sleep(120)
"""


@pytest.mark.parametrize("where", ["main", "join"], ids=["main-thread", "other-thread"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_driver_alone_ends_it_despite_a_hanging_thread(
    tmp_path: Path, sig: signal.Signals, where: str
) -> None:
    """The driver's handler without Ray: a non-daemon thread that never ends (a KeyboardInterrupt alone would leave
    the interpreter waiting for it) and a child process; the signal ends both within seconds, with one line — also
    when another thread takes it while the main thread waits in ``join`` (there a Python handler alone would wait
    for the join)."""
    args = [sys.executable, "-c", HUNG_DRIVER, str(tmp_path), where]
    proc = subprocess.Popen(args, cwd=ROOT, env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    child = None
    try:
        assert proc.stdout is not None
        child = psutil.Process(int(proc.stdout.readline()))
        time.sleep(0.3)  # in its join
        start = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=15)
        assert rc == 128 + sig and time.monotonic() - start < 10
        assert not alive(child)
        err = proc.stderr.read().strip().splitlines() if proc.stderr else []
        assert len(err) == 1 and f"interrupted by {sig.name}" in err[0] and str(tmp_path) in err[0]
    finally:
        for p in (child, psutil.Process(proc.pid) if proc.poll() is None else None):
            if p is not None and alive(p):
                with_suppress(p.kill)
        proc.wait(timeout=10)


def test_a_folder_holding_clients_of_no_resumable_run_is_refused_and_left_alone(tmp_path: Path) -> None:
    """``simulate`` never deletes what it did not write: ``DIR/clients/`` without ``DIR/simulate-run.json`` (an
    older run, someone else's files) is refused before Ray starts, one line, every file left as it was."""
    from fedsered.config import load_config
    from fedsered.errors import ConfigError
    from fedsered.experiments.simulate import simulate_run

    out = tmp_path / "run"
    mine = out / "clients" / "client-0" / "synthetic.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("{}")
    cfg = load_config(DEFAULT, [f"features.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"holds clients/ but no simulate-run.json: not a resumable") as info:
        simulate_run(cfg, out)
    assert "\n" not in str(info.value)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "clients", "clients/client-0", "clients/client-0/synthetic.json"]  # fmt: skip
    assert mine.read_text() == "{}"
