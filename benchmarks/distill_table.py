"""Regenerate the distillation table of RESULTS.md: ``fedsered distill`` over several seeds, aggregated.

For each seed ``S`` and each method ``M`` of the config it runs ``fedsered distill CONFIG --set seed=S --set
distill.methods=[M] --out OUT/seedS/M`` (skipped when that folder already holds a ``results.json``: a half-finished
table resumes, and one method can be re-run by deleting its folder), then merges the methods of a seed (their full-
data row is the same run: same θ₀, seed and training) and prints a Markdown table over seeds: for each method and IPC
the fixed-initialisation UAR (mean ± 95 % CI over seeds, ``fedsered.stats``), the random-initialisation UAR (each
seed's mean over ``distill.eval_random_inits`` initialisations, mean ± 95 % CI over seeds), the share of the full-data
UAR, the paired difference to the random subset of the same seed and IPC (mean ± 95 % CI of the per-seed
differences, and in how many seeds it was positive), and the median over seeds
of the distillation wall time (a run that shared the machine is slower; speed figures are in BENCHMARKS.md). The
seed changes the corpus, the speaker split and every stream, so the paired column is the one that separates methods.

Run: ``.venv/bin/python benchmarks/distill_table.py --seeds 0 1 2 3 4`` (writes ``OUT/table.md`` too); ``--workers``
cells (one ``fedsered distill`` process of one core each) run at once, 2 by default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import load_config
from fedsered.io import atomic_write_text
from fedsered.stats import mean_ci, paired_difference


def run_cell(config: str, seed: int, method: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    """The ``results.json`` of one seed and method, running ``fedsered distill`` unless it is already there."""
    results = out / "results.json"
    if not results.exists():
        cmd = [sys.executable, "-m", "fedsered.cli", "distill", config, "--set", f"seed={seed}",
               "--set", f"distill.methods=[{method}]", *(a for o in overrides for a in ("--set", o)),
               "--out", str(out)]  # fmt: skip
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    loaded: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return loaded


def merge_seed(cells: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """One seed's results (one per method, in ``methods`` order) with every method merged into ``by_ipc``."""
    merged = dict(cells[0])
    merged["by_ipc"] = {ipc: {m: c["by_ipc"][ipc][m] for m, c in zip(methods, cells, strict=True)}
                        for ipc in cells[0]["by_ipc"]}  # fmt: skip
    return merged


def _ci(values: list[float]) -> str:
    return mean_ci(values).fmt()


def table(runs: dict[int, dict[str, Any]]) -> str:
    """Markdown table over seeds (see the module docstring for the columns)."""
    seeds = sorted(runs)
    full = [runs[s]["full_data_uar"] for s in seeds]
    first = runs[seeds[0]]
    lines = [
        f"Seeds {', '.join(map(str, seeds))}; full-data UAR (θ₀, all {first['n_train']} training utterances): "
        f"{_ci(full)} (mean ± 95 % CI over seeds).",
        "",
        "| method | IPC | UAR θ₀ (fixed init) | UAR random init | % of full data (θ₀) "
        "| Δ vs random subset (θ₀, paired) | seeds with Δ > 0 | distil seconds (median wall) |",
        "|---|---|---|---|---|---|---|---|",
        f"| full data | all | {_ci(full)} | – | 100% | – | – | – |",
    ]
    for ipc, rows in first["by_ipc"].items():
        for method in rows:
            cells = [runs[s]["by_ipc"][ipc][method] for s in seeds]
            fixed = [c["uar_fixed_init"] for c in cells]
            rand = [c["uar_random_init"] for c in cells if c["uar_random_init"] is not None]
            share = [f / u for f, u in zip(fixed, full, strict=True)]
            paired = "random" in rows and method != "random"
            base = [runs[s]["by_ipc"][ipc]["random"]["uar_fixed_init"] for s in seeds] if paired else []
            delta = paired_difference(fixed, base).fmt(signed=True) if paired else "–"
            wins = f"{sum(f > b for f, b in zip(fixed, base, strict=True))}/{len(seeds)}" if paired else "–"
            seconds = np.median([c["seconds"] for c in cells])
            lines.append(
                f"| {method} | {ipc} | {_ci(fixed)} | {_ci(rand) if rand else '–'} | {100 * np.mean(share):.0f}% "
                f"| {delta} | {wins} | {seconds:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/distill_table.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/distill_table"))
    parser.add_argument("--workers", type=int, default=2, help="cells run at once (one core each)")
    parser.add_argument("--methods", nargs="+", help="only these of the config's methods (default: all)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="config override passed to every run (e.g. 'distill.ipc=[1, 10]'); a folder's results "
                        "are reused only with the same overrides, so give each setting its own --out")  # fmt: skip
    args = parser.parse_args()
    methods: list[str] = args.methods or list(dict.fromkeys(load_config(args.config, args.overrides).distill.methods))
    cells = [(s, m) for s in args.seeds for m in methods]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:  # each cell is its own `fedsered distill` process
        done = list(pool.map(lambda c: run_cell(args.config, c[0], c[1], args.out / f"seed{c[0]}" / c[1],
                                                args.overrides), cells))  # fmt: skip
    by_cell = dict(zip(cells, done, strict=True))
    runs = {s: merge_seed([by_cell[s, m] for m in methods], methods) for s in args.seeds}
    text = table(runs)
    atomic_write_text(args.out / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
