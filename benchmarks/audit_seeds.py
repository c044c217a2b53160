"""The privacy audit over corpus seeds: how much each way of sharing leaks, with a confidence interval over corpora.

One ``fedsered audit`` run (``configs/audit.yaml``: 16 whole-pipeline runs per target, each membership drawn afresh)
shares one corpus seed and its 3 test speakers, so its spread is run-to-run, not corpus-to-corpus. This script runs the
same audit once per corpus seed (``--set seed=K``; the seed redraws the embedded corpus, the speaker split, the
partitions, the audited utterances and every stream), each into ``--out/seed-K`` (an audit folder of its own, skipped
when its ``results.json`` exists), and prints per pipeline the mean ± 95 % CI over the corpus seeds (Student t) of:
the global model's UAR, the AUC and TPR at 1 % FPR of the strongest attack (the largest TPR at 1 % FPR of every
attack on the audited utterances), the same without the server's replay attack (what anyone else who receives the
shared set can do), and the paired difference of the latter to ``random_subset`` (same corpus seed). The per-seed
figures are written to ``--out/summary.json`` (atomically).

Run: ``.venv/bin/python benchmarks/audit_seeds.py --seeds 0-4`` (~15 CPU min per corpus seed for the four default
pipelines on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fedsered.experiments.seeds import parse_seeds
from fedsered.io import atomic_write_text
from fedsered.stats import mean_ci, paired_difference

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("random_subset", "synthetic_dm", "synthetic_dm_dp_eps8", "fedavg")
FPR = 0.01
REPLAY = "server_replay"


def tpr(attack: dict[str, Any]) -> float:
    """TPR at ``FPR`` of one attack's result (the key is the FPR as the audit writes it)."""
    return float(next(v for k, v in attack["tpr_at_fpr"].items() if abs(float(k) - FPR) < 1e-12))


def strongest(attacks: dict[str, Any], *, without: str | None = None) -> tuple[str, float, float]:
    """``(name, TPR at FPR, AUC)`` of the attack with the largest TPR at ``FPR`` (ties: the larger AUC)."""
    name = max((n for n in attacks if n != without), key=lambda n: (tpr(attacks[n]), attacks[n]["auc"]))
    return name, tpr(attacks[name]), float(attacks[name]["auc"])


def run_seed(seed: int, *, config: Path, out: Path, pipelines: list[str], extra: list[str]) -> dict[str, Any]:
    """The audit of one corpus seed (run unless its ``results.json`` exists), reduced to the figures summarised."""
    folder = out / f"seed-{seed}"
    if not (folder / "results.json").exists():
        sets = [f"seed={seed}", f"audit.pipelines=[{', '.join(pipelines)}]", *extra]
        cmd = [sys.executable, "-m", "fedsered.cli", "audit", str(config), "--out", str(folder)]
        cmd += [a for kv in sets for a in ("--set", kv)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = {}
    for name in pipelines:
        r = results["pipelines"][name]
        best, best_tpr, best_auc = strongest(r["attacks"])
        other, other_tpr, other_auc = strongest(r["attacks"], without=REPLAY)
        row[name] = {"uar": float(r["uar"]), "attack": best, "tpr": best_tpr, "auc": best_auc,
                     "attack_no_replay": other, "tpr_no_replay": other_tpr, "auc_no_replay": other_auc}  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "audit.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "audit-seeds")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="comma list of the config's target names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another config override")
    args = parser.parse_args()
    seeds, pipelines = list(parse_seeds(args.seeds)), args.pipelines.split(",")
    per_seed = {s: run_seed(s, config=args.config, out=args.out, pipelines=pipelines, extra=args.set) for s in seeds}
    atomic_write_text(args.out / "summary.json", json.dumps({"seeds": seeds, "per_seed": per_seed}, indent=1))

    def est(name: str, key: str) -> str:
        return mean_ci([per_seed[s][name][key] for s in seeds]).fmt()

    print(f"\naudit over corpus seeds {seeds} ({args.config.name}; mean ± 95 % CI over seeds; TPR at {FPR:.0%} FPR)")
    head = ("pipeline", "UAR", "strongest: TPR", "AUC", "without replay: TPR", "AUC", "Δ TPR vs random_subset",
            "attacks (no replay) per seed")  # fmt: skip
    print(" | ".join(head))
    for name in pipelines:
        diff = "–"
        if name != "random_subset" and "random_subset" in pipelines:
            d = paired_difference([per_seed[s][name]["tpr_no_replay"] for s in seeds],
                                  [per_seed[s]["random_subset"]["tpr_no_replay"] for s in seeds])  # fmt: skip
            diff = d.fmt(signed=True)
        attacks = " ".join(per_seed[s][name]["attack_no_replay"] for s in seeds)
        print(" | ".join((name, est(name, "uar"), est(name, "tpr"), est(name, "auc"), est(name, "tpr_no_replay"),
                          est(name, "auc_no_replay"), diff, attacks)))  # fmt: skip
    per = " ".join(f"{s}:" + ",".join(f"{per_seed[s][n]['tpr']:.2f}" for n in pipelines) for s in seeds)
    print(f"per seed strongest TPR ({', '.join(pipelines)}): {per}")


if __name__ == "__main__":
    main()
