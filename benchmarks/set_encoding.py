"""Benchmark: global UAR and bytes of synthetic sharing when the clients' sets travel as float32, float16 or int8.

Per seed, the default federation's synthetic sharing runs once in process (``fedsered.federation.run_pipeline``:
the clients distil; the encoding does not change what a client distils, only what it uploads). Then, for each
``federation.set_encoding``, every client's set is encoded as the client would upload it and decoded as the server
would (``fedsered.federation.encoding``), and the server's step is replayed exactly as ``run_federation`` does it —
``aggregate`` with the aggregation seed, the global model trained from θ₀ with the training seed, scored on the
held-out test speakers. The float32 replay must reproduce the pipeline's own UAR (checked: the replay is the
server's step, not an approximation of it). Printed: per encoding, the uploaded bytes (``payload_bytes`` of each
client's set, summed) and global UAR mean ± 95 % CI over seeds, and the paired difference to float32 (same seed).

Run: ``.venv/bin/python benchmarks/set_encoding.py`` (``--seeds 0-4``, ``--config`` (default ``configs/default.yaml``),
``--set KEY=VALUE`` for overrides); seeds run in
parallel processes (``--workers``, default 2), each at one torch thread.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENCODINGS = ("float32", "float16", "int8")


def one_seed(seed: int, overrides: list[str], config: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from fedsered.config import load_config
    from fedsered.data.dataset import build_dataset
    from fedsered.distill.synthetic_set import SyntheticSet
    from fedsered.federation import run_pipeline
    from fedsered.federation.aggregate import aggregate
    from fedsered.federation.encoding import decode_arrays, encode_set
    from fedsered.federation.loop import server_seed
    from fedsered.federation.payload import payload_bytes
    from fedsered.federation.server import score, train_global
    from fedsered.models import fixed_init_state

    cfg = load_config(ROOT / config, [*overrides, f"seed={seed}"])
    data = build_dataset(cfg)
    res = run_pipeline(cfg, data, pipeline="synthetic", seed=seed)
    theta0 = fixed_init_state(cfg.model, n_classes=data.n_classes)
    row: dict[str, Any] = {"seed": seed, "pipeline_uar": res.uar}
    for enc in ENCODINGS:
        sets = []
        for cid, s in res.sets.items():
            x, y = decode_arrays(encode_set(s.x, s.y, encoding=enc), encoding=enc, source=cid)
            sets.append(SyntheticSet(x=x, y=y, meta=s.meta))
        agg = aggregate(sets, cfg=cfg, n_classes=data.n_classes, seed=server_seed(seed, "aggregate", 1),
                        init_state=theta0)  # fmt: skip
        model = train_global(agg, cfg=cfg, init_state=theta0, seed=server_seed(seed, "train", 1),
                             n_classes=data.n_classes)  # fmt: skip
        m = score(model, data.test, n_classes=data.n_classes, threads=cfg.federation.server_threads)
        row[enc] = {"uar": m["uar"],
                    "bytes": sum(payload_bytes(s, encoding=enc) for s in res.sets.values())}  # fmt: skip
    if row["float32"]["uar"] != res.uar:
        raise SystemExit(f"seed {seed}: the float32 replay gave {row['float32']['uar']} but the pipeline {res.uar}")
    return row


def main() -> None:
    from fedsered.experiments.seeds import parse_seeds
    from fedsered.stats import mean_ci, paired_difference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-set-encoding.json")
    args = parser.parse_args()
    seeds = list(parse_seeds(args.seeds))
    overrides = ["federation.baselines=[]", *args.overrides]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one_seed, seeds, [overrides] * len(seeds), [args.config] * len(seeds)))
    for r in rows:
        print(json.dumps(r))
    print(f"\nsynthetic sharing, {args.config} {' '.join(args.overrides)}, seeds {args.seeds}")
    head = ("encoding", "bytes up (mean)", "x float32", "UAR mean ± 95 % CI", "Δ vs float32 (paired)")
    print(f"{head[0]:9} {head[1]:>15} {head[2]:>9} {head[3]:>26} {head[4]:>30}")
    base = [r["float32"]["uar"] for r in rows]
    for enc in ENCODINGS:
        uar = [r[enc]["uar"] for r in rows]
        nbytes = sum(r[enc]["bytes"] for r in rows) / len(rows)
        ratio = nbytes / (sum(r["float32"]["bytes"] for r in rows) / len(rows))
        print(f"{enc:9} {nbytes:>15,.0f} {ratio:>9.3f} {mean_ci(uar).fmt():>26} "
              f"{paired_difference(uar, base).fmt(signed=True):>30}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
