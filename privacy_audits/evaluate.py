"""From the shadow runs of one target to its attack scores and metrics (the scores → metrics step, no I/O).

Every run in turn is the target, the others its shadows (leave-one-out), so a target with R runs and n audited
examples gives ``n × R`` (score, member) pairs per attack. The headline of a target is its strongest attack by TPR at
the largest configured FPR; the ε lower bound's threshold is chosen on the even-numbered runs and certified on
the odd-numbered ones; a target's bound is the largest over the attacks, each computed at significance
``alpha / (attacks × example groups)`` (Bonferroni; groups: audited utterances, canaries), so taking the maximum keeps
the stated confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsered.config import AuditConfig
from privacy_audits import one_run
from privacy_audits.attacks import lira_scores, loss_scores, rmia_scores, tune_offline_a
from privacy_audits.metrics import roc, summarise
from privacy_audits.shadows import AuditPlan, OneRunOutput, OneRunPlan, ShadowOutput


@dataclass(frozen=True)
class ReplayScores:
    """The server-knowledge attack's (example, run) pairs: ``score``, ``member``, ``run``, ``example`` (row of the
    audited examples), each ``[pairs]``."""

    score: np.ndarray
    member: np.ndarray
    run: np.ndarray
    example: np.ndarray


@dataclass(frozen=True)
class TargetScores:
    """Attack name → ``[n, runs]`` scores, and the ``[n, runs]`` membership they are judged against; ``replay`` the
    server-knowledge attack's pairs (synthetic targets), judged on its own."""

    scores: dict[str, np.ndarray]
    member: np.ndarray
    is_canary: np.ndarray
    replay: ReplayScores | None = None
    rmia_offline_a: np.ndarray | None = None


def attack_scores(runs: list[ShadowOutput], plan: AuditPlan, cfg: AuditConfig) -> TargetScores:
    """Every attack's scores for one target's runs (in run order)."""
    col = np.stack
    log_p = col([o.log_p for o in runs], axis=1)
    phi = col([o.phi for o in runs], axis=1)
    log_p_pop = col([o.log_p_pop for o in runs], axis=1)
    m = plan.member[:, [o.run for o in runs]]
    gv = cfg.lira_global_variance
    a = (
        tune_offline_a(log_p, m, log_p_pop, gamma=cfg.rmia_gamma)
        if cfg.rmia_offline_a == "tune"
        else np.full(len(runs), float(cfg.rmia_offline_a))
    )
    scores = {
        "loss": loss_scores(log_p),
        "lira_online": lira_scores(phi, m, online=True, global_variance=gv),
        "lira_offline": lira_scores(phi, m, online=False, global_variance=gv),
        "rmia_online": rmia_scores(log_p, m, log_p_pop, gamma=cfg.rmia_gamma),
        "rmia_offline": rmia_scores(log_p, m, log_p_pop, gamma=cfg.rmia_gamma, offline_a=a),
    }
    shared = {
        "dcr_feature": [o.dcr_feature for o in runs if o.dcr_feature is not None],
        "dcr_embedding": [o.dcr_embedding for o in runs if o.dcr_embedding is not None],
        "domias": [o.domias for o in runs if o.domias is not None],
    }
    for name, cols in shared.items():
        if len(cols) == len(runs):  # attacks on the shared set: only where every run shared examples
            scores[name] = col(cols, axis=1)
    replay = None
    done = [(o.run, o.replay_index, o.replay) for o in runs if o.replay is not None and o.replay_index is not None]
    if done:
        idx = np.concatenate([i for _, i, _ in done])
        run = np.concatenate([np.full(len(i), r) for r, i, _ in done])
        replay = ReplayScores(score=np.concatenate([s for _, _, s in done]), member=plan.member[idx, run], run=run,
                              example=idx)  # fmt: skip
    return TargetScores(scores=scores, member=m, is_canary=plan.is_canary, replay=replay, rmia_offline_a=a)


def _metrics(
    scores: dict[str, np.ndarray], member: np.ndarray, rows: np.ndarray, cfg: AuditConfig, *, tests: int
) -> dict[str, Any]:
    alpha = cfg.alpha / tests
    even_runs = np.broadcast_to(np.arange(member.shape[1]) % 2 == 0, member.shape)[rows].ravel()
    out = {}
    for name, s in scores.items():
        out[name] = summarise(
            s[rows].ravel(), member[rows].ravel(), fprs=cfg.fpr, delta=cfg.delta, alpha=alpha, select=even_runs
        )
    return out


def attack_metrics(ts: TargetScores, cfg: AuditConfig) -> dict[str, Any]:
    """The attack part of a target's results: headline (``auc``, ``tpr_at_fpr``, ``advantage``,
    ``headline_attack``), ``epsilon_lower_bound`` with the design's ceiling ``epsilon_certifiable`` (the largest
    bound a perfect attack could certify at the same significance), and every attack's metrics on the real audited
    utterances (``attacks``) and on the canaries (``canaries``); ``rmia_offline_a`` the mean ``a`` offline RMIA used."""
    real = ~ts.is_canary
    tests = len(ts.scores) * (2 if ts.is_canary.any() else 1) + (ts.replay is not None)  # every ε bound maximised
    attacks = _metrics(ts.scores, ts.member, real, cfg, tests=tests)
    if ts.replay is not None:
        r = ts.replay
        attacks["server_replay"] = summarise(r.score, r.member, fprs=cfg.fpr, delta=cfg.delta,
                                             alpha=cfg.alpha / tests, select=r.run % 2 == 0)  # fmt: skip
    key = str(max(cfg.fpr))
    head = max(attacks, key=lambda a: (attacks[a]["tpr_at_fpr"][key], attacks[a]["auc"]))
    canaries = _metrics(ts.scores, ts.member, ts.is_canary, cfg, tests=tests) if ts.is_canary.any() else {}
    lb_all = [v["epsilon_lower_bound"] for v in [*attacks.values(), *canaries.values()]]
    ceiling = [v["epsilon_certifiable"] for v in [*attacks.values(), *canaries.values()]]
    extra = {} if ts.rmia_offline_a is None else {"rmia_offline_a": float(np.mean(ts.rmia_offline_a))}
    return {
        "auc": attacks[head]["auc"],
        "tpr_at_fpr": attacks[head]["tpr_at_fpr"],
        "advantage": attacks[head]["advantage"],
        "headline_attack": head,
        "epsilon_lower_bound": float(max(lb_all)),
        "epsilon_certifiable": float(max(ceiling)),
        "audited": int(real.sum()),
        "canaries_audited": int(ts.is_canary.sum()),
        "attacks": attacks,
        "canaries": canaries,
        **extra,
    }


def target_metrics(ts: TargetScores, runs: list[ShadowOutput], cfg: AuditConfig) -> dict[str, Any]:
    """The results.json entry of one target: utility, cost and accounted ε of its runs, the number of Ray nodes they
    ran on (``nodes``: 0 in-process; infrastructure telemetry), then ``attack_metrics``."""
    eps_acc = [o.epsilon_accounted for o in runs if o.epsilon_accounted is not None]
    uars = np.array([o.uar for o in runs])
    return {
        "uar": float(uars.mean()),
        "uar_std": float(uars.std()),
        "epsilon_accounted": max(eps_acc) if eps_acc else None,
        "bytes_up_total": int(np.mean([o.bytes_up_total for o in runs])),
        "runs": len(runs),
        "cpu_s": float(sum(o.cpu_s for o in runs)),
        "nodes": len({o.node for o in runs if o.node}),
        **attack_metrics(ts, cfg),
    }


def roc_points(ts: TargetScores, attack: str) -> tuple[np.ndarray, np.ndarray]:
    """FPR and TPR of ``attack`` on the real audited utterances (for the ROC figure)."""
    if attack == "server_replay" and ts.replay is not None:
        c = roc(ts.replay.score, ts.replay.member)
        return c.fpr, c.tpr
    real = ~ts.is_canary
    c = roc(ts.scores[attack][real].ravel(), ts.member[real].ravel())
    return c.fpr, c.tpr


def one_run_metrics(runs: list[OneRunOutput], one: OneRunPlan, cfg: AuditConfig) -> dict[str, Any]:
    """The one-run audit of one DP target (``privacy_audits.one_run``): per attack (the canaries' LOSS on the
    global model; DCR and DOMIAS against the shared set where examples are shared) the ε lower bound over all
    experiments pooled, at ``alpha`` split over the attacks (Bonferroni), with the design's ceiling beside it.

    Returns:
        ``{"epsilon_lower_bound", "epsilon_certifiable", "attack", "runs", "canaries", "uar", "attacks"}``.
    """
    member = one.member[:, [o.run for o in runs]]
    run_idx = np.broadcast_to(np.arange(member.shape[1]), member.shape).ravel()
    attacks = {"loss": np.stack([o.log_p for o in runs], axis=1)}
    for name in ("dcr_feature", "domias"):
        cols = [getattr(o, name) for o in runs if getattr(o, name) is not None]
        if len(cols) == len(runs):
            attacks[name] = np.stack(cols, axis=1)
    alpha = cfg.alpha / len(attacks)
    per = {
        name: one_run.audit(
            s.ravel(), member.ravel(), run_idx, delta=cfg.delta, alpha=alpha, fractions=cfg.one_run_fractions
        )
        for name, s in attacks.items()
    }
    best = max(per, key=lambda n: float(per[n]["epsilon"]))
    return {
        "epsilon_lower_bound": float(per[best]["epsilon"]),
        "epsilon_certifiable": float(per[best]["certifiable"]),
        "attack": best,
        "runs": len(runs),
        "canaries": int(member.size),
        "uar": float(np.mean([o.uar for o in runs])),
        "attacks": per,
    }
