"""``fedsered distill --seeds`` and ``fedsered simulate --seeds``: one run folder per seed under ``DIR/seeds/``, the
summary (mean ± 95 % CI, paired differences by seed), ``results.csv``, resumption without recomputation, and the
refusals (another config in the folder, bad seeds, a pipeline outside the clients' policy)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_distill_cli import tiny as distill_tiny
from test_simulation import one_thread
from test_simulation import tiny as sim_tiny

import fedsered.experiments.distill as distill_driver
import simulations.runner
from fedsered.cli import main
from fedsered.stats import mean_ci, paired_difference

PROGRESS = re.compile(r"^[^:]+: \d+/\d+, ")  # a progress line in a log (fedsered.cli._LogLines)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")


def _run(command: str, out: Path, overrides: list[str], *extra: str) -> int:
    args = [command, DEFAULT, "--out", str(out), *extra]
    for kv in overrides:
        args += ["--set", kv]
    return main(args)


def _without_seconds(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k not in ("seconds", "fingerprint")}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _refuse(raised: str) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{raised} called: a finished seed was recomputed")

    return fail


def test_distill_seeds_summarise_resume_and_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, tiny = tmp_path / "run", distill_tiny(tmp_path)
    assert _run("distill", out, tiny, "--seeds", "0-1") == 0
    printed = capsys.readouterr().out
    assert "full data" in printed and "±" in printed and "seeds: 2 run, 0 resumed" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [0, 1] and (res["ran"], res["resumed"]) == (2, 0)

    # every seed is a whole ``fedsered distill`` run folder of the config with that seed
    records = [json.loads((out / "seeds" / str(s) / "results.json").read_text()) for s in (0, 1)]
    for seed, record in zip((0, 1), records, strict=True):
        folder = out / "seeds" / str(seed)
        assert record["seed"] == seed and len(record["fingerprint"]) == 16
        assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
        for rows in record["by_ipc"].values():
            for method, row in rows.items():
                assert (folder / f"{row['set']}.npz").exists()
                assert (folder / "figures" / f"mean_logmel_{method}_ipc{row['ipc']}.png").exists()
    assert records[0]["data"]["summary"] != records[1]["data"]["summary"]  # another seed draws another corpus

    # the summary: Student-t intervals over the seeds, differences taken seed by seed
    summary = res["summary"]
    full = [r["full_data_uar"] for r in records]
    assert summary["full_data"]["uar_fixed_init"] == mean_ci(full).to_json()
    assert list(summary["by_ipc"]) == ["2", "1"]
    for ipc, entries in summary["by_ipc"].items():
        assert list(entries) == ["random", "dm"]
        value = {m: [r["by_ipc"][ipc][m]["uar_fixed_init"] for r in records] for m in entries}
        for method, e in entries.items():
            assert e["uar_fixed_init"] == mean_ci(value[method]).to_json() and e["uar_fixed_init"]["n"] == 2
            randoms = [r["by_ipc"][ipc][method]["uar_random_init"] for r in records]
            assert e["uar_random_init"] == mean_ci(randoms).to_json()
            assert e["minus_full_data"]["uar_fixed_init"] == paired_difference(value[method], full).to_json()
        assert entries["random"]["minus_random"] is None
        diff = entries["dm"]["minus_random"]
        assert diff["uar_fixed_init"] == paired_difference(value["dm"], value["random"]).to_json()
        assert diff["per_seed"]["uar_fixed_init"] == [d - r for d, r in zip(value["dm"], value["random"], strict=True)]

    rows = _csv(out / "results.csv")
    expected = [(s, m, i) for s in ("0", "1") for i in ("2", "1") for m in ("random", "dm")]
    assert [(r["seed"], r["method"], r["ipc"]) for r in rows if r["method"] != "full_data"] == expected
    assert [(r["seed"], float(r["uar_fixed_init"])) for r in rows if r["method"] == "full_data"] == [
        ("0", full[0]), ("1", full[1])]  # fmt: skip
    assert len(res["rows"]) == len(rows) == 10

    # a seed of the list is the single-seed command on the config with that seed
    assert _run("distill", tmp_path / "single", [*tiny, "seed=1"]) == 0
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    assert _without_seconds(single) == _without_seconds(records[1])

    # the same command again (another feature cache is no other config): nothing recomputed, nothing rewritten
    files = sorted(p for p in (out / "seeds").rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    monkeypatch.setattr(distill_driver, "run_distill", _refuse("run_distill"))
    capsys.readouterr()
    assert _run("distill", out, [*tiny, f"features.cache_dir={tmp_path / 'cache2'}"], "--seeds", "0-1") == 0
    assert "seeds: 0 run, 2 resumed" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert (again["ran"], again["resumed"]) == (0, 2) and again["summary"] == summary
    assert [p.stat().st_mtime_ns for p in files] == stamps

    # another configuration in the same folder is refused with one line, before any work
    assert _run("distill", out, [*tiny, "distill.dm_iterations=6"], "--seeds", "0-1") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and "holds a multi-seed distillation of another configuration" in err[0]


@pytest.mark.parametrize("command", ["distill", "simulate"])
def test_bad_seeds_are_one_line_errors(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulations.runner, "simulate", _refuse("simulate"))
    assert _run(command, tmp_path / "run", distill_tiny(tmp_path), "--seeds", "5-2") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and err[0].startswith(f"fedsered {command}: error: --seeds '5-2'")
    assert not (tmp_path / "run").exists()


def _sim_overrides(tmp: Path) -> list[str]:
    """The tiniest federation: 3 speakers (one held out), 2 clients, one baseline (pooled), dm for 3 steps."""
    return [
        *sim_tiny(tmp, speakers=3, test=0.34, clients=2),
        "federation.baselines=[pooled]",
        "federation.node_wait_s=30",
    ]


@pytest.mark.slow
def test_simulate_seeds_one_simulation_per_seed_summary_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One real simulation (seed 1, not the config's seed), then a second seed's folder made from it with other UARs
    — the summary and pairing over both, resumed without starting Ray (one Ray start: ~30 s on the shared box)."""
    out, over = tmp_path / "run", _sim_overrides(tmp_path)
    with one_thread():
        assert _run("simulate", out, over, "--seeds", "1") == 0
    assert "seeds: 1 run, 0 resumed" in capsys.readouterr().out
    folder = out / "seeds" / "1"
    record = json.loads((folder / "results.json").read_text())
    assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == 1
    assert record["seed"] == 1 and {"global_uar", "baselines", "clients", "comparison", "runtime"} <= record.keys()
    assert list(record["baselines"]) == ["pooled"] and record["runtime"]["leftover_pids"] == []
    assert record["runtime"]["ledger_dir"] == str(folder / "clients") and (folder / "shared" / "synthetic.npz").exists()
    one = json.loads((out / "results.json").read_text())["summary"]
    assert one["pipelines"]["synthetic"]["uar"]["n"] == 1 and one["pipelines"]["synthetic"]["uar"]["lo"] is None

    # seed 0 "finished" with known UARs: the summary pairs synthetic sharing and pooled seed by seed
    other = {**record, "seed": 0, "global_uar": 0.5, "baselines": {"pooled": {**record["baselines"]["pooled"],
                                                                              "global_uar": 0.25}}}  # fmt: skip
    (out / "seeds" / "0").mkdir()
    (out / "seeds" / "0" / "results.json").write_text(json.dumps(other))
    stamp = (folder / "results.json").stat().st_mtime_ns
    monkeypatch.setattr(simulations.runner, "simulate", _refuse("simulate"))
    assert _run("simulate", out, [*over, "federation.object_store_mb=256"], "--seeds", "0-1") == 0  # Ray only
    printed = capsys.readouterr().out
    assert "seeds: 0 run, 2 resumed" in printed and "synthetic sharing" in printed and "pooled" in printed
    assert (folder / "results.json").stat().st_mtime_ns == stamp
    res = json.loads((out / "results.json").read_text())
    summary = res["summary"]
    syn, pooled = [0.5, record["global_uar"]], [0.25, record["baselines"]["pooled"]["global_uar"]]
    assert summary["seeds"] == [0, 1] and list(summary["pipelines"]) == ["synthetic", "pooled"]
    assert summary["pipelines"]["synthetic"]["uar"] == mean_ci(syn).to_json()
    assert summary["pipelines"]["pooled"]["uar"] == mean_ci(pooled).to_json()
    assert summary["paired"]["synthetic - pooled"]["uar"] == paired_difference(syn, pooled).to_json()
    assert summary["pipelines"]["synthetic"]["bytes_up_total"]["mean"] == record["bytes_up_total"] > 0
    rows = _csv(out / "results.csv")
    assert [(r["seed"], r["pipeline"], float(r["uar"])) for r in rows] == [
        ("0", "synthetic", 0.5), ("0", "pooled", 0.25),
        ("1", "synthetic", record["global_uar"]), ("1", "pooled", pooled[1]),
    ]  # fmt: skip
    # the server's linear reference came back through Flower for both pipelines, summarised and paired like the CNN
    ref_syn, ref_pooled = record["reference"]["uar"], record["baselines"]["pooled"]["reference"]["uar"]
    assert record["reference"]["name"] == "logmel_functionals" and 0.0 <= ref_syn <= 1.0
    assert summary["pipelines"]["pooled"]["ref_uar"] == mean_ci([ref_pooled, ref_pooled]).to_json()
    assert summary["cnn_vs_reference"]["pooled"]["uar"] == paired_difference(pooled, [ref_pooled] * 2).to_json()
    assert summary["paired"]["synthetic - pooled"]["ref_uar"]["mean"] == pytest.approx(ref_syn - ref_pooled)
    assert [float(r["ref_uar"]) for r in rows] == [ref_syn, ref_pooled] * 2

    # another configuration is refused with one line before Ray starts; so is a pipeline outside the policy
    assert _run("simulate", out, [*over, "federation.ipc=2"], "--seeds", "0-1") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and "holds a multi-seed simulation of another configuration" in err[0]
    assert _run("simulate", tmp_path / "new", [*over, "federation.baselines=[fedavg]", "privacy.share=[synthetic]"],
                "--seeds", "0-1") == 2  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and "does not allow fedavg" in err[0] and not (tmp_path / "new").exists()
