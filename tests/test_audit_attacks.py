"""Sanity checks that can fail for the audit's newer parts: the one-run audit recovers randomised response's known ε
(and certifies nothing where nothing leaks), DOMIAS finds copies and not independent sets, offline RMIA's tuned ``a``
never looks at the target, an untrained model's RMIA is at chance, and every bound carries its design's ceiling."""

from __future__ import annotations

import numpy as np
import pytest

from fedsered.errors import DataError
from privacy_audits import one_run
from privacy_audits.attacks import domias_scores, rmia_scores, tune_offline_a
from privacy_audits.metrics import auc, certifiable_epsilon, epsilon_lower_bound, roc


def randomised_response(n: int, eps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fair coins and their ε-DP randomised responses (the attacker's score: the response, ties broken)."""
    g = np.random.default_rng(seed)
    member = g.random(n) < 0.5
    keep = g.random(n) < 1 / (1 + np.exp(-eps))
    response = np.where(keep, member, ~member)
    return response + 1e-3 * g.random(n), member


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0])
def test_one_run_recovers_randomised_response_epsilon(eps: float) -> None:
    """RR with a known ε: the one-run bound holds (≤ ε) and is tight (within 15 % of ε) with 20 000 records."""
    score, member = randomised_response(20_000, eps, seed=int(eps * 10))
    res = one_run.audit(score, member, np.zeros(len(score), int), delta=1e-5, alpha=0.05, fractions=(1.0, 0.5))
    assert 0.85 * eps <= res["epsilon"] <= eps, res
    assert res["certifiable"] > 2 * eps


def test_one_run_certifies_nothing_without_leakage_and_everything_a_perfect_guesser_can() -> None:
    g = np.random.default_rng(0)
    member = g.random(400) < 0.5
    run = np.arange(400) % 4
    blind = one_run.audit(g.random(400), member, run, delta=1e-5, alpha=0.05, fractions=(1.0, 0.5, 0.25))
    assert blind["epsilon"] < 0.3, blind
    # guessing 90 %: the top 45 % IN and the bottom 45 % OUT of each run, all right for a perfect score (here each
    # run holds 50 IN and 50 OUT)
    member = (np.arange(400) // 4) % 2 == 0
    perfect = one_run.audit(member.astype(float), member, run, delta=1e-5, alpha=0.05, fractions=(0.9,))
    assert perfect["correct"] == perfect["guesses"] == 360
    assert perfect["epsilon"] == pytest.approx(perfect["certifiable"]) and perfect["certifiable"] > 4
    # the ceiling grows with the number of canaries and shrinks with δ's share of the p-value
    small = one_run.audit(member[:100].astype(float), member[:100], run[:100], delta=1e-5, alpha=0.05,
                          fractions=(0.9,))  # fmt: skip
    assert small["certifiable"] < perfect["certifiable"]


def test_one_run_p_value_is_monotone_and_checks_its_counts() -> None:
    ps = [one_run.p_value(m=200, r=100, v=80, epsilon=e, delta=1e-5) for e in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert ps == sorted(ps) and ps[0] < 1e-3 and ps[-1] == pytest.approx(1.0, abs=1e-3)
    assert one_run.p_value(m=200, r=100, v=80, epsilon=1.0, delta=1e-2) > one_run.p_value(
        m=200, r=100, v=80, epsilon=1.0, delta=0.0
    )
    with pytest.raises(DataError, match="correct"):
        one_run.p_value(m=10, r=5, v=6, epsilon=1.0, delta=0.0)


def low_rank(g: np.random.Generator, n: int, basis: np.ndarray) -> np.ndarray:
    return g.normal(size=(n, basis.shape[0])) @ basis + 0.1 * g.normal(size=(n, basis.shape[1]))


def test_domias_finds_copies_and_not_an_independent_set() -> None:
    g = np.random.default_rng(0)
    basis = g.normal(size=(5, 300))
    members, others, reference = low_rank(g, 40, basis), low_rank(g, 40, basis), low_rank(g, 200, basis)
    queries, truth = np.r_[members, others], np.r_[np.ones(40, bool), np.zeros(40, bool)]
    copied = auc(roc(domias_scores(queries, members, reference), truth))
    independent = auc(roc(domias_scores(queries, low_rank(g, 40, basis), reference), truth))
    assert copied > 0.9, copied
    assert abs(independent - 0.5) < 0.1, independent
    with pytest.raises(DataError, match="domias"):
        domias_scores(queries, members[:0], reference)


def signals(n: int, runs: int, effect: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log p_y of ``n`` audited and 100 population examples on ``runs`` models; IN examples gain ``effect``."""
    g = np.random.default_rng(seed)
    member = (g.random((n, runs)).argsort(axis=1) < runs // 2)
    hardness = g.normal(-1.5, 0.6, size=(n, 1))
    log_p = np.minimum(hardness + 0.2 * g.normal(size=(n, runs)) + effect * member, -1e-3)
    pop = np.minimum(g.normal(-1.5, 0.6, size=(100, 1)) + 0.2 * g.normal(size=(100, runs)), -1e-3)
    return log_p, member, pop


def test_rmia_untrained_model_is_at_chance_and_a_trained_one_is_not() -> None:
    log_p, member, pop = signals(300, 8, effect=0.0, seed=1)
    a = tune_offline_a(log_p, member, pop)
    assert set(a.tolist()) <= {round(x, 2) for x in np.linspace(0, 1, 11)}
    untrained = auc(roc(rmia_scores(log_p, member, pop, offline_a=a).ravel(), member.ravel()))
    assert abs(untrained - 0.5) < 0.05, untrained
    log_p, member, pop = signals(300, 8, effect=0.5, seed=1)
    trained = auc(roc(rmia_scores(log_p, member, pop, offline_a=tune_offline_a(log_p, member, pop)).ravel(),
                      member.ravel()))  # fmt: skip
    assert trained > 0.75, trained


def test_tuned_a_never_looks_at_the_target_run() -> None:
    """The ``a`` of target ``t`` comes from a pseudo-target among the references: flipping target ``t``'s own
    membership and signals leaves it unchanged."""
    log_p, member, pop = signals(200, 6, effect=0.4, seed=2)
    a = tune_offline_a(log_p, member, pop)
    t = 3
    m2, lp2 = member.copy(), log_p.copy()
    m2[:, t] = ~m2[:, t]
    lp2[:, t] = np.random.default_rng(9).normal(-1.5, 0.6, size=len(lp2))
    lp2 = np.minimum(lp2, -1e-3)
    assert tune_offline_a(lp2, m2, pop)[t] == a[t]


def test_every_bound_carries_its_ceiling() -> None:
    g = np.random.default_rng(0)
    member = g.random(2000) < 0.5
    perfect = epsilon_lower_bound(member.astype(float), member, delta=1e-5, alpha=0.05)
    assert perfect["epsilon"] == pytest.approx(perfect["certifiable"])
    assert perfect["certifiable"] == certifiable_epsilon(n_in=perfect["n_in"], n_out=perfect["n_out"], delta=1e-5,
                                                         alpha=0.05)  # fmt: skip
    blind = epsilon_lower_bound(g.random(2000), member, delta=1e-5, alpha=0.05)
    assert blind["epsilon"] < 0.5 < blind["certifiable"] == pytest.approx(perfect["certifiable"], rel=0.1)
    assert certifiable_epsilon(n_in=256, n_out=256, delta=1e-5, alpha=0.05) < certifiable_epsilon(
        n_in=2560, n_out=2560, delta=1e-5, alpha=0.05
    )
