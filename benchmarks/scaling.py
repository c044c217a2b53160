"""Benchmark: how the Flower + Ray simulation scales with the number of simulated clients (8, 64, 256 by default).

Each size runs ``fedsered simulate``'s engine (``simulations.runner.simulate``: Flower's simulation engine on Ray, 1
CPU per virtual client, Ray capped at the machine's CPUs) on a LIGHT setting, so that it measures the framework and
stays within minutes: the embedded corpus at 12 speakers × 60 utterances split iid over the clients (256 clients hold
~2 utterances each — a speaker partition cannot give 256 clients), 32 mels × 38 frames, the ``cnn_iot`` net at width
4, dm with 2 updates at IPC 1, global training 5 epochs, no baselines. Printed per size:

- wall seconds of the whole simulation (Ray start to shutdown) and wall per client;
- client compute: Σ over clients of the seconds inside the client's work (data load + distillation), divided by the
  actors that run in parallel (the ideal wall time of the client work);
- server compute: the server's data build plus aggregation, training and scoring;
- Flower/Ray overhead = wall − client compute (parallel) − server compute, and its share of the wall time;
- peak RSS of the process tree (this process, Ray's daemons, the actors; sampled every 0.2 s) and CPU seconds of
  the tree; the same overhead split in CPU seconds (tree CPU − clients' CPU for data load and distillation − the
  server thread's CPU for data, aggregation and training), which a machine shared with other jobs does not distort.

With ``--faulty SHARE`` (e.g. 0.25) every ``1/SHARE``-th client misbehaves, cycling through every kind of
``simulations.faults`` (raising, hanging past the round timeout, NaN, wrong shape, oversized, wrong client id,
malformed privacy object; one hanging client, see ``fault_plan``); the round timeout is ``--round-timeout`` seconds and
the hanging client sleeps 60 s past it.
Printed besides: the clients per status (ok / failed / rejected / timeout) and the simulation's wall time against
the timeout (a hanging client must not hold the round past it).

Run: ``.venv/bin/python benchmarks/scaling.py`` (``--clients 8 64`` for fewer sizes; ``--out DIR`` for the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from fedsered.config import Config, load_config
from simulations.client_app import build_client_app
from simulations.faults import FAULTS, fault_mod
from simulations.runner import simulate

ROOT = Path(__file__).resolve().parents[1]

LIGHT = [
    "data.embedded.n_speakers=12", "data.embedded.utterances_per_emotion=12", "data.embedded.duration_s=[1.0, 1.2]",
    "features.segment_s=1.2", "features.n_mels=32", "model.name=cnn_iot", "model.width=4",
    "federation.partition=iid", "federation.method=dm", "federation.ipc=1", "distill.dm_iterations=2",
    "distill.eval_epochs=5", "federation.baselines=[]", "federation.node_wait_s=300", "federation.round_timeout_s=1800",
]  # fmt: skip


class TreeSampler:
    """Peak RSS (sum over the process tree) and the tree's CPU seconds, sampled in a background thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak_rss, self.cpu = interval, 0, 0.0
        self._stop = threading.Event()
        self._seen: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                self._seen[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = sum(self._seen.values())


def fault_plan(n: int, share: float) -> dict[int, str]:
    """Every ``round(1/share)``-th partition gets a fault, the kinds in turn — one ``sleep`` (hanging) client only: in
    simulation a hanging client holds one of the few Ray actors until it wakes, so more hanging clients than actors
    would stall the healthy ones behind them (on real devices each hangs alone)."""
    step = max(1, round(1 / share))
    others = [f for f in FAULTS if f != "sleep"]
    return {k: "sleep" if i == 1 else others[i % len(others)] for i, k in enumerate(range(0, n, step))}


def measure(n: int, *, out: Path, cfg_base: list[str], faulty: float = 0.0, timeout: float = 60.0) -> dict[str, Any]:
    extra = [f"federation.round_timeout_s={timeout}"] if faulty else []
    cfg: Config = load_config(ROOT / "configs" / "default.yaml", [*cfg_base, f"federation.num_clients={n}", *extra])
    run = out / (f"clients-{n}-faulty" if faulty else f"clients-{n}")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    faults = fault_plan(n, faulty) if faulty else {}
    app = build_client_app(mods=[fault_mod(faults, sleep_s=timeout + 60.0)]) if faults else None
    with TreeSampler() as tree:
        runtime = simulate(cfg, config_path=run / "config.yaml", out=run, client_app=app)
    res = json.loads((run / "results.json").read_text())
    wall = runtime["wall_seconds"]
    ok = [c for c in res["clients"] if c["status"] == "ok"]
    actors = min(n, int((cfg.federation.ray_num_cpus or os.cpu_count() or 1) // cfg.federation.cpus_per_client))
    client_work = sum((c["seconds"] or 0.0) + (c["setup_seconds"] or 0.0) for c in ok)
    server = res["phases"]["data_seconds"] + sum(r.get("server_seconds", 0.0) for r in res["rounds"])
    overhead = wall - client_work / actors - server
    # the same split in CPU seconds (what a shared machine does not distort): the tree's CPU minus the clients' and
    # the server's own work
    client_cpu = sum((c["cpu_seconds"] or 0.0) + (c.get("setup_cpu_seconds") or 0.0) for c in ok)
    server_cpu = res["phases"].get("data_cpu_seconds", 0.0)
    server_cpu += sum(r.get("server_cpu_seconds", 0.0) for r in res["rounds"])
    overhead_cpu = tree.cpu - client_cpu - server_cpu
    statuses = {s: sum(c["status"] == s for c in res["clients"]) for s in sorted({c["status"] for c in res["clients"]})}
    return {
        "clients": n, "ok": len(ok), "wall_s": wall, "wall_per_client_ms": 1000 * wall / n,
        "client_work_s": client_work, "client_work_parallel_s": client_work / actors, "server_s": server,
        "overhead_s": overhead, "overhead_share": overhead / wall, "peak_tree_rss_mb": tree.peak_rss / 2**20,
        "tree_cpu_s": tree.cpu, "actors": actors, "global_uar": res["global_uar"],
        "leftover_pids": runtime["leftover_pids"], "client_cpu_s": client_cpu, "server_cpu_s": server_cpu,
        "overhead_cpu_s": overhead_cpu, "overhead_cpu_share": overhead_cpu / tree.cpu if tree.cpu else None,
        "cpu_per_client_s": tree.cpu / n, "faulty": len(faults), "round_timeout_s": cfg.federation.round_timeout_s,
        "statuses": statuses,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scaling")
    parser.add_argument("--faulty", type=float, default=0.0, help="share of misbehaving clients (e.g. 0.25)")
    parser.add_argument("--round-timeout", type=float, default=60.0, help="federation.round_timeout_s with --faulty")
    args = parser.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    base = [*LIGHT, f"features.cache_dir={args.out / 'cache'}"]
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for n in args.clients:
        row = measure(n, out=args.out, cfg_base=base, faulty=args.faulty, timeout=args.round_timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    head = f"{'clients':>7} {'wall s':>7} {'ms/client':>9} {'client work s':>13} {'server s':>8} {'overhead s':>10} " \
           f"{'share':>6} {'peak tree MB':>12} {'tree CPU s':>10} {'CPU overhead':>12} {'share':>6}"  # fmt: skip
    print(head)
    for r in rows:
        print(f"{r['clients']:>7} {r['wall_s']:>7.1f} {r['wall_per_client_ms']:>9.0f} {r['client_work_s']:>13.1f} "
              f"{r['server_s']:>8.1f} {r['overhead_s']:>10.1f} {r['overhead_share']:>6.0%} "
              f"{r['peak_tree_rss_mb']:>12.0f} {r['tree_cpu_s']:>10.1f} {r['overhead_cpu_s']:>12.1f} "
              f"{r['overhead_cpu_share']:>6.0%}")  # fmt: skip
    for r in rows:
        if r["faulty"]:
            print(f"{r['clients']} clients, {r['faulty']} faulty: {r['statuses']}; wall {r['wall_s']:.0f} s with a "
                  f"round timeout of {r['round_timeout_s']:.0f} s; peak tree RSS {r['peak_tree_rss_mb']:.0f} MB")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"\n{b['clients'] / a['clients']:.0f}x the clients: {b['wall_s'] / a['wall_s']:.2f}x the wall time, "
              f"{b['client_work_s'] / max(a['client_work_s'], 1e-9):.2f}x the client work")  # fmt: skip
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
