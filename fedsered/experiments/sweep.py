"""The privacy–utility sweep (``fedsered sweep``): UAR of distilled sets over a grid of ε × method × seed.

Every cell distils the whole training split (the centralised setting of ``fedsered distill``) once — under DP at
that per-release ε (``privacy`` section: δ, C, accountant, sample rate), or without DP for ``"inf"`` — and scores
the set on the held-out test speakers with the ``distill.eval_*`` protocol. Reference cells: the ``sweep.baselines``
selections and (``sweep.full_data``) the model trained on all real training data, once per seed.

Each finished cell is one JSON file under ``DIR/cells/`` written atomically, so an interrupted sweep resumes without
redoing finished cells (a cell file that is not a finished record of its cell — ``null``, ``[]``, ``{}``, truncated,
another cell's — is recomputed); ``DIR/sweep.json`` records a fingerprint of everything a cell depends on (the config
without the grid itself), and resuming under another config is refused (``fedsered.resume``). ``summarise`` turns the
cells into ``results.json``: per (method, ε) the mean ± 95 % CI over seeds (``fedsered.stats``), the paired difference
to each reference row (same seed), and the retention of non-DP UAR per ε; ``to_csv`` writes one row per cell;
``fedsered.experiments.sweep_plot`` draws the curve.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.distill.api import distil
from fedsered.distill.evaluate import eval_train_config, evaluate_set
from fedsered.errors import ConfigError
from fedsered.io import atomic_write_json, atomic_write_text
from fedsered.models.build import fixed_init_state
from fedsered.privacy.client import client_privacy
from fedsered.resume import check_resume, config_digest
from fedsered.seeding import int_seed
from fedsered.stats import mean_ci, paired_difference
from fedsered.training.train import evaluate, train_model

StageProgress = Callable[[str, int, int], None]

CSV_COLUMNS: tuple[str, ...] = (
    "method", "epsilon", "seed", "uar_fixed_init", "uar_random_init", "epsilon_accounted", "delta", "accountant",
    "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "seconds",
)  # fmt: skip

_NOT_IN_FINGERPRINT = frozenset({"sweep", "output", "functionals"})
"""Config sections a cell does not read (the grid itself, the run folder, the functionals reference)."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: ``method`` (a DP method, a baseline or ``"full_data"``) at ``epsilon`` and ``seed``."""

    method: str
    epsilon: float
    seed: int

    @property
    def key(self) -> str:
        """File stem of the cell, e.g. ``dm_eps1_seed0``, ``gm_epsinf_seed2``."""
        return f"{self.method}_eps{_eps_label(self.epsilon)}_seed{self.seed}"


def _eps_label(eps: float) -> str:
    return "inf" if math.isinf(eps) else f"{eps:g}"


def grid(cfg: Config) -> list[Cell]:
    """Every cell of ``cfg.sweep``: references first, then methods × ε (config order) × seeds."""
    sw = cfg.sweep
    cells = [Cell("full_data", math.inf, s) for s in sw.seeds if sw.full_data]
    cells += [Cell(b, math.inf, s) for b in dict.fromkeys(sw.baselines) for s in sw.seeds]
    eps = [math.inf if e == "inf" else float(e) for e in sw.epsilons]
    cells += [Cell(m, e, s) for m in dict.fromkeys(sw.methods) for e in eps for s in sw.seeds]
    return cells


def fingerprint(cfg: Config) -> str:
    """Digest of everything a cell depends on: the config without ``sweep``, ``output`` and ``functionals``."""
    return config_digest(cfg, exclude=_NOT_IN_FINGERPRINT)


def run_cell(cfg: Config, data: Dataset, cell: Cell, *, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """Distil (or select, or train on all data) for one cell and score it.

    Returns:
        The cell record: ``method``, ``epsilon`` (``None`` for ∞), ``seed``, ``uar_fixed_init``, ``uar_random_init``
        (+ ``_std``), ``seconds`` (distillation only) and ``privacy`` (the set's privacy object, ``None`` without DP).
    """
    n_classes = data.n_classes
    theta0 = fixed_init_state(cfg.model, n_classes=n_classes)
    record: dict[str, Any] = {
        "method": cell.method, "epsilon": None if math.isinf(cell.epsilon) else cell.epsilon, "seed": cell.seed,
    }  # fmt: skip
    start = time.perf_counter()
    if cell.method == "full_data":
        model = train_model(
            data.train.x, data.train.y, model_cfg=cfg.model, train_cfg=cfg.train, n_classes=n_classes,
            init_state=theta0, seed=int_seed(cell.seed, "sweep/full_data"), progress=progress,
        )  # fmt: skip
        uar = float(evaluate(model, data.test.x, data.test.y, n_classes=n_classes)["uar"])
        return {**record, "uar_fixed_init": uar, "uar_random_init": None, "uar_random_init_std": None,
                "seconds": time.perf_counter() - start, "privacy": None}  # fmt: skip
    privacy = None
    if not math.isinf(cell.epsilon):
        pcfg = cfg.privacy.model_copy(update={"enabled": True, "target_epsilon": cell.epsilon, "budget_epsilon": None})
        privacy = client_privacy(pcfg, client_id=None, n_local=len(data.train))
    s = distil(
        data.train, method=cell.method, ipc=cfg.sweep.ipc, cfg=cfg.distill, model_cfg=cfg.model, n_classes=n_classes,
        init_state=theta0, seed=int_seed(cell.seed, f"sweep/{cell.method}/distil"), progress=progress,
        features=cfg.features.model_dump(mode="json"), client_id=None, privacy=privacy, threads=cfg.train.threads,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    scores = evaluate_set(
        s, data.test, model_cfg=cfg.model, train_cfg=eval_train_config(cfg.distill, cfg.train), n_classes=n_classes,
        init_state=theta0, random_inits=cfg.distill.eval_random_inits, seed=int_seed(cell.seed, "sweep/eval"),
    )  # fmt: skip
    return {
        **record,
        "uar_fixed_init": scores["uar_fixed_init"],
        "uar_random_init": scores["uar_random_init"],
        "uar_random_init_std": scores["uar_random_init_std"],
        "seconds": seconds,
        "privacy": s.meta["privacy"],
    }


CELL_KEYS: tuple[str, ...] = (
    "method", "epsilon", "seed", "uar_fixed_init", "uar_random_init", "uar_random_init_std", "seconds", "privacy",
)  # fmt: skip
"""The keys of every cell record (``run_cell``)."""


def _finished_cell(path: Path, cell: Cell) -> dict[str, Any] | None:
    """The record in ``path`` if it is a finished record of ``cell``; ``None`` (recompute) for a missing file, or one
    that is not such a record (cannot happen with atomic writes: a file edited or truncated by hand)."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return None
    if not isinstance(rec, dict) or any(k not in rec for k in CELL_KEYS):
        return None
    epsilon = None if math.isinf(cell.epsilon) else cell.epsilon
    if (rec["method"], rec["epsilon"], rec["seed"]) != (cell.method, epsilon, cell.seed):
        return None
    return rec if isinstance(rec["uar_fixed_init"], int | float) else None


def run_sweep(
    cfg: Config, data: Dataset, *, out_dir: str | Path, progress: StageProgress | None = None
) -> dict[str, Any]:
    """Run (or resume) the sweep of ``cfg.sweep`` into ``out_dir``.

    Args:
        cfg: the whole config.
        data: the prepared dataset.
        out_dir: the sweep folder (``cells/``, ``sweep.json``).
        progress: ``(stage, done, total)`` callback; stage ``"sweep"`` counts cells.

    Returns:
        ``summarise`` of every cell of the grid, plus ``resumed`` (cells found finished) and ``ran`` (cells run).
    """
    out_dir = Path(out_dir)
    check_resume(
        out_dir, spec_name="sweep.json", digest=fingerprint(cfg), cfg=cfg, what="sweep", may_change="the sweep section"
    )
    if cfg.sweep.metric == "uar_random_init" and cfg.distill.eval_random_inits < 1:
        raise ConfigError("sweep.metric: uar_random_init needs distill.eval_random_inits >= 1")
    cells = grid(cfg)
    records, resumed, ran = [], 0, 0
    for i, cell in enumerate(cells):
        if progress is not None:
            progress("sweep", i, len(cells))
        path = out_dir / "cells" / f"{cell.key}.json"
        done = _finished_cell(path, cell)
        if done is not None:
            records.append(done)
            resumed += 1
            continue
        cb = (lambda d, t, _k=cell.key: progress(_k, d, t)) if progress is not None else None
        rec = run_cell(cfg, data, cell, progress=cb)
        atomic_write_json(path, rec)
        records.append(rec)
        ran += 1
    if progress is not None:
        progress("sweep", len(cells), len(cells))
    return {**summarise(records, cfg=cfg), "resumed": resumed, "ran": ran}


def _point(by_seed: dict[int, float]) -> dict[str, Any]:
    """One curve point: ``mean_ci`` of its per-seed values (``mean``, ``lo``, ``hi``, ``half_width``, ``n``,
    ``level``), the ``values`` and their ``seeds``."""
    return {**mean_ci(list(by_seed.values())).to_json(), "values": list(by_seed.values()), "seeds": list(by_seed)}


def paired_to(point: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any] | None:
    """``point − reference`` paired by seed (``paired_difference`` over the seeds both have), with those ``seeds``.

    Returns:
        The ``Estimate.to_json()`` plus ``seeds``; its interval is undefined (``lo = hi = None``) with one common
        seed; ``None`` when the two share no seed.
    """
    ref = dict(zip(reference["seeds"], reference["values"], strict=True))
    common = [s for s in point["seeds"] if s in ref]
    if not common:
        return None
    mine = dict(zip(point["seeds"], point["values"], strict=True))
    diff = paired_difference([mine[s] for s in common], [ref[s] for s in common])
    return {**diff.to_json(), "seeds": common}


def summarise(records: list[dict[str, Any]], *, cfg: Config) -> dict[str, Any]:
    """The sweep's ``results.json`` from its cell records.

    Returns:
        ``metric``, ``ipc``, ``cells`` (the records); ``curves``: ``{method: {eps_label: point}}``, ``sweep.metric``
        over seeds as mean ± 95 % CI (Student t, ``_point``); ``paired``: ``{method: {eps_label: {reference: Δ}}}``,
        each DP method's point minus each reference row (the ``sweep.baselines`` and ``full_data``, at ε = ∞) paired
        by seed (``paired_to``), and each baseline minus ``full_data``; ``retention``: the share of non-DP mean UAR
        kept at each ε, per method, and for the best DP method against the best non-DP method.
    """
    metric = cfg.sweep.metric
    by_seed: dict[str, dict[str, dict[int, float]]] = {}
    for rec in records:
        if rec.get(metric) is None:
            continue
        label = "inf" if rec["epsilon"] is None else _eps_label(float(rec["epsilon"]))
        by_seed.setdefault(rec["method"], {}).setdefault(label, {})[int(rec["seed"])] = float(rec[metric])
    curves = {m: {label: _point(v) for label, v in points.items()} for m, points in by_seed.items()}
    refs = [r for r in (*dict.fromkeys(cfg.sweep.baselines), "full_data") if "inf" in curves.get(r, {})]
    paired: dict[str, dict[str, dict[str, Any]]] = {}
    for m, points in curves.items():
        # a DP method against every reference; a baseline against the full-data model; full data against nothing
        against = refs if m in cfg.sweep.methods else ["full_data"] if m != "full_data" and "full_data" in refs else []
        if against:
            paired[m] = {label: {r: paired_to(p, curves[r]["inf"]) for r in against} for label, p in points.items()}
    methods: list[str] = [m for m in dict.fromkeys(cfg.sweep.methods) if m in curves]
    retention: dict[str, dict[str, float]] = {}
    non_dp = {m: curves[m]["inf"]["mean"] for m in methods if "inf" in curves[m]}
    best_non_dp = max(non_dp.values()) if non_dp else None
    for label in [_eps_label(float(e)) for e in cfg.sweep.epsilons if e != "inf"]:
        at = {m: curves[m][label]["mean"] for m in methods if label in curves[m]}
        row: dict[str, float] = {m: v / non_dp[m] for m, v in at.items() if non_dp.get(m)}
        if at and best_non_dp:
            row["best_dp_vs_best_non_dp"] = max(at.values()) / best_non_dp
        retention[label] = row
    return {
        "metric": metric,
        "ipc": cfg.sweep.ipc,
        "curves": curves,
        "paired": paired,
        "retention": retention,
        "cells": records,
    }


def to_csv(records: list[dict[str, Any]]) -> str:
    """One CSV row per cell (``CSV_COLUMNS``; privacy columns empty without DP)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for rec in records:
        p = rec.get("privacy") or {}
        rel = (p.get("releases") or [{}])[0]
        w.writerow({
            "method": rec["method"], "epsilon": "inf" if rec["epsilon"] is None else rec["epsilon"],
            "seed": rec["seed"], "uar_fixed_init": rec.get("uar_fixed_init"),
            "uar_random_init": rec.get("uar_random_init"), "epsilon_accounted": p.get("epsilon"),
            "delta": p.get("delta"), "accountant": p.get("accountant"), "noise_multiplier": rel.get("noise_multiplier"),
            "sample_rate": rel.get("sample_rate"), "steps": rel.get("steps"), "max_grad_norm": p.get("max_grad_norm"),
            "seconds": round(float(rec["seconds"]), 3),
        })  # fmt: skip
    return buf.getvalue()


def write_outputs(summary: dict[str, Any], *, out_dir: str | Path) -> None:
    """``results.csv`` (atomically) and the figure ``figures/privacy_utility.png``; ``results.json`` is the CLI's."""
    from fedsered.experiments.sweep_plot import plot_privacy_utility

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "results.csv", to_csv(summary["cells"]))
    plot_privacy_utility(summary, path=out_dir / "figures" / "privacy_utility.png")
