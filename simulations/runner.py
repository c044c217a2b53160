"""Run the Flower App on Flower's simulation engine (Ray backend) from Python: what ``fedsered simulate`` calls.

Flower's public Python entry point, ``flwr.simulation.run_simulation``, is deprecated in favour of ``flwr run``
(which needs a SuperLink daemon) and cannot pass a run config to the ServerApp. Both call the engine function
``flwr.simulation.run_simulation._run_simulation``; we call it directly, pinned to flwr 1.42.0 (pyproject), with a
``Context`` carrying the run config. Ray settings come from the ``federation`` section: CPUs per virtual client,
Ray's CPU count and object-store cap, or ``ray_address`` to join a cluster started with ``ray start --head`` (then
this process connects first, ``join_cluster``, so that the clients' own settings reach actors on every node, and
disconnects afterwards; each client's record names the Ray node that ran it).
Before Ray starts, the clients' partitions are filed under ``DIR/client-data`` (``fedsered.data.client_files``):
each virtual client reads only its own, and no actor builds the corpus; the server's task messages are sent a few per
actor at a time (``in-flight`` in the run config, ``simulations.grid.exchange``).
Ray's temp dir goes under the run folder (or a short folder in the system temp dir when the run folder's path is too
long for Ray's Unix sockets); telemetry and usage stats are off; Ray processes this run started are gone afterwards.
SIGINT or SIGTERM during the simulation stops it at once (``stop_on_signals``): one line on stderr, Ray's processes
stopped by PID, exit status 128 + the signal's number, without waiting for Flower's threads (which otherwise hang the
driver on SIGINT, and on SIGTERM Ray's own handler aborts it); every file of the run is written atomically, so the
run folder is left resumable.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import yaml
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from fedsered.config import Config
from fedsered.data.client_files import write_client_files
from fedsered.io import atomic_write_text
from fedsered.processes import forget, record_children, stop_recorded

RAY_SOCKET_BUDGET = 40
"""Longest Ray temp-dir path used as is: Ray appends ~70 characters of session and socket names, and a Unix
socket path must stay under 108 bytes."""

QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_USAGE_STATS_ENABLED": "0",
             "RAY_DEDUP_LOGS": "0", "RAY_prestart_worker_first_driver": "0"}  # fmt: skip
"""Set while Ray runs. ``RAY_prestart_worker_first_driver=0`` (a Ray system setting read from the environment):
without it the raylet starts one idle task worker per CPU for the first driver, which a simulation never uses
(Flower runs its clients in actors, each in a worker of its own) — measured: 80 MB and ~0.4 CPU s each."""


def backend_config(cfg: Config) -> dict[str, Any]:
    """Flower's Ray backend settings from the ``federation`` section."""
    fed = cfg.federation
    init_args: dict[str, Any]
    if fed.ray_address:
        init_args = {"address": fed.ray_address}
    else:
        init_args = {"object_store_memory": fed.object_store_mb * 2**20}
        if fed.ray_num_cpus is not None:
            init_args["num_cpus"] = fed.ray_num_cpus
    return {"client_resources": {"num_cpus": fed.cpus_per_client, "num_gpus": 0.0}, "init_args": init_args}


IN_FLIGHT_PER_ACTOR = 4
"""Task messages outstanding per Ray actor (``simulations.grid.exchange``): enough that an actor never waits for the
engine's 0.1 s polling between two short tasks, few enough that the engine's per-poll scan of outstanding messages
stays small."""


def actor_count(cfg: Config) -> int:
    """How many virtual clients run at once: the Ray CPUs (this machine's, ``federation.ray_num_cpus``, or — after
    ``join_cluster`` — the cluster's) over ``federation.cpus_per_client``."""
    fed = cfg.federation
    if fed.ray_address:
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1.0))
    else:
        cpus = float(fed.ray_num_cpus or os.cpu_count() or 1)
    return max(1, int(cpus // fed.cpus_per_client))


def join_cluster(address: str, env: dict[str, str], *, verbose: bool = False) -> None:
    """Connect this process to the Ray cluster at ``address`` before Flower's backend would: with ``env`` (the
    virtual clients' ledger folder and policy file) in the runtime environment of every worker on every node — a
    worker started by another node's raylet does not inherit this process's environment — beside the ``PYTHONPATH``
    Flower's own ``ray.init`` gives them (this process's ``sys.path``; pinned flwr 1.42.0). Flower then finds Ray
    initialised, uses it, and ``ray.shutdown()`` at its end only disconnects."""
    import ray

    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    ray.init(
        address=address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath, **env}}, log_to_driver=True,
        logging_level=logging.INFO if verbose else logging.WARNING,  # Flower's defaults for its own ray.init
    )  # fmt: skip


@contextmanager
def ray_environment(out: Path, extra: dict[str, str] | None = None) -> Iterator[Path]:
    """Telemetry off, ``RAY_TMPDIR`` under ``out`` (or a short temp folder, removed afterwards) and ``extra`` set
    while inside (Ray's processes inherit them)."""
    wanted = (out / "ray").resolve()
    short = None
    if len(str(wanted)) > RAY_SOCKET_BUDGET:
        short = Path(tempfile.mkdtemp(prefix="fsr-ray-"))
    tmp = short or wanted
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**QUIET_ENV, "RAY_TMPDIR": str(tmp), **(extra or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield tmp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


def progress_only(record: logging.LogRecord) -> bool:
    """A logging filter for Flower's console handler: fedsered's progress lines and warnings pass, Flower's INFO
    lines do not (``fedsered simulate -v`` keeps them all)."""
    return record.levelno >= logging.WARNING or bool(getattr(record, "fedsered_progress", False))


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_leftovers(before: set[int], *, grace: float = 10.0, term_wait: float = 5.0) -> list[int]:
    """Terminate (then kill) child processes of this process that did not exist in ``before``; returns their PIDs.

    ``grace``: seconds they get to exit by themselves first; ``term_wait``: seconds between SIGTERM and SIGKILL."""
    me = psutil.Process()
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    deadline = time.monotonic() + grace
    while new and time.monotonic() < deadline:
        new = [p for p in new if _alive(p)]
        if new:
            time.sleep(0.2)
    for p in new:
        with suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(new, timeout=term_wait)
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)  # gone, not merely signalled, when this returns
    return [p.pid for p in new]


class _Recorder:
    """While inside, a daemon thread records this process's children (Ray's processes, once Flower started Ray
    inside ``_run_simulation``) in the run folder every few seconds (``fedsered.processes``), so that a run after a
    SIGKILL can stop what this one leaves."""

    def __init__(self, out: Path, before: set[int], interval: float = 3.0) -> None:
        self.out, self.before, self.interval = out, before, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fedsered-ray-recorder")

    def _run(self) -> None:
        seen = 0
        while not self._stop.wait(self.interval):
            n = len(psutil.Process().children(recursive=True))
            if n != seen:
                with suppress(OSError):
                    record_children(self.out, exclude=self.before)
                seen = n

    def __enter__(self) -> _Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(before: set[int], *, out: Path, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM print one line, stop the child processes not in ``before`` (Ray's) by PID,
    run ``cleanup`` and end the process with status 128 + signal number, at once.

    Flower's ServerApp thread is not a daemon (after a ``KeyboardInterrupt`` the interpreter waits for it: the driver
    hangs), and ``ray.init`` replaces the SIGTERM handler twice — in Python (``set_sigterm_handler``: ``SystemExit``
    in the middle of the run) and in its C++ core (absl's failure handler: abort, exit 134) —, both switched off for
    the driver meanwhile (pinned ray 2.55.1 via flwr). The handler does not unwind: it ends the process with
    ``os._exit``.

    A Python handler runs in the main thread only, and only once that thread runs Python again: a signal the kernel
    delivers to another thread (any of Flower's or Ray's) while the main thread waits in Flower's ``join`` would wait
    for the whole run. So the signal also reaches a watcher thread through ``signal.set_wakeup_fd`` (written by
    CPython's C-level handler in whichever thread took the signal), and whichever of the two comes first stops the
    run. Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils

    stopping = threading.Lock()

    def stop(signum: int, frame: object = None) -> None:
        if not stopping.acquire(blocking=False):  # the other path is stopping the run: it ends the process
            while True:
                time.sleep(1.0)
        line = (f"fedsered simulate: interrupted by {signal.Signals(signum).name}; Ray stopped; run the same command "
                f"again to resume {out}\n")  # fmt: skip
        err = None
        with suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
            # what Flower's and Ray's threads print while their processes go away is noise: silence it, say one line
            err, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
        # SIGTERM, then SIGKILL after a moment: Ray's state is disposable, every file of the run is written atomically
        stop_leftovers(before, grace=0.0, term_wait=0.5)
        if cleanup is not None:
            cleanup()
        with suppress(OSError):
            os.write(2 if err is None else err, line.encode())
        os._exit(128 + signum)

    def watch(wakeup: socket.socket) -> None:
        while data := wakeup.recv(64):
            for signum in data:
                if signum in STOP_SIGNALS:
                    stop(signum)
                elif signum == 0:  # the sentinel: leaving
                    return

    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    set_sigterm_handler = ray_utils.set_sigterm_handler
    no_failure_handler = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    ray_utils.set_sigterm_handler = lambda handler: None
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True  # the driver's C++ core would replace ours (and abort)
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # set_wakeup_fd's requirement: the C handler must never block
    watcher = threading.Thread(target=watch, args=(reader,), daemon=True, name="fedsered-signal-watcher")
    watcher.start()
    wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(wakeup)
        with suppress(OSError):
            writer.send(b"\0")
        watcher.join(timeout=5)
        reader.close()
        writer.close()
        ray_utils.set_sigterm_handler = set_sigterm_handler
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = no_failure_handler


def simulate(
    cfg: Config,
    *,
    config_path: Path,
    out: Path,
    client_app: ClientApp | None = None,
    server_app: ServerApp | None = None,
    num_supernodes: int | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the ServerApp and ``num_supernodes`` virtual ClientApps (default ``federation.num_clients``) on Ray.

    Args:
        cfg: the run config (already written to ``config_path``, which the ServerApp reads).
        config_path: the resolved config file.
        out: the run folder (``results.json``, shared sets, Ray's temp dir).
        client_app: the ClientApp (default ``simulations.client_app.app``; tests pass one with fault mods).
        server_app: the ServerApp (default ``simulations.server_app.app``).
        num_supernodes: virtual nodes to start (tests start fewer than expected).
        verbose: Flower's own INFO lines and debug logging (by default only fedsered's progress lines and warnings
            reach the console).

    Returns:
        Runtime facts: ``wall_seconds``, ``ray_tmpdir``, ``leftover_pids`` (Ray processes that had to be stopped),
        ``ledger_dir`` and ``fresh_ledgers`` (whether the clients are the run folder's own, ``DIR/clients``),
        ``client_data_seconds`` / ``client_data_cpu_seconds`` (filing the clients' partitions).
    """
    from simulations.client_app import app as default_client
    from simulations.server_app import app as default_server

    out.mkdir(parents=True, exist_ok=True)
    # the run folder's own clients (their ledgers and filed replies) unless federation.ledger_dir names others; never
    # deleted: a re-run of the same command continues them (fedsered.experiments.simulate checks it is the same run)
    fresh = cfg.federation.ledger_dir is None
    ledger_dir = (out / "clients") if fresh else Path(str(cfg.federation.ledger_dir))
    stop_recorded(out)  # Ray processes a SIGKILLed simulation of this folder left behind
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    recorder = _Recorder(out, before)
    flwr_logger = logging.getLogger("flwr")
    propagate = flwr_logger.propagate
    flwr_logger.propagate = False  # Flower has its own console handler; the root logger would print it twice
    quiet = [] if verbose else list(flwr_logger.handlers)
    for handler in quiet:
        handler.addFilter(progress_only)
    start = time.perf_counter()
    # the virtual clients' own ledger folders, privacy policy and data reach them outside the server's messages
    policy = atomic_write_text(out / "policy.yaml", yaml.safe_dump({"privacy": cfg.privacy.model_dump(mode="json")}))
    prep, prep_cpu = time.perf_counter(), time.thread_time()
    files = write_client_files(cfg, out / "client-data")  # each virtual client then reads its own file
    prep, prep_cpu = time.perf_counter() - prep, time.thread_time() - prep_cpu
    own = {"FEDSERED_LEDGER_DIR": str(ledger_dir.resolve()), "FEDSERED_POLICY_FILE": str(policy.resolve()),
           "FEDSERED_CLIENT_DATA": str(files.resolve())}  # fmt: skip
    with ray_environment(out, own) as tmp:
        short = None if tmp == (out / "ray").resolve() else tmp  # a temp folder of ours, removed on a signal too
        cleanup = None if short is None else partial(shutil.rmtree, short, ignore_errors=True)
        try:
            with stop_on_signals(before, out=out, cleanup=cleanup), recorder:
                if cfg.federation.ray_address:
                    join_cluster(cfg.federation.ray_address, own, verbose=verbose)
                context = Context(
                    run_id=0, node_id=0, node_config={}, state=RecordDict(),
                    run_config={"config-path": str(config_path), "out-dir": str(out),
                                "in-flight": IN_FLIGHT_PER_ACTOR * actor_count(cfg)},
                )  # fmt: skip
                _run_simulation(
                    num_supernodes=num_supernodes or cfg.federation.num_clients,
                    exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
                    client_app=client_app or default_client,
                    server_app=server_app or default_server,
                    backend_name="ray",
                    backend_config=backend_config(cfg),
                    server_app_context=context,
                    verbose_logging=verbose,
                )
        finally:
            if cfg.federation.ray_address:
                import ray

                ray.shutdown()  # disconnects (Flower did already unless the run failed before its end)
            flwr_logger.propagate = propagate
            for handler in quiet:
                handler.removeFilter(progress_only)
            leftovers = stop_leftovers(before)
            forget(out)
    return {"wall_seconds": time.perf_counter() - start, "ray_tmpdir": str(tmp), "leftover_pids": leftovers,
            "ledger_dir": str(ledger_dir), "fresh_ledgers": fresh, "client_data_seconds": prep,
            "client_data_cpu_seconds": prep_cpu}  # fmt: skip
