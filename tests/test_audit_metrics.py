"""Audit metrics and attacks as pure functions: checked against scipy/sklearn and against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from fedsered.config import ModelConfig
from fedsered.data.types import FeatureSet
from fedsered.errors import ConfigError, DataError
from fedsered.models.build import build_model, random_init_state
from privacy_audits.attacks import dcr_scores, lira_scores, loss_scores, rmia_scores
from privacy_audits.canaries import make_canaries, repeat
from privacy_audits.membership import balanced_membership
from privacy_audits.metrics import (
    auc,
    clopper_pearson_upper,
    epsilon_lower_bound,
    roc,
    summarise,
    tpr_at_fpr,
)
from privacy_audits.signals import logit_confidence, loss, model_signals


def test_roc_and_auc_match_sklearn() -> None:
    g = np.random.default_rng(0)
    member = g.random(500) < 0.4
    score = g.normal(size=500) + member * 0.8
    score[:50] = np.round(score[:50])  # ties
    assert auc(roc(score, member)) == pytest.approx(roc_auc_score(member, score), abs=1e-12)


def test_tpr_at_fpr_exact_values() -> None:
    member = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    score = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    c = roc(score, member)
    assert tpr_at_fpr(c, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(c, 0.34) == pytest.approx(1.0)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 250), (0, 1)])
def test_clopper_pearson_matches_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact").high
    assert float(clopper_pearson_upper(k, n, alpha=0.05)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def _randomised_response(n: int, eps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    member = g.random(n) < 0.5
    truthful = g.random(n) < np.exp(eps) / (1 + np.exp(eps))
    return np.where(truthful, member, ~member).astype(np.float64), member


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0, 4.0])
def test_epsilon_lower_bound_never_exceeds_true_epsilon(eps: float) -> None:
    """Randomised response is exactly eps-DP; the bound holds with confidence 1 - alpha (alpha = 1% here; at 5% about
    1 in 75 draws lands above eps, as a 95% bound should allow)."""
    for seed in range(5):
        score, member = _randomised_response(20_000, eps, seed)
        lb = epsilon_lower_bound(score, member, delta=0.0, alpha=0.01)["epsilon"]
        assert lb <= eps
    assert lb > 0.8 * eps  # and it is not vacuous: with 10k certifying examples it gets close


def test_epsilon_lower_bound_separable_is_bounded_by_sample_size() -> None:
    member = np.arange(200) % 3 == 0
    lb = epsilon_lower_bound(member.astype(float), member, delta=1e-5, alpha=0.05)
    assert 2.0 < lb["epsilon"] < np.log(200)


def test_signals_stable_in_float64() -> None:
    logits = np.array([[60.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    y = np.array([0, 2])
    phi = logit_confidence(logits, y)
    assert phi[0] == pytest.approx(60.0 - np.log(2.0), rel=1e-9)
    assert phi[1] == pytest.approx(np.log(1 / 3) - np.log(2 / 3))
    assert loss(logits, y)[1] == pytest.approx(np.log(3.0))


def test_balanced_membership_halves() -> None:
    m = balanced_membership(300, 16, seed=1)
    assert (m.sum(axis=1) == 8).all()
    assert 0.4 < m[:, 0].mean() < 0.6


def test_dcr_exact_copy_found_at_tpr1_fpr0() -> None:
    g = np.random.default_rng(3)
    x = g.normal(size=(200, 1, 8, 10)).astype(np.float32)
    member = g.random(200) < 0.5
    shared = x[member]  # raw sharing: the records themselves
    c = roc(dcr_scores(x, shared), member)
    assert tpr_at_fpr(c, 0.0) == 1.0


def test_random_untrained_models_give_chance_auc() -> None:
    """Untrained models (each run a different random init, never trained) carry no membership signal."""
    n, runs, n_classes = 240, 8, 4
    g = np.random.default_rng(5)
    x = g.normal(size=(n, 1, 16, 16)).astype(np.float32)
    y = g.integers(0, n_classes, n)
    cfg = ModelConfig(name="cnn_iot", width=8)
    member = balanced_membership(n - 40, runs, seed=2)
    log_p, phi = np.empty((n, runs)), np.empty((n, runs))
    emb_syn = []
    for r in range(runs):
        model = build_model(cfg, n_classes=n_classes, init_state=random_init_state(cfg, n_classes=n_classes, seed=r))
        s = model_signals(model, x, y)
        log_p[:, r], phi[:, r] = s["log_p"], s["phi"]
        emb_syn.append(g.normal(size=(20, 1, 16, 16)).astype(np.float32))  # a shared set unrelated to members
    audited, pop = slice(0, n - 40), slice(n - 40, n)
    scores = {
        "loss": loss_scores(log_p[audited]),
        "lira_online": lira_scores(phi[audited], member),
        "lira_offline": lira_scores(phi[audited], member, online=False),
        "rmia": rmia_scores(log_p[audited], member, log_p[pop]),
        "dcr": np.stack([dcr_scores(x[audited], s) for s in emb_syn], axis=1),
    }
    for name, s in scores.items():
        a = auc(roc(s.ravel(), member.ravel()))
        assert abs(a - 0.5) < 0.06, (name, a)


def test_lira_separates_a_shifted_signal() -> None:
    g = np.random.default_rng(7)
    member = balanced_membership(400, 16, seed=3)
    base = g.normal(size=(400, 1)) * 3.0
    phi = base + g.normal(size=(400, 16)) * 0.5 + member * 1.0
    kw = {"fprs": (0.01,), "delta": 1e-5, "alpha": 0.05}
    on = summarise(lira_scores(phi, member).ravel(), member.ravel(), **kw)  # type: ignore[arg-type]
    off = summarise(lira_scores(phi, member, online=False).ravel(), member.ravel(), **kw)  # type: ignore[arg-type]
    raw = summarise(phi.ravel(), member.ravel(), **kw)  # type: ignore[arg-type]
    assert on["auc"] > 0.8 and off["auc"] > 0.8
    assert on["auc"] > raw["auc"] + 0.1  # per-example calibration beats the raw (LOSS-like) signal


def test_rmia_scores_in_unit_interval_and_informative() -> None:
    g = np.random.default_rng(8)
    member = balanced_membership(300, 8, seed=4)
    log_p = np.log(np.clip(0.3 + 0.4 * member + 0.1 * g.normal(size=(300, 8)), 1e-3, 1))
    log_pop = np.log(np.clip(0.3 + 0.1 * g.normal(size=(100, 8)), 1e-3, 1))
    for a in (None, 0.5):
        s = rmia_scores(log_p, member, log_pop, offline_a=a)
        assert s.min() >= 0 and s.max() <= 1
        assert auc(roc(s.ravel(), member.ravel())) > 0.9


def test_bad_inputs_raise_data_error() -> None:
    with pytest.raises(DataError):
        roc(np.ones(3), np.ones(3, dtype=bool))
    with pytest.raises(DataError):
        lira_scores(np.ones((3, 2)), np.ones((3, 3), dtype=bool))
    with pytest.raises(DataError):
        dcr_scores(np.ones((2, 4)), np.ones((0, 4)))


def test_canaries_mislabelled_and_ood() -> None:
    g = np.random.default_rng(9)
    src = FeatureSet(
        g.normal(size=(20, 1, 8, 6)).astype(np.float32), g.integers(0, 5, 20).astype(np.int64),
        np.array(["s"] * 20), np.array([f"u{i}" for i in range(20)]),
    )  # fmt: skip
    mis = make_canaries(src, n=10, kind="mislabel", n_classes=5, seed=0)
    orig = {u: i for i, u in enumerate(src.utterance_id)}
    idx = [orig[u.removeprefix("canary/mislabel/")] for u in mis.utterance_id]
    assert (mis.y != src.y[idx]).all() and np.array_equal(mis.x, src.x[idx])
    ood = make_canaries(src, n=4, kind="ood", n_classes=5, seed=0)
    idx = [orig[u.removeprefix("canary/ood/")] for u in ood.utterance_id]
    assert np.array_equal(ood.x, src.x[idx][:, :, ::-1, :])
    assert len(repeat(ood, 3)) == 12
    with pytest.raises(ConfigError):
        make_canaries(src, n=21, kind="ood", n_classes=5, seed=0)
