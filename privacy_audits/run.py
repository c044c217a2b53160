"""``fedsered audit``: the whole audit as a pipeline of plain steps — plan → shadow runs (Ray) → attack scores →
metrics → saved scores, figures and report. Returns the ``results.json`` content; the CLI writes it."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.io import atomic_write_bytes
from privacy_audits.evaluate import TargetScores, attack_scores, roc_points, target_metrics
from privacy_audits.metrics import privacy_gain
from privacy_audits.report import THREAT_MODEL, render, roc_figure, tradeoff_figure
from privacy_audits.shadows import Progress, make_plan, run_shadows
from privacy_audits.targets import parse_target


def save_scores(path: Path, ts: TargetScores, *, headline: str, example_id: np.ndarray) -> None:
    """``DIR/scores/<pipeline>.npz``: ``score`` (headline attack) and ``member`` over the real audited (utterance,
    run) pairs, ``score_<attack>`` for every attack, and the same for canaries (``canary_member``,
    ``canary_score_<attack>``), with ``example_id`` and ``run`` of each pair. Flattened row-major from [n, runs]."""
    real, can = ~ts.is_canary, ts.is_canary
    n_runs = ts.member.shape[1]
    arrays: dict[str, np.ndarray] = {
        "score": ts.scores[headline][real].ravel(),
        "member": ts.member[real].ravel(),
        "example_id": np.repeat(example_id[real], n_runs).astype(str),
        "run": np.tile(np.arange(n_runs), int(real.sum())),
        "canary_member": ts.member[can].ravel(),
        "canary_example_id": np.repeat(example_id[can], n_runs).astype(str),
    }
    for name, s in ts.scores.items():
        arrays[f"score_{name}"] = s[real].ravel()
        arrays[f"canary_score_{name}"] = s[can].ravel()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def run_audit(
    cfg: Config,
    data: Dataset,
    *,
    out_dir: Path,
    command: str,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Audit every configured target.

    Args:
        cfg: the whole config (``audit`` plus the pipelines' sections).
        data: the prepared dataset.
        out_dir: the run folder (scores, figures, report and Ray's temporary folder go there).
        command: the command line that reproduces the run (written into the report).
        workers: overrides ``audit.workers``.
        progress: ``(stage, done, total)`` callback.

    Returns:
        The ``results.json`` content (``pipelines`` per the output contract, plus settings and timings).
    """
    start, cpu0 = time.perf_counter(), time.process_time()
    a = cfg.audit
    targets = list(dict.fromkeys(a.pipelines))
    for t in targets:
        parse_target(t)
    plan = make_plan(cfg, data)
    w = a.workers if workers is None else workers
    runs = run_shadows(cfg, data, plan, targets=targets, workers=w, out_dir=out_dir, progress=progress)
    pipelines: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    scores_paths = {}
    for t in targets:
        ts = attack_scores(runs[t], plan, a)
        pipelines[t] = target_metrics(ts, runs[t], a)
        head = pipelines[t]["headline_attack"]
        fpr, tpr = roc_points(ts, head)
        curves[t] = (fpr, tpr, head)
        rel = f"scores/{t}.npz"
        save_scores(out_dir / rel, ts, headline=head, example_id=plan.audited.utterance_id)
        scores_paths[t] = rel
    gains = {}
    if "raw_sharing" in pipelines:
        raw_adv = pipelines["raw_sharing"]["advantage"]
        gains = {t: privacy_gain(raw_adv, r["advantage"]) for t, r in pipelines.items()}
    shadow_cpu = float(sum(r["cpu_s"] for r in pipelines.values()))
    results: dict[str, Any] = {
        "threat_model": THREAT_MODEL,
        "pipelines": pipelines,
        "privacy_gain": gains,
        "settings": {
            "shadows": a.shadows, "clients": a.clients, "audited": int((~plan.is_canary).sum()),
            "population": len(plan.population), "canaries": a.canaries, "canary_kind": a.canary_kind,
            "canary_copies": a.canary_copies, "alpha": a.alpha, "delta": a.delta, "fpr": list(a.fpr),
            "lira_global_variance": a.lira_global_variance, "workers": w, "model": cfg.model.name,
        },
        "scores": scores_paths,
        "command": command,
    }
    fpr_key = str(max(a.fpr))
    figures = {"roc": roc_figure(curves), "privacy_utility": tradeoff_figure(pipelines, fpr_key=fpr_key)}
    results["files"] = render(results, figures, out_dir=out_dir)
    results["seconds"] = time.perf_counter() - start
    results["cpu_s"] = {"driver": time.process_time() - cpu0, "shadow_runs": shadow_cpu}
    return results
