"""``fedsered audit``: the whole audit as a pipeline of plain steps — plan → shadow runs and one-run experiments
(Ray) → attack scores → metrics → saved scores, figures and report. Returns the ``results.json`` content; the CLI
writes it. Every finished run is kept in the run folder, so an interrupted audit resumes where it stopped (the same
config only: ``DIR/audit.json`` records its digest)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.errors import DataError, FedseredError
from fedsered.io import atomic_write_bytes, atomic_write_json
from fedsered.resume import check_resume, config_digest
from privacy_audits.evaluate import (
    ReplayScores,
    TargetScores,
    attack_metrics,
    attack_scores,
    one_run_metrics,
    roc_points,
    target_metrics,
)
from privacy_audits.metrics import privacy_gain
from privacy_audits.report import THREAT_MODEL, render, roc_figure, tradeoff_figure
from privacy_audits.shadows import Progress, make_one_run_plan, make_plan, run_shadows
from privacy_audits.targets import parse_target


def save_scores(path: Path, ts: TargetScores, *, headline: str, example_id: np.ndarray) -> None:
    """``DIR/scores/<pipeline>.npz``: ``score``, ``member``, ``example_id`` and ``run`` of the headline attack's
    (utterance, run) pairs; ``score_<attack>`` for every model/shared-set attack over all real audited pairs
    (``matrix_member``, ``matrix_example_id``, ``matrix_run``) and the same for canaries (``canary_member``,
    ``canary_score_<attack>``); the server-knowledge attack's own pairs as ``replay_*``; offline RMIA's ``a`` per
    run as ``rmia_offline_a``. Flattened row-major from [n, runs]."""
    real, can = ~ts.is_canary, ts.is_canary
    n_runs = ts.member.shape[1]
    matrix = {
        "matrix_member": ts.member[real].ravel(),
        "matrix_example_id": np.repeat(example_id[real], n_runs).astype(str),
        "matrix_run": np.tile(np.arange(n_runs), int(real.sum())),
    }
    if headline in ts.scores:
        head = {"score": ts.scores[headline][real].ravel(), "member": matrix["matrix_member"],
                "example_id": matrix["matrix_example_id"], "run": matrix["matrix_run"]}  # fmt: skip
    else:  # the server-knowledge attack leads
        assert ts.replay is not None
        r = ts.replay
        head = {"score": r.score, "member": r.member, "example_id": example_id[r.example].astype(str), "run": r.run}
    arrays: dict[str, np.ndarray] = {
        **head, **matrix,
        "canary_member": ts.member[can].ravel(),
        "canary_example_id": np.repeat(example_id[can], n_runs).astype(str),
    }  # fmt: skip
    for name, s in ts.scores.items():
        arrays[f"score_{name}"] = s[real].ravel()
        arrays[f"canary_score_{name}"] = s[can].ravel()
    if ts.replay is not None:  # the server-knowledge attack's own (example, run) pairs
        r = ts.replay
        arrays |= {"replay_score": r.score, "replay_member": r.member, "replay_run": r.run, "replay_example": r.example}
    if ts.rmia_offline_a is not None:  # the a offline RMIA used per target run
        arrays["rmia_offline_a"] = ts.rmia_offline_a
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
    dp_targets = tuple(t for t in targets if parse_target(t).is_dp)
    check_resume(out_dir, spec_name="audit.json", digest=audit_digest(cfg), cfg=cfg, what="membership audit",
                 may_change="audit.workers, audit.pipelines, federation.ray_address and output")  # fmt: skip
    plan = make_plan(cfg, data)
    one = make_one_run_plan(cfg, data, plan) if a.one_run_canaries and dp_targets else None
    w = a.workers if workers is None else workers
    runs, one_runs = run_shadows(cfg, data, plan, targets=targets, workers=w, out_dir=out_dir, progress=progress,
                                 one_run=one, one_run_targets=dp_targets if one else ())  # fmt: skip
    pipelines: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    scores_paths = {}
    for t in targets:
        ts = attack_scores(runs[t], plan, a)
        pipelines[t] = target_metrics(ts, runs[t], a)
        if t in one_runs:
            assert one is not None
            pipelines[t]["one_run"] = one_run_metrics(one_runs[t], one, a)
        head = pipelines[t]["headline_attack"]
        fpr, tpr = roc_points(ts, head)
        curves[t] = (fpr, tpr, head)
        rel = f"scores/{t}.npz"
        save_scores(out_dir / rel, ts, headline=head, example_id=plan.audited.utterance_id)
        scores_paths[t] = rel
    results = finish(
        pipelines, curves, cfg=cfg, settings={
            "shadows": a.shadows, "clients": a.clients, "audited": int((~plan.is_canary).sum()),
            "population": len(plan.population), "canaries": a.canaries, "canary_kind": a.canary_kind,
            "canary_copies": a.canary_copies, "alpha": a.alpha, "delta": a.delta, "fpr": list(a.fpr),
            "lira_global_variance": a.lira_global_variance, "workers": w, "model": cfg.model.name,
            "ray_address": cfg.federation.ray_address,
            "rmia_offline_a": a.rmia_offline_a, "domias_dim": a.domias_dim,
            "one_run": None if one is None else {
                "canaries_per_run": a.one_run_canaries, "runs": a.one_run_runs, "fractions": list(a.one_run_fractions),
            },
        }, scores=scores_paths, command=command, out_dir=out_dir,
    )  # fmt: skip
    results["seconds"] = time.perf_counter() - start
    results["cpu_s"] = {
        "driver": time.process_time() - cpu0,
        "shadow_runs": float(sum(r["cpu_s"] for r in pipelines.values())),
        "one_runs": float(sum(o.cpu_s for rs in one_runs.values() for o in rs)),
    }
    return results


RESUMABLE_CHANGES = {"output": True, "audit": {"workers", "pipelines"}}
"""What may change between an audit and its resumption (every finished run stays valid): the config digest skips it,
and ``federation.ray_address`` (a run is the same on any cluster), which ``audit_digest`` sets aside."""


def audit_digest(cfg: Config) -> str:
    """The digest an audit's run folder records: the config without ``RESUMABLE_CHANGES`` and with no
    ``federation.ray_address`` (so a folder started locally resumes on a cluster and back; digests of configs without
    one are unchanged)."""
    local = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"ray_address": None})})
    return config_digest(local, exclude=RESUMABLE_CHANGES)


def finish(
    pipelines: dict[str, Any],
    curves: dict[str, tuple[np.ndarray, np.ndarray, str]],
    *,
    cfg: Config,
    settings: dict[str, Any],
    scores: dict[str, str],
    command: str,
    out_dir: Path,
) -> dict[str, Any]:
    """Privacy gains, figures and report from the per-target metrics; returns the results without timings."""
    gains = {}
    if "raw_sharing" in pipelines:
        raw_adv = pipelines["raw_sharing"]["advantage"]
        gains = {t: privacy_gain(raw_adv, r["advantage"]) for t, r in pipelines.items()}
    results: dict[str, Any] = {
        "threat_model": THREAT_MODEL, "pipelines": pipelines, "privacy_gain": gains, "settings": settings,
        "scores": scores, "command": command,
    }  # fmt: skip
    fpr_key = str(max(cfg.audit.fpr))
    figures = {"roc": roc_figure(curves), "privacy_utility": tradeoff_figure(pipelines, fpr_key=fpr_key)}
    results["files"] = render(results, figures, out_dir=out_dir)
    return results


def load_scores(path: Path) -> TargetScores:
    """The ``TargetScores`` saved by ``save_scores`` (real audited examples first, then canaries).

    Raises:
        DataError: the file is missing, truncated, corrupt or lacks an array ``save_scores`` writes (one line).
    """
    try:
        return _read_scores(path)
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable scores file of an audit ({exc.__class__.__name__}: {exc})") from None


def _read_scores(path: Path) -> TargetScores:
    with np.load(path, allow_pickle=False) as z:
        key = "matrix_" if "matrix_member" in z.files else ""  # files from before the replay attack: no prefix
        n_runs = int(z[f"{key}run"].max()) + 1 if len(z[f"{key}run"]) else 1
        member = np.concatenate([z[f"{key}member"].reshape(-1, n_runs), z["canary_member"].reshape(-1, n_runs)])
        names = [k.removeprefix("score_") for k in z.files if k.startswith("score_")]
        scores = {
            n: np.concatenate([z[f"score_{n}"].reshape(-1, n_runs), z[f"canary_score_{n}"].reshape(-1, n_runs)])
            for n in names
        }
        n_can = len(z["canary_member"]) // n_runs
        replay = None
        if "replay_score" in z.files:
            replay = ReplayScores(score=z["replay_score"], member=z["replay_member"], run=z["replay_run"],
                                  example=z["replay_example"])  # fmt: skip
        a = z["rmia_offline_a"] if "rmia_offline_a" in z.files else None
    is_canary = np.arange(len(member)) >= len(member) - n_can
    return TargetScores(scores=scores, member=member, is_canary=is_canary, replay=replay, rmia_offline_a=a)


KEPT: tuple[str, ...] = ("uar", "uar_std", "epsilon_accounted", "bytes_up_total", "runs", "cpu_s")
"""What ``rescore`` keeps of each pipeline's entry (the runs' utility, bytes and accounted ε; and the one-run
audit's result, when there is one)."""


def _audit_results(path: Path) -> dict[str, Any]:
    """An audit's ``results.json``, checked to hold what ``rescore`` reads (else one ``DataError``)."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable audit results.json ({exc}); run fedsered audit again") from None
    ok = isinstance(results, dict) and all(k in results for k in ("pipelines", "scores", "settings", "command"))
    ok = ok and isinstance(results["pipelines"], dict) and isinstance(results["scores"], dict)
    bad = [] if not ok else [
        name for name, entry in results["pipelines"].items()
        if not (isinstance(entry, dict) and all(k in entry for k in KEPT)
                and isinstance(results["scores"].get(name), str))
    ]  # fmt: skip
    if not ok or bad:
        what = f"pipeline {bad[0]!r} lacks its entries or scores file" if bad else "lacks pipelines, scores, settings"
        raise DataError(f"{path}: not the results.json of an audit ({what}); run fedsered audit again")
    return results


def rescore(out_dir: Path, cfg: Config) -> dict[str, Any]:
    """Recompute every attack metric, figure and the report of a finished audit from its saved scores
    (``DIR/scores/*.npz``) and its ``results.json`` (utility, bytes and accounted ε of the runs are kept); rewrites
    ``results.json`` atomically and returns it."""
    results = _audit_results(out_dir / "results.json")
    pipelines, curves = {}, {}
    for name, old in results["pipelines"].items():
        ts = load_scores(out_dir / results["scores"][name])
        keep = {k: old[k] for k in (*KEPT, "one_run", "nodes") if k in old}
        pipelines[name] = {**keep, **attack_metrics(ts, cfg.audit)}
        fpr, tpr = roc_points(ts, pipelines[name]["headline_attack"])
        curves[name] = (fpr, tpr, pipelines[name]["headline_attack"])
    new = finish(pipelines, curves, cfg=cfg, settings=results["settings"], scores=results["scores"],
                 command=results["command"], out_dir=out_dir)  # fmt: skip
    new.update({k: results[k] for k in ("seconds", "cpu_s") if k in results})
    atomic_write_json(out_dir / "results.json", new)
    return new


if __name__ == "__main__":  # python -m privacy_audits.run --rescore DIR
    import argparse
    import sys

    from fedsered.config import load_config

    parser = argparse.ArgumentParser(description="recompute an audit's metrics and report from its saved scores")
    parser.add_argument("--rescore", metavar="DIR", required=True, type=Path)
    ns = parser.parse_args()
    try:
        rescore(ns.rescore, load_config(ns.rescore / "config.yaml"))
    except FedseredError as exc:
        print(f"python -m privacy_audits.run --rescore: error: {exc}", file=sys.stderr)
        sys.exit(2)
