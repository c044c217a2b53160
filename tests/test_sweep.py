"""``fedsered sweep``: the ε × method × seed grid, resume without redoing cells, outputs, and a privacy object per DP
cell whose ε an independent recomputation reproduces; the summary's mean ± 95 % CI and paired differences by seed
against a recomputation from the cells; plus ``fedsered distill`` under DP."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from rich.console import Console
from test_distill_cli import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_distill_cli import tiny as distill_tiny

from fedsered.cli import _sweep_table, main
from fedsered.config import load_config
from fedsered.experiments.sweep import grid, summarise
from fedsered.privacy.accountant import RDP_ALPHAS
from fedsered.stats import mean_ci, paired_difference

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")


def tiny(tmp: Path) -> list[str]:
    """``fedsered distill``'s tiny corpus and model, with a tiny dm and a 3 × 2 sweep grid."""
    return [kv for kv in distill_tiny(tmp) if not kv.startswith("distill.")] + [
        "distill.dm_iterations=3", "distill.eval_epochs=3", "distill.eval_random_inits=0",
        "sweep.methods=[dm]", "sweep.epsilons=[1, 8, inf]", "sweep.seeds=[0, 1]", "sweep.ipc=1",
    ]  # fmt: skip


def _args(cmd: str, out: Path, overrides: list[str]) -> list[str]:
    args = [cmd, DEFAULT, "--out", str(out)]
    for kv in overrides:
        args += ["--set", kv]
    return args


def recompute(obj: dict[str, object]) -> float:
    acc = RDPAccountant()
    acc.history = [(r["noise_multiplier"], r["sample_rate"], r["steps"]) for r in obj["releases"]]  # type: ignore[attr-defined,index]
    return float(acc.get_epsilon(delta=obj["delta"], alphas=list(RDP_ALPHAS)))  # type: ignore[arg-type]


CAPTION = "mean ± 95 % CI over seeds (Student t); Δ paired by seed"


def _by_seed(cells: list[dict[str, Any]], method: str, epsilon: float | None) -> dict[int, float]:
    return {c["seed"]: c["uar_fixed_init"] for c in cells if (c["method"], c["epsilon"]) == (method, epsilon)}


def _same_estimate(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["n"] == want["n"] and got["level"] == want["level"]
    for k in ("mean", "lo", "hi", "half_width"):
        assert got[k] == (None if want[k] is None else pytest.approx(want[k], rel=1e-12, abs=1e-15))


def test_grid_lists_references_then_methods() -> None:
    cfg = load_config(None, ["sweep.methods=[dm, gm]", "sweep.epsilons=[2, inf]", "sweep.seeds=[0]"])
    keys = [c.key for c in grid(cfg)]
    assert keys == ["full_data_epsinf_seed0", "random_epsinf_seed0", "dm_eps2_seed0", "dm_epsinf_seed0",
                    "gm_eps2_seed0", "gm_epsinf_seed0"]  # fmt: skip


def test_sweep_runs_resumes_and_writes_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    overrides = tiny(tmp_path)
    assert main(_args("sweep", out, overrides)) == 0
    res = json.loads((out / "results.json").read_text())
    n_cells = 2 + 2 + 3 * 2  # full data + random baseline per seed, dm at 3 epsilons x 2 seeds
    assert len(res["cells"]) == n_cells and res["ran"] == n_cells and res["resumed"] == 0
    assert set(res["curves"]) == {"full_data", "random", "dm"}
    assert set(res["curves"]["dm"]) == {"1", "8", "inf"} and res["curves"]["dm"]["1"]["n"] == 2
    assert set(res["retention"]) == {"1", "8"} and "best_dp_vs_best_non_dp" in res["retention"]["8"]
    # every point is mean_ci of its cells' values; every Δ is the paired difference to the reference, seed by seed
    random = _by_seed(res["cells"], "random", None)
    full = _by_seed(res["cells"], "full_data", None)
    for eps_label, eps in (("1", 1.0), ("8", 8.0), ("inf", None)):
        dm = _by_seed(res["cells"], "dm", eps)
        point = res["curves"]["dm"][eps_label]
        assert point["values"] == [dm[0], dm[1]] and point["seeds"] == [0, 1]
        _same_estimate(point, mean_ci(list(dm.values())).to_json())
        assert point["lo"] < point["mean"] < point["hi"] or dm[0] == dm[1]
        deltas = res["paired"]["dm"][eps_label]
        assert set(deltas) == {"full_data", "random"}
        for name, ref in (("random", random), ("full_data", full)):
            assert deltas[name]["seeds"] == [0, 1]
            assert deltas[name]["mean"] == pytest.approx(np.mean([dm[s] - ref[s] for s in (0, 1)]), abs=1e-15)
            _same_estimate(deltas[name], paired_difference([dm[0], dm[1]], [ref[0], ref[1]]).to_json())
    assert set(res["paired"]) == {"dm", "random"} and set(res["paired"]["random"]["inf"]) == {"full_data"}
    out_text = capsys.readouterr().out
    assert CAPTION in out_text and "Δ − random" in out_text and "Δ − full data" in out_text
    for cell in res["cells"]:
        if cell["method"] == "dm" and cell["epsilon"] is not None:
            p = cell["privacy"]
            assert p["epsilon"] <= cell["epsilon"] and p["epsilon"] == pytest.approx(recompute(p), rel=1e-9)
            assert p["releases"][0]["steps"] == 3
        else:
            assert cell["privacy"] is None
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == n_cells and rows[-1]["method"] == "dm"
    assert [(r["method"], r["epsilon"], int(r["seed"])) for r in rows] == [
        (c["method"], "inf" if c["epsilon"] is None else str(c["epsilon"]), c["seed"]) for c in res["cells"]
    ]  # one row per cell, seed included
    assert (out / "figures" / "privacy_utility.png").read_bytes()[:4] == b"\x89PNG"
    first = (out / "cells" / "dm_eps1_seed0.json").read_text()

    # resume: a finished sweep reruns nothing; a lost cell is redone alone, identically (a run is a function of seed)
    (out / "cells" / "dm_eps1_seed0.json").unlink()
    assert main(_args("sweep", out, overrides)) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert (res2["ran"], res2["resumed"]) == (1, n_cells - 1)
    redone = json.loads((out / "cells" / "dm_eps1_seed0.json").read_text())
    assert {k: v for k, v in redone.items() if k != "seconds"} == {
        k: v for k, v in json.loads(first).items() if k != "seconds"
    }
    capsys.readouterr()
    # extending the grid reuses finished cells; changing what a cell depends on is refused
    assert main(_args("sweep", out, [*overrides, "sweep.seeds=[0, 1, 2]"])) == 0
    assert json.loads((out / "results.json").read_text())["ran"] == 5
    assert main(_args("sweep", out, [*overrides, "distill.dm_iterations=4"])) == 2
    assert "holds a sweep of another configuration" in capsys.readouterr().err


def test_summary_with_one_seed_or_no_common_seed_reports_no_interval() -> None:
    """A point with one seed has an undefined CI (reported as such); Δ pairs only the seeds both rows have, and is
    ``None`` ("no common seed") when they share none."""
    cfg = load_config(None, ["sweep.methods=[dm, gm]", "sweep.epsilons=[1, inf]", "sweep.seeds=[0, 1, 2]"])

    def cell(method: str, eps: float | None, seed: int, uar: float) -> dict[str, object]:
        return {"method": method, "epsilon": eps, "seed": seed, "uar_fixed_init": uar}

    records = [
        cell("full_data", None, 0, 0.60), cell("full_data", None, 1, 0.64), cell("full_data", None, 2, 0.62),
        cell("random", None, 1, 0.40), cell("random", None, 2, 0.46),
        cell("dm", 1.0, 0, 0.30), cell("dm", 1.0, 1, 0.33), cell("dm", 1.0, 2, 0.35),
        cell("dm", None, 1, 0.47), cell("gm", 1.0, 0, 0.25),
    ]  # fmt: skip
    res = summarise(records, cfg=cfg)
    one = res["curves"]["dm"]["inf"]
    assert (one["n"], one["mean"], one["lo"], one["hi"], one["half_width"]) == (1, 0.47, None, None, None)
    d = res["paired"]["dm"]["1"]["random"]  # dm has seeds 0-2, random 1-2: paired over 1 and 2
    assert d["seeds"] == [1, 2] and d["n"] == 2 and d["mean"] == pytest.approx(np.mean([0.33 - 0.40, 0.35 - 0.46]))
    _same_estimate(d, paired_difference([0.33, 0.35], [0.40, 0.46]).to_json())
    single = res["paired"]["dm"]["inf"]["random"]  # one common seed: a difference without an interval
    assert single["seeds"] == [1] and single["mean"] == pytest.approx(0.07) and single["half_width"] is None
    assert res["paired"]["gm"]["1"]["random"] is None  # gm ran seed 0 only, random never did
    assert res["paired"]["gm"]["1"]["full_data"]["seeds"] == [0]
    console = Console(record=True, width=200)
    console.print(_sweep_table(res, cfg=cfg))
    text = console.export_text()
    assert CAPTION in text and "0.470 (n=1, no CI)" in text and "no common seed" in text
    assert paired_difference([0.33, 0.35], [0.40, 0.46]).fmt(signed=True) in text


def test_distill_cli_under_dp_carries_privacy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    base = tiny(tmp_path)
    dp = ["privacy.enabled=true", "privacy.target_epsilon=4", "distill.methods=[dm]", "distill.ipc=[1, 2]"]
    overrides = [*base, *dp]
    assert main(_args("distill", out, overrides)) == 0
    res = json.loads((out / "results.json").read_text())
    rows = [res["by_ipc"][k]["dm"] for k in ("1", "2")]
    for row in rows:
        p = row["privacy"]
        assert p["epsilon"] <= 4.0 and p["epsilon"] == pytest.approx(recompute(p), rel=1e-9)
    top = res["privacy"]
    assert len(top["releases"]) == 2 and top["epsilon"] == pytest.approx(recompute(top), rel=1e-9)
    assert max(r["privacy"]["epsilon"] for r in rows) < top["epsilon"] < 8.0
    assert main(_args("distill", out, [*overrides, "distill.methods=[random]"])) == 2
    assert "'random' has no DP mechanism" in capsys.readouterr().err
    assert main(_args("distill", out, [*overrides, "privacy.delta=0.5"])) == 2
    assert "privacy.delta" in capsys.readouterr().err
