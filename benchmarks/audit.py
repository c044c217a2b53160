"""Benchmark: the audit's shadow stage — wall time, CPU time, and the Ray speed-up over one worker.

Runs the shadow runs of ``configs/audit.yaml`` (or ``--config``) three ways on the same plan:

1. ``sequential``: in this process, one run after the other (one torch thread per run);
2. ``ray x1``: Ray with one worker (one CPU);
3. ``ray xN``: Ray with ``--workers`` workers (default 2, this machine's cores).

For each it prints the wall seconds, the CPU seconds of the runs (each run measures its own process CPU time, so
Ray workers are counted), the CPU seconds of the driver, the load average before and after (the machine may be
shared: judge by CPU seconds), and the speed-up ``wall(ray x1) / wall(ray xN)``. It checks that the three ways give
the same signals. ``--shadows`` and ``--pipelines`` shrink the job (defaults: 4 runs of two pipelines, a few minutes).

Run: ``.venv/bin/python benchmarks/audit.py`` — or ``--shadows 16 --pipelines all --ways ray`` to time the whole
shipped config on Ray only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from privacy_audits.shadows import ShadowOutput, make_plan, run_shadows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/audit.yaml")
    parser.add_argument("--shadows", type=int, default=4)
    parser.add_argument("--pipelines", default="raw_sharing,synthetic_dm", help="comma list, or 'all' (the config's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ways", default="sequential,ray1,ray", help="comma list of sequential, ray1, ray")
    args = parser.parse_args()
    overrides = [f"audit.shadows={args.shadows}"]
    if args.pipelines != "all":
        overrides.append(f"audit.pipelines=[{args.pipelines}]")
    cfg = load_config(args.config, overrides)
    data = build_dataset(cfg)
    plan = make_plan(cfg, data)
    targets = list(cfg.audit.pipelines)
    n_runs = len(targets) * cfg.audit.shadows
    print(f"{n_runs} whole-pipeline runs ({', '.join(targets)} x {cfg.audit.shadows}); model {cfg.model.name}; "
          f"{len(plan.audited)} audited examples; {os.cpu_count()} CPUs")  # fmt: skip
    ways = {"sequential": 0, "ray1": 1, "ray": args.workers}
    walls: dict[str, float] = {}
    ref: dict[str, list[ShadowOutput]] | None = None
    for way in args.ways.split(","):
        load0 = os.getloadavg()[0]
        cpu0, t0 = time.process_time(), time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fsab-") as tmp:
            out, _ = run_shadows(cfg, data, plan, targets=targets, workers=ways[way], out_dir=Path(tmp))
        wall, driver_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        runs_cpu = sum(o.cpu_s for v in out.values() for o in v)
        walls[way] = wall
        label = f"ray x{ways[way]}" if way != "sequential" else "sequential"
        print(f"{label:>10}: wall {wall:7.1f} s | CPU of runs {runs_cpu:7.1f} s ({runs_cpu / n_runs:.1f} s/run) | "
              f"driver CPU {driver_cpu:5.1f} s | load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
        if ref is None:
            ref = out
        else:
            same = all(
                np.allclose(a.phi, b.phi, rtol=1e-4, atol=1e-4)
                for t in targets for a, b in zip(ref[t], out[t], strict=True)
            )  # fmt: skip
            print(f"{'':>10}  signals identical to the first way: {same}")
    if "ray1" in walls and "ray" in walls:
        print(f"Ray speed-up, {args.workers} workers over 1: {walls['ray1'] / walls['ray']:.2f}x")
    if "sequential" in walls and "ray" in walls:
        print(f"Ray x{args.workers} over sequential in-process: {walls['sequential'] / walls['ray']:.2f}x")


if __name__ == "__main__":
    main()
