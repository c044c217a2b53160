"""Choose the CNN's training recipe on validation speakers of more than one corpus, never on test speakers.

For every config (corpus) and seed, the seed's training speakers are split again: ``--val-speakers`` of them (drawn
by the seed, role ``recipe/val``) become validation speakers, the rest train. The test speakers are never loaded
into any model. On that split the functionals reference (fitted on the inner training speakers) and the CNN under
every recipe (``--recipes``: a JSON object of name → ``--set`` overrides of ``train.*`` / ``model.*``) are scored by
validation UAR. Printed per corpus: each recipe's mean ± 95 % CI over the seeds, and its paired difference (same
seed, same split) to the functionals and to the first recipe.

Every (corpus, seed) result is written to ``--out`` (JSON, atomically) as it finishes, and reused when the command
runs again: only recipes it does not hold yet are trained, so an interrupted or extended search continues.

Run (the session-7 search; ~25 min wall on 2 cores)::

    .venv/bin/python benchmarks/make_espeak_corpus.py --out runs/espeak-corpus
    .venv/bin/python benchmarks/recipe_search.py --configs configs/default.yaml configs/espeak.yaml --seeds 0-4
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.experiments.seeds import parse_seeds
from fedsered.io import atomic_write_text
from fedsered.models.build import fixed_init_state
from fedsered.models.functionals import fit_functionals_model, predict_functionals
from fedsered.seeding import rng
from fedsered.stats import mean_ci, paired_difference
from fedsered.training.metrics import classification_metrics
from fedsered.training.train import evaluate, train_model

SHIFT = ["train.augment.time_shift=0.2"]
SPECAUG = ["train.augment.time_masks=2", "train.augment.freq_masks=2"]
MIXUP = ["train.augment.mixup=0.4"]
RECIPES: dict[str, list[str]] = {
    "base": [],
    "shift": SHIFT,
    "specaug": SPECAUG,
    "shift+specaug": SHIFT + SPECAUG,
    "mixup": MIXUP,
    "shift+specaug+mixup": SHIFT + SPECAUG + MIXUP,
    "shift+specaug 60ep": [*SHIFT, *SPECAUG, "train.epochs=60"],
    "base wd1e-3": ["train.weight_decay=1e-3"],
    "stats": ["model.pooling=stats"],
    "stats dropout0.3": ["model.pooling=stats", "model.dropout=0.3"],
}


def split_validation(speakers: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose speaker is one of ``k`` validation speakers drawn by ``seed``."""
    names = np.unique(speakers)
    if not 0 < k < len(names):
        raise SystemExit(f"--val-speakers {k}: the split has {len(names)} training speakers")
    chosen = rng(seed, "recipe/val").permutation(names)[:k]
    return np.isin(speakers, chosen)


def one_seed(
    config: str, seed: int, recipes: dict[str, list[str]], val_speakers: int, done: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validation UAR of the functionals and of the CNN under every recipe not already in ``done`` (an earlier
    result of the same seed), on one seed's split."""
    cfg = load_config(config, [f"seed={seed}"])
    data = build_dataset(cfg, functionals=True)
    assert data.functionals is not None
    val = split_validation(data.train.speaker, k=val_speakers, seed=seed)
    tr = ~val
    x, y, n = data.train.x, data.train.y, data.n_classes
    f = data.functionals.train.x
    ref = fit_functionals_model(f[tr], y[tr], cfg=cfg.functionals)
    out: dict[str, Any] = {
        "functionals": classification_metrics(y[val], predict_functionals(ref, f[val]), n_classes=n)["uar"],
        "n_train": int(tr.sum()), "n_val": int(val.sum()), "cnn": {}, "cpu_seconds": {},
    }  # fmt: skip
    if done is not None:
        assert done["functionals"] == out["functionals"] and done["n_val"] == out["n_val"], "another split"
        out["cnn"], out["cpu_seconds"] = dict(done["cnn"]), dict(done["cpu_seconds"])
    for name, sets in recipes.items():
        if name in out["cnn"]:
            continue
        if any(not s.startswith(("train.", "model.")) for s in sets):
            raise SystemExit(f"recipe {name!r}: only train.* and model.* may change (the dataset is built once)")
        rcfg = load_config(config, [f"seed={seed}", *sets])
        start = time.process_time()
        model = train_model(x[tr], y[tr], model_cfg=rcfg.model, train_cfg=rcfg.train, n_classes=n,
                            init_state=fixed_init_state(rcfg.model, n_classes=n), seed=seed)  # fmt: skip
        out["cpu_seconds"][name] = time.process_time() - start
        out["cnn"][name] = float(evaluate(model, x[val], y[val], n_classes=n)["uar"])
    return out


def report(results: dict[str, Any], configs: list[str], seeds: tuple[int, ...], recipes: list[str]) -> None:
    for config in configs:
        rows = [results[f"{config}#{s}"] for s in seeds if f"{config}#{s}" in results]
        if not rows:
            continue
        func = [r["functionals"] for r in rows]
        fe = mean_ci(func)
        print(f"\n{config}: {len(rows)} seeds, validation speakers only "
              f"(train {rows[0]['n_train']} / val {rows[0]['n_val']} clips)")  # fmt: skip
        print(f"  {'functionals':22s} {fe.fmt()}")
        first = [r["cnn"][recipes[0]] for r in rows]
        for name in recipes:
            v = [r["cnn"][name] for r in rows]
            cpu = np.mean([r["cpu_seconds"][name] for r in rows])
            print(f"  {name:22s} {mean_ci(v).fmt()}   Δ vs functionals {paired_difference(v, func).fmt(signed=True)}"
                  f"   Δ vs {recipes[0]} {paired_difference(v, first).fmt(signed=True)}   {cpu:.0f} CPU s"
                  f"   per seed {' '.join(f'{u:.3f}' for u in v)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/default.yaml", "configs/espeak.yaml"])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--val-speakers", type=int, default=2, help="of the training speakers (9 of 12 by default)")
    parser.add_argument("--recipes", default=None, help="JSON: name -> list of --set overrides (default: RECIPES)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/recipe-search.json")
    args = parser.parse_args()
    recipes = json.loads(args.recipes) if args.recipes else RECIPES
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    todo = [(c, s) for c in args.configs for s in seeds
            if not set(recipes) <= set(results.get(f"{c}#{s}", {}).get("cnn", {}))]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(one_seed, c, s, recipes, args.val_speakers, results.get(f"{c}#{s}")): (c, s)
                   for c, s in todo}  # fmt: skip
        for fut in as_completed(futures):
            c, s = futures[fut]
            results[f"{c}#{s}"] = fut.result()
            atomic_write_text(out, json.dumps(results, indent=1))
            print(f"{c} seed {s} done ({time.perf_counter() - start:.0f} s)", flush=True)
    report(results, args.configs, seeds, list(recipes))


if __name__ == "__main__":
    main()
