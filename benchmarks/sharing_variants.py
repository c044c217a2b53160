"""Federation variants, paired by seed: on validation speakers to choose how clients distil, or on the test speakers.

With ``--val-speakers K`` (default 2), for every seed K of the seed's training speakers (drawn by the seed, role
``recipe/val``, as in ``recipe_search.py``) are taken out of their clients and become the server's held-out speakers;
the test speakers are never loaded into any model — the protocol for choosing a default. With ``--val-speakers 0``
the federation is the config's own and the variants are scored on its test speakers — the protocol for reporting
one. Every variant (``--variants``: a JSON object of name → ``{"pipeline": ...,
"set": [KEY=VALUE, ...], "vs": [other names]}``) runs that federation in process (``fedsered.federation.run_pipeline``,
the loop the Flower App runs) and is scored by the global model's UAR on the held-out speakers. Printed: each
variant's mean ± 95 % CI over the seeds, and its paired difference (same seed, same split and partitions) to each
variant named in its ``vs``.

Every seed's result is written to ``--out`` (JSON, atomically) as it finishes and reused when the command runs again
(only variants it does not hold are run). Seeds run in parallel processes (``--workers``), each at one torch thread.

Run: ``.venv/bin/python benchmarks/sharing_variants.py --seeds 0-4`` (the DSA search of session 8, the default
variants); ``--variants dp_fedavg`` for DP-FedAvg against DP dm on the test speakers; ``--variants formation`` for
multi-formation (``PRESETS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DSA = ["distill.dsa.time_shift=0.125", "distill.dsa.time_mask=0.25", "distill.dsa.freq_mask=0.25"]
AUG = ["train.augment.time_shift=0.125", "train.augment.time_masks=1", "train.augment.time_mask=0.25",
       "train.augment.freq_masks=1", "train.augment.freq_mask=0.25"]  # fmt: skip
DSA_SEARCH: dict[str, dict[str, Any]] = {
    "random": {"pipeline": "random_subset", "set": [], "vs": []},
    "dm": {"pipeline": "synthetic", "set": [], "vs": ["random"]},
    "dm+dsa": {"pipeline": "synthetic", "set": DSA, "vs": ["random", "dm"]},
    "random, aug": {"pipeline": "random_subset", "set": AUG, "vs": ["random"]},
    "dm, aug": {"pipeline": "synthetic", "set": AUG, "vs": ["random, aug", "dm"]},
    "dm+dsa, aug": {"pipeline": "synthetic", "set": DSA + AUG, "vs": ["random, aug", "dm+dsa", "dm"]},
}
"""The default search: distribution matching with and without siamese augmentation in matching (``distill.dsa``),
the global model trained with and without the same views (``train.augment``, which every pipeline's training uses:
the random subset is trained under the same recipe, so a gain over it is the method's)."""
DP8, DP1 = ["privacy.enabled=true", "privacy.target_epsilon=8"], ["privacy.enabled=true", "privacy.target_epsilon=1"]
DP_FEDAVG: dict[str, dict[str, Any]] = {
    "dm eps8": {"pipeline": "synthetic", "set": DP8, "vs": []},
    "dp_fedavg eps8": {"pipeline": "dp_fedavg", "set": DP8, "vs": ["dm eps8"]},
    "dm eps1": {"pipeline": "synthetic", "set": DP1, "vs": []},
    "dp_fedavg eps1": {"pipeline": "dp_fedavg", "set": DP1, "vs": ["dm eps1"]},
}
"""DP synthetic sharing (dm, the client default) against DP-FedAvg at the same ε per client (δ = 1e-5, secret noise;
use with ``--val-speakers 0``)."""
MF2 = ["distill.formation=2"]
FORMATION: dict[str, dict[str, Any]] = {
    "random": {"pipeline": "random_subset", "set": [], "vs": []},
    "random packed x2": {"pipeline": "synthetic", "set": ["federation.method=random", *MF2], "vs": ["random"]},
    "dm": {"pipeline": "synthetic", "set": [], "vs": ["random"]},
    "dm x2": {"pipeline": "synthetic", "set": MF2, "vs": ["random", "dm", "random packed x2"]},
}
"""Multi-formation (``distill.formation``) at the same bytes: the random real subset, the same bytes holding twice the
real examples packed (no learning: what the parameterisation alone buys), dm, and dm matching the decoded examples
from a packed start."""
PRESETS = {"dsa": DSA_SEARCH, "dp_fedavg": DP_FEDAVG, "formation": FORMATION}


def validation_split(seed: int, config: Path, overrides: list[str], k: int) -> tuple[Any, dict[str, Any] | None]:
    """The seed's dataset with the validation speakers as its held-out set, and the clients without them (``k = 0``:
    the dataset as it is, every client)."""
    from fedsered.config import load_config
    from fedsered.data.dataset import build_dataset
    from fedsered.federation.client import client_id
    from fedsered.seeding import rng

    data = build_dataset(load_config(config, [*overrides, f"seed={seed}"]))
    if k == 0:
        return data, None
    names = np.unique(data.train.speaker)
    if not 0 < k < len(names):
        raise SystemExit(f"--val-speakers {k}: the split has {len(names)} training speakers")
    val = np.isin(data.train.speaker, rng(seed, "recipe/val").permutation(names)[:k])
    clients = {}
    for i, index in enumerate(data.clients):
        keep = index[~val[index]]
        if len(keep):
            clients[client_id(i)] = data.train.subset(keep)
    return dataclasses.replace(data, test=data.train.subset(np.flatnonzero(val))), clients


def one_seed(seed: int, config: Path, overrides: list[str], k: int, variants: dict[str, dict[str, Any]],
             done: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    import torch

    torch.set_num_threads(1)
    from fedsered.config import load_config
    from fedsered.federation import run_pipeline

    data, clients = validation_split(seed, config, overrides, k)
    row: dict[str, Any] = {"seed": seed, **done, "n_val": len(data.test),
                           "clients": len(data.clients) if clients is None else len(clients)}  # fmt: skip
    for name, v in variants.items():
        if name in row:
            continue
        cfg = load_config(config, [*overrides, *v["set"], f"seed={seed}"])
        start = time.process_time()
        res = run_pipeline(cfg, data, pipeline=v["pipeline"], seed=seed, clients=clients)
        row[name] = {"uar": res.uar, "bytes": res.bytes_up_total, "cpu_seconds": time.process_time() - start}
    return row


def report(rows: list[dict[str, Any]], variants: dict[str, dict[str, Any]]) -> None:
    from fedsered.stats import mean_ci, paired_difference

    print(f"\n{len(rows)} seeds ({', '.join(str(r['seed']) for r in rows)}), held-out speakers "
          f"({rows[0]['n_val']} clips, {rows[0]['clients']} clients); ± 95 % CI; Δ paired by seed")  # fmt: skip
    for name, v in variants.items():
        uar = [r[name]["uar"] for r in rows]
        deltas = "".join(f"   Δ vs {o} {paired_difference(uar, [r[o]['uar'] for r in rows]).fmt(signed=True)}"
                         for o in v["vs"])  # fmt: skip
        cpu = sum(r[name]["cpu_seconds"] for r in rows) / len(rows)
        print(f"  {name:14s} UAR {mean_ci(uar).fmt()}{deltas}   {cpu:.0f} CPU s/seed"
              f"   per seed {' '.join(f'{u:.3f}' for u in uar)}")  # fmt: skip


def main() -> None:
    from fedsered.experiments.seeds import parse_seeds
    from fedsered.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--val-speakers", type=int, default=2, help="0: score on the config's test speakers")
    parser.add_argument("--variants", default="dsa", help=f"a preset ({', '.join(PRESETS)}) or JSON: name -> "
                        "{pipeline, set, vs}")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="override for every variant")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/sharing-variants.json"))
    args = parser.parse_args()
    args.variants = PRESETS[args.variants] if args.variants in PRESETS else json.loads(args.variants)
    seeds = parse_seeds(args.seeds)
    found = {r["seed"]: r for r in json.loads(args.out.read_text())} if args.out.exists() else {}
    todo = [s for s in seeds if not set(args.variants) <= set(found.get(s, {}))]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        earlier = {s: {k: v for k, v in found.get(s, {}).items() if k in args.variants} for s in todo}
        futures = [pool.submit(one_seed, s, args.config, args.overrides, args.val_speakers, args.variants, earlier[s])
                   for s in todo]  # fmt: skip
        for fut in as_completed(futures):
            row = fut.result()
            found[row["seed"]] = row
            atomic_write_text(args.out, json.dumps([found[s] for s in sorted(found)], indent=1))
            print(f"seed {row['seed']} done", flush=True)
    report([found[s] for s in seeds], args.variants)


if __name__ == "__main__":
    main()
