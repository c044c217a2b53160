"""Benchmark: how the Flower + Ray simulation scales with the number of simulated clients (8, 64, 256, 1024).

Each size runs ``fedsered simulate``'s engine (``simulations.runner.simulate``: Flower's simulation engine on Ray, 1
CPU per virtual client, Ray capped at the machine's CPUs) with two kinds of client work (``--work``):

- ``light``: the framework is what is measured — 32 mels × 38 frames, ``cnn_iot`` at width 4, dm with 2 updates at
  IPC 1, global training 5 epochs (~5–15 ms of CPU per client);
- ``default``: the client work of ``configs/default.yaml`` (cnn6 at width 16, 64 mels × 3 s, dm at IPC 3, the
  default distillation settings).

Both on the embedded corpus at 24 speakers × 120 utterances (clips of 1.0–1.2 s for ``light``), split **iid** over
the clients (a speaker partition cannot give 1024 clients), no baselines. Printed per run, in CPU seconds of the
whole process tree (this process from the simulation's start, Ray's daemons, the actors; sampled every 0.2 s; the
sampler's own CPU left out), which a machine shared with other jobs does not distort the way it distorts wall
seconds:

- client CPU: Σ over clients of the CPU inside the client's work (loading its file, distilling);
- server CPU: the server's data build, aggregation, global training and scoring (its thread);
- data CPU: filing the clients' partitions before Ray starts (``fedsered.data.client_files``; the experimenter's
  work in a simulation, a device's own on real hardware);
- overhead = tree CPU − client − server − data: Flower and Ray (daemons, actors' start-up, messages), and its share
  of the tree's CPU; the Ray daemons' part and the actors' part (actor CPU − client CPU) on their own;
- wall seconds and wall per client; peak RSS of the tree (summed over processes: shared library pages counted once
  per process) and peak PSS (each shared page split between its processes: what the tree really holds), and the
  largest actor's peak RSS and USS (its private memory).

With ``--faulty SHARE`` (e.g. 0.25) every ``1/SHARE``-th client misbehaves, cycling through every kind of
``simulations.faults`` (raising, hanging past the round timeout, NaN, wrong shape, oversized, wrong client id,
malformed privacy object; one hanging client, see ``fault_plan``); the round timeout is ``--round-timeout`` seconds and
the hanging client sleeps 60 s past it. Printed besides: the clients per status (ok / failed / rejected / timeout) and
the simulation's wall time against the timeout (a hanging client must not hold the round past it).

Run: ``.venv/bin/python benchmarks/scaling.py`` (``--clients 8 64 --work light`` for fewer; ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from scaling_settings import COMMON, WORK

from fedsered.config import Config, load_config
from fedsered.io import atomic_write_json
from simulations.client_app import build_client_app
from simulations.faults import FAULTS, fault_mod
from simulations.runner import simulate

ROOT = Path(__file__).resolve().parents[1]

LIGHT = [*COMMON, *WORK["light"]]
"""The light setting (also used by ``--faulty``)."""


def kind(p: psutil.Process) -> str:
    """Which part of the tree a process is: ``driver`` (this one), ``actor`` (a Flower ClientApp actor) or ``ray``
    (Ray's daemons and helper workers)."""
    if p.pid == os.getpid():
        return "driver"
    try:
        return "actor" if "ClientAppActor" in " ".join(p.cmdline()) else "ray"
    except psutil.Error:
        return "ray"


class TreeSampler:
    """CPU seconds per part of the process tree (from entering; a process that existed before counts only what it
    used since; the sampler's own CPU is not counted), peak RSS (every 0.2 s) and PSS (every 2 s) summed over the
    tree, and the largest actor's peak RSS and USS, sampled in a background thread."""

    def __init__(self, interval: float = 0.2, full_every: int = 10) -> None:
        self.interval, self.full_every = interval, full_every
        self.peak_rss = self.peak_pss = self.actor_rss = self.actor_uss = 0
        self.cpu: dict[str, float] = {}
        self.own_cpu = 0.0  # the sampler's own CPU (in this process): taken off the driver's
        self._stop = threading.Event()
        self._seen: dict[int, tuple[str, float]] = {}
        self._base: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree() -> list[psutil.Process]:
        me = psutil.Process()
        return [me, *me.children(recursive=True)]

    def _sample(self, full: bool) -> None:
        rss = pss = 0
        for p in self._tree():
            try:
                t = p.cpu_times()
                # rss, pss and uss (Linux: /proc/PID/smaps_rollup, ~6 ms of CPU per process: not every sample)
                mem = p.memory_full_info() if full else p.memory_info()
                # a worker takes the actor's name once its actor starts: only "actor" is final
                k = "actor" if self._seen.get(p.pid, ("",))[0] == "actor" else kind(p)
            except psutil.Error:
                continue
            self._seen[p.pid] = (k, t.user + t.system)
            rss += mem.rss
            if k == "actor":
                self.actor_rss = max(self.actor_rss, mem.rss)
            if full:
                pss += getattr(mem, "pss", mem.rss)
                if k == "actor":
                    self.actor_uss = max(self.actor_uss, getattr(mem, "uss", mem.rss))
        self.peak_rss = max(self.peak_rss, rss)
        if full:
            self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        start = time.thread_time()
        i = 0
        while not self._stop.is_set():
            self._sample(full=i % self.full_every == 0)
            i += 1
            self.own_cpu = time.thread_time() - start
            time.sleep(self.interval)

    def __enter__(self) -> TreeSampler:
        for p in self._tree():
            t = p.cpu_times()
            self._base[p.pid] = t.user + t.system
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(full=False)  # the final CPU times (of this thread: not the sampler's own)
        for pid, (k, c) in self._seen.items():
            self.cpu[k] = self.cpu.get(k, 0.0) + c - self._base.get(pid, 0.0)
        self.cpu["driver"] -= self.own_cpu


def fault_plan(n: int, share: float) -> dict[int, str]:
    """Every ``round(1/share)``-th partition gets a fault, the kinds in turn — one ``sleep`` (hanging) client only: in
    simulation a hanging client holds one of the few Ray actors until it wakes, so more hanging clients than actors
    would stall the healthy ones behind them (on real devices each hangs alone)."""
    step = max(1, round(1 / share))
    others = [f for f in FAULTS if f != "sleep"]
    return {k: "sleep" if i == 1 else others[i % len(others)] for i, k in enumerate(range(0, n, step))}


def measure(n: int, *, work: str, out: Path, cache: Path, faulty: float = 0.0, timeout: float = 60.0) -> dict[str, Any]:
    extra = [f"federation.round_timeout_s={timeout}"] if faulty else []
    overrides = [*COMMON, *WORK[work], f"features.cache_dir={cache}", f"federation.num_clients={n}", *extra]
    cfg: Config = load_config(ROOT / "configs" / "default.yaml", overrides)
    run = out / (f"{work}-{n}-faulty" if faulty else f"{work}-{n}")
    shutil.rmtree(run, ignore_errors=True)  # a fresh run: a resumed one would take the filed replies
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    faults = fault_plan(n, faulty) if faulty else {}
    app = build_client_app(mods=[fault_mod(faults, sleep_s=timeout + 60.0)]) if faults else None
    with TreeSampler() as tree:
        runtime = simulate(cfg, config_path=run / "config.yaml", out=run, client_app=app)
    res = json.loads((run / "results.json").read_text())
    wall = runtime["wall_seconds"]
    ok = [c for c in res["clients"] if c["status"] == "ok"]
    client_cpu = sum((c["cpu_seconds"] or 0.0) + (c.get("setup_cpu_seconds") or 0.0) for c in ok)
    server_cpu = res["phases"].get("data_cpu_seconds", 0.0)
    server_cpu += sum(r.get("server_cpu_seconds", 0.0) for r in res["rounds"])
    data_cpu = runtime["client_data_cpu_seconds"]
    tree_cpu = sum(tree.cpu.values())
    overhead = tree_cpu - client_cpu - server_cpu - data_cpu
    statuses = {s: sum(c["status"] == s for c in res["clients"]) for s in sorted({c["status"] for c in res["clients"]})}
    mb = 2**20
    return {
        "clients": n, "work": work, "ok": len(ok), "wall_s": wall, "wall_per_client_ms": 1000 * wall / n,
        "tree_cpu_s": tree_cpu, "client_cpu_s": client_cpu, "server_cpu_s": server_cpu, "data_cpu_s": data_cpu,
        "overhead_cpu_s": overhead, "overhead_share": overhead / tree_cpu,
        "ray_daemons_cpu_s": tree.cpu.get("ray", 0.0),
        "actors_beyond_work_cpu_s": tree.cpu.get("actor", 0.0) - client_cpu,
        "driver_cpu_s": tree.cpu.get("driver", 0.0), "overhead_per_client_ms": 1000 * overhead / n,
        "peak_tree_rss_mb": tree.peak_rss / mb, "peak_tree_pss_mb": tree.peak_pss / mb,
        "actor_rss_mb": tree.actor_rss / mb, "actor_uss_mb": tree.actor_uss / mb, "global_uar": res["global_uar"],
        "leftover_pids": runtime["leftover_pids"], "faulty": len(faults),
        "round_timeout_s": cfg.federation.round_timeout_s, "statuses": statuses,
    }  # fmt: skip


COLUMNS = [  # (key, header, format)
    ("work", "work", "{:>7}"), ("clients", "clients", "{:>7}"), ("wall_s", "wall s", "{:>7.1f}"),
    ("tree_cpu_s", "tree CPU", "{:>8.1f}"), ("client_cpu_s", "client", "{:>7.1f}"),
    ("server_cpu_s", "server", "{:>7.1f}"), ("data_cpu_s", "data", "{:>6.1f}"),
    ("overhead_cpu_s", "overhead", "{:>8.1f}"), ("overhead_share", "share", "{:>6.0%}"),
    ("ray_daemons_cpu_s", "Ray daemons", "{:>11.1f}"), ("actors_beyond_work_cpu_s", "actors-work", "{:>11.1f}"),
    ("overhead_per_client_ms", "ms/client", "{:>9.0f}"), ("peak_tree_rss_mb", "tree RSS MB", "{:>11.0f}"),
    ("peak_tree_pss_mb", "tree PSS MB", "{:>11.0f}"), ("actor_rss_mb", "actor RSS", "{:>9.0f}"),
    ("actor_uss_mb", "actor USS", "{:>9.0f}"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64, 256, 1024])
    parser.add_argument("--work", nargs="+", choices=sorted(WORK), default=["light", "default"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scaling")
    parser.add_argument("--faulty", type=float, default=0.0, help="share of misbehaving clients (e.g. 0.25)")
    parser.add_argument("--round-timeout", type=float, default=60.0, help="federation.round_timeout_s with --faulty")
    args = parser.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    # the server's work at one torch thread (as each actor's): its CPU is then all in the thread it measures itself
    # (``thread_time``); the feature pipeline and scoring otherwise add intra-op threads that would count as overhead
    torch.set_num_threads(1)
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for work in args.work:
        for n in args.clients:
            row = measure(n, work=work, out=args.out, cache=args.out / "cache", faulty=args.faulty,
                          timeout=args.round_timeout)  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(args.out / "scaling.json", rows)
    print()
    print(" ".join(fmt.replace(".1f", "").replace(".0f", "").replace(".0%", "").format(h) for _, h, fmt in COLUMNS))
    for r in rows:
        print(" ".join(fmt.format(r[k]) for k, _, fmt in COLUMNS))
    for r in rows:
        if r["faulty"]:
            print(
                f"{r['clients']} clients, {r['faulty']} faulty: {r['statuses']}; wall {r['wall_s']:.0f} s with a "
                f"round timeout of {r['round_timeout_s']:.0f} s; peak tree RSS {r['peak_tree_rss_mb']:.0f} MB"
            )
    for work in args.work:
        mine = [r for r in rows if r["work"] == work]
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            print(f"{work}: {b['clients'] / a['clients']:.0f}x the clients: {b['wall_s'] / a['wall_s']:.2f}x the wall "
                  f"time, {b['overhead_cpu_s'] / a['overhead_cpu_s']:.2f}x the overhead CPU; marginal overhead "
                  f"{1000 * (b['overhead_cpu_s'] - a['overhead_cpu_s']) / (b['clients'] - a['clients']):.1f} ms per "
                  "extra client")  # fmt: skip


if __name__ == "__main__":
    main()
