"""``fedsered sweep``: the ε × method × seed grid, resume without redoing cells, outputs, and a privacy object per DP
cell whose ε an independent recomputation reproduces; plus ``fedsered distill`` under DP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant
from test_distill_cli import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_distill_cli import tiny as distill_tiny

from fedsered.cli import main
from fedsered.config import load_config
from fedsered.experiments.sweep import grid
from fedsered.privacy.accountant import RDP_ALPHAS

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
    for cell in res["cells"]:
        if cell["method"] == "dm" and cell["epsilon"] is not None:
            p = cell["privacy"]
            assert p["epsilon"] <= cell["epsilon"] and p["epsilon"] == pytest.approx(recompute(p), rel=1e-9)
            assert p["releases"][0]["steps"] == 3
        else:
            assert cell["privacy"] is None
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == n_cells and rows[-1]["method"] == "dm"
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
