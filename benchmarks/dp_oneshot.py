"""Benchmark: the one-shot DP mechanism (merf) against DP distribution matching in the default federation.

Per seed, the config's synthetic sharing (the default: 8 clients of 3 speakers, IPC 3, cnn6 from θ₀, 12 held-out
speakers) runs in process (``fedsered.federation.run_pipeline``: the same loop the Flower App runs; tests check the
two transports give the same model) once per variant: the clients' method (``dm`` — the default — or ``merf``) and
DP off or at ε per client (δ = 1e-5, secret noise). Printed per variant: global UAR mean ± 95 % CI over the seeds,
the paired difference to dm under the same privacy (same seed, same split and partitions), and the ε the clients'
ledgers composed.

Run: ``.venv/bin/python benchmarks/dp_oneshot.py --seeds 0-4`` (``--config``, default ``configs/default.yaml``;
``--set KEY=VALUE`` for overrides; ``--variants 'dm,dm eps8'`` for some of ``VARIANTS``); seeds run in parallel
processes (``--workers``, default 2), each at one torch thread for the clients (the server's steps at
``federation.server_threads``; ``--set federation.server_threads=1`` keeps a worker on one core). Results are written
to ``--out`` as each seed finishes and reused when the command runs again.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, list[str]] = {
    "dm": [],
    "merf": ["federation.method=merf"],
    "dm eps8": ["privacy.enabled=true", "privacy.target_epsilon=8"],
    "merf eps8": ["federation.method=merf", "privacy.enabled=true", "privacy.target_epsilon=8"],
    "dm eps1": ["privacy.enabled=true", "privacy.target_epsilon=1"],
    "merf eps1": ["federation.method=merf", "privacy.enabled=true", "privacy.target_epsilon=1"],
}
"""Variant name -> overrides of ``configs/default.yaml``; each merf variant is compared with the dm one of the same
privacy (the name with ``merf`` replaced by ``dm``)."""


def one_seed(seed: int, overrides: list[str], config: str, variants: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from fedsered.config import load_config
    from fedsered.data.dataset import build_dataset
    from fedsered.federation import run_pipeline

    row: dict[str, Any] = {"seed": seed}
    data = None
    for name in variants:
        cfg = load_config(ROOT / config, [*overrides, *VARIANTS[name], f"seed={seed}"])
        data = data or build_dataset(cfg)  # the variants differ only in the clients' method and privacy
        start = time.process_time()
        res = run_pipeline(cfg, data, pipeline="synthetic", seed=seed)
        eps = [c.privacy["epsilon"] for c in res.clients if c.privacy]
        row[name] = {"uar": res.uar, "bytes": res.bytes_up_total, "cpu_seconds": time.process_time() - start,
                     "epsilon_max": max(eps) if eps else None}  # fmt: skip
    return row


def report(rows: list[dict[str, Any]], variants: list[str]) -> None:
    from fedsered.stats import mean_ci, paired_difference

    print(f"\n{len(rows)} seeds ({', '.join(str(r['seed']) for r in rows)}); ± 95 % CI; Δ paired by seed")
    for name in variants:
        v = [r[name]["uar"] for r in rows]
        base = name.replace("merf", "dm")
        delta = (
            ""
            if base == name or base not in variants
            else f"   Δ vs {base} {paired_difference(v, [r[base]['uar'] for r in rows]).fmt(signed=True)}"
        )
        eps = rows[0][name]["epsilon_max"]
        cpu = sum(r[name]["cpu_seconds"] for r in rows) / len(rows)
        print(f"  {name:10s} UAR {mean_ci(v).fmt()}{delta}   ε {eps if eps is None else round(eps, 2)}"
              f"   {cpu:.0f} CPU s/seed   per seed {' '.join(f'{u:.3f}' for u in v)}")  # fmt: skip


def main() -> None:
    from fedsered.experiments.seeds import parse_seeds
    from fedsered.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-dp-oneshot.json")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of VARIANTS (default: all)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SystemExit(f"--variants: unknown {unknown or 'empty list'}; expected names from {', '.join(VARIANTS)}")
    out = Path(args.out)
    done = {r["seed"]: r for r in json.loads(out.read_text())} if out.exists() else {}
    todo = [s for s in parse_seeds(args.seeds) if s not in done or not set(variants) <= set(done[s])]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(one_seed, s, args.overrides, args.config, variants): s for s in todo}
        for fut in as_completed(futures):
            row = fut.result()
            done[row["seed"]] = {**done.get(row["seed"], {}), **row}  # variants of an earlier run are kept
            atomic_write_text(out, json.dumps([done[s] for s in sorted(done)], indent=1))
            print(f"seed {row['seed']} done", flush=True)
    report([done[s] for s in parse_seeds(args.seeds)], variants)


if __name__ == "__main__":
    main()
