"""Privacy accounting, releases, the per-client ledger and the resolution of per-client settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

import fedsered.io
from fedsered.config import PrivacyConfig, load_config
from fedsered.errors import ConfigError, PayloadError, PrivacyBudgetError
from fedsered.privacy.accountant import RDP_ALPHAS, calibrate_noise, epsilon_of, privacy_object, releases_of
from fedsered.privacy.client import check_overrides, client_privacy
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.release import PrivacyRelease

R1 = PrivacyRelease(mechanism="dp_dm", noise_multiplier=2.0, sample_rate=0.1, steps=100)
R2 = PrivacyRelease(mechanism="dp_gm_psg", noise_multiplier=1.5, sample_rate=0.2, steps=40)


def independent_rdp_epsilon(releases: list[PrivacyRelease], delta: float) -> float:
    """ε recomputed from the logged (σ, q, steps) with Opacus' RDP analysis directly (no fedsered code)."""
    rdp = sum(
        rdp_analysis.compute_rdp(q=r.sample_rate, noise_multiplier=r.noise_multiplier, steps=r.steps,
                                 orders=list(RDP_ALPHAS))
        for r in releases
    )  # fmt: skip
    eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ALPHAS), rdp=rdp, delta=delta)
    return float(eps)


def test_release_json_round_trip_and_validation() -> None:
    assert PrivacyRelease.from_json(json.loads(json.dumps(R1.to_json()))) == R1
    with pytest.raises(PayloadError, match="not a privacy release"):
        PrivacyRelease.from_json({"noise_multiplier": 1.0, "steps": 3})
    with pytest.raises(ValueError, match="sample_rate"):
        PrivacyRelease(mechanism="x", noise_multiplier=1.0, sample_rate=1.5, steps=1)


def test_epsilon_composes_releases_with_the_accountant_not_by_addition() -> None:
    one, two = epsilon_of([R1], delta=1e-5, accountant="rdp"), epsilon_of([R2], delta=1e-5, accountant="rdp")
    both = epsilon_of([R1, R2], delta=1e-5, accountant="rdp")
    assert max(one, two) < both < one + two
    assert both == pytest.approx(independent_rdp_epsilon([R1, R2], 1e-5), rel=1e-9)
    acc = RDPAccountant()  # Opacus' own accountant with its history, as a reader of results.json would do it
    acc.history = [(r.noise_multiplier, r.sample_rate, r.steps) for r in (R1, R2)]
    assert both <= acc.get_epsilon(delta=1e-5) + 1e-9  # wider orders can only tighten the bound
    assert epsilon_of([], delta=1e-5, accountant="rdp") == 0.0


def test_prv_accountant_is_selectable_and_close_to_rdp() -> None:
    rdp, prv = (epsilon_of([R1], delta=1e-5, accountant=a) for a in ("rdp", "prv"))
    assert 0 < prv <= rdp * 1.05


def test_calibrated_noise_meets_the_target_tightly() -> None:
    for eps in (1.0, 8.0):
        sigma = calibrate_noise(target_epsilon=eps, delta=1e-5, sample_rate=0.3, steps=50, accountant="rdp")
        got = epsilon_of([PrivacyRelease("m", sigma, 0.3, 50)], delta=1e-5, accountant="rdp")
        assert eps - 0.02 <= got <= eps
    assert calibrate_noise(target_epsilon=1.0, delta=1e-5, sample_rate=0.3, steps=50, accountant="rdp") > sigma


def test_impossible_budget_is_a_clear_error() -> None:
    with pytest.raises(PrivacyBudgetError, match="cannot reach epsilon=1e-06"):
        calibrate_noise(target_epsilon=1e-6, delta=1e-5, sample_rate=1.0, steps=1000, accountant="rdp")


def test_privacy_object_epsilon_is_recomputable_from_its_releases() -> None:
    obj = json.loads(json.dumps(privacy_object([R1, R2], delta=1e-6, accountant="rdp")))
    assert set(obj) == {"epsilon", "delta", "accountant", "releases"}
    assert set(obj["releases"][0]) == {"mechanism", "noise_multiplier", "sample_rate", "steps"}
    assert obj["epsilon"] == pytest.approx(independent_rdp_epsilon(releases_of(obj), obj["delta"]), rel=1e-9)


def test_ledger_persists_composes_and_refuses_over_budget(tmp_path: Path) -> None:
    path = tmp_path / "clients" / "3" / "ledger.json"
    budget = epsilon_of([R1, R1], delta=1e-5, accountant="rdp") + 1e-6
    ledger = PrivacyLedger(path, budget_epsilon=budget, delta=1e-5, accountant="rdp", client_id="3")
    ledger.record(R1)
    ledger.record(R1)
    saved = path.read_bytes()
    with pytest.raises(PrivacyBudgetError, match=r"client 3: release refused .* budget"):
        ledger.record(R2)
    assert path.read_bytes() == saved  # nothing recorded
    again = PrivacyLedger(path, budget_epsilon=budget, delta=1e-5, accountant="rdp", client_id="3")
    assert again.releases == [R1, R1]
    doc = json.loads(saved)
    assert doc["releases"][1]["cumulative_epsilon"] == pytest.approx(again.epsilon)
    assert doc["releases"][0]["epsilon"] == pytest.approx(epsilon_of([R1], delta=1e-5, accountant="rdp"))
    assert again.epsilon < 2 * doc["releases"][0]["epsilon"]
    assert {"time", "delta", "accountant", "noise_multiplier", "sample_rate", "steps"} <= set(doc["releases"][0])
    assert again.privacy_object()["epsilon"] == pytest.approx(independent_rdp_epsilon([R1, R1], 1e-5), rel=1e-9)
    with pytest.raises(PayloadError, match="delta"):
        PrivacyLedger(path, budget_epsilon=budget, delta=1e-6, accountant="rdp")


def test_ledger_survives_a_crash_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger(path, budget_epsilon=100.0, delta=1e-5, accountant="rdp")
    ledger.record(R1)
    before = path.read_bytes()

    def crash(dst: object, text: str) -> None:  # the process dies half-way through writing the temp file
        def half(fh: object) -> None:
            fh.write(text.encode()[: len(text) // 2])  # type: ignore[attr-defined]
            raise KeyboardInterrupt

        fedsered.io.atomic_write(dst, half)  # type: ignore[arg-type]

    monkeypatch.setattr(fedsered.io, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        ledger.record(R2)
    assert path.read_bytes() == before
    assert json.loads(before)["releases"][0]["steps"] == R1.steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json", "ledger.json.head"]  # no temp file left
    assert PrivacyLedger(path, budget_epsilon=100.0, delta=1e-5, accountant="rdp").releases == [R1]
    path.write_text('{"releases": [', encoding="utf-8")
    with pytest.raises(PayloadError, match="not a privacy ledger"):
        PrivacyLedger(path, budget_epsilon=100.0, delta=1e-5, accountant="rdp")


def test_client_privacy_defaults_and_overrides() -> None:
    assert client_privacy(PrivacyConfig(), client_id="0", n_local=60) is None
    cfg = PrivacyConfig(enabled=True, target_epsilon=4.0, clients={"2": {"target_epsilon": 1.0, "max_grad_norm": 0.5}})
    p0 = client_privacy(cfg, client_id="0", n_local=60)
    p2 = client_privacy(cfg, client_id="2", n_local=60)
    assert p0 is not None and p2 is not None
    assert (p0.target_epsilon, p0.max_grad_norm, p0.budget_epsilon) == (4.0, 1.0, 4.0)
    assert (p2.target_epsilon, p2.max_grad_norm) == (1.0, 0.5)
    # public constants: the same delta and sample rate whatever the client holds
    big = client_privacy(cfg, client_id="0", n_local=50_000)
    assert big is not None and (p0.delta, p0.sample_rate) == (big.delta, big.sample_rate) == (1e-5, 0.5)


def test_client_privacy_errors_name_the_key_and_client() -> None:
    with pytest.raises(ConfigError, match=r"privacy\.delta: 0\.02 for client 1 is not below 1/n_local"):
        client_privacy(PrivacyConfig(enabled=True, delta=0.02), client_id="1", n_local=60)
    bad = PrivacyConfig(enabled=True, clients={"5": {"delta": 0.1}})
    with pytest.raises(ConfigError, match=r"privacy\.clients\.5\.delta: .* client 5"):
        client_privacy(bad, client_id="5", n_local=60)
    with pytest.raises(ConfigError, match=r"privacy\.clients\.5\.budget_epsilon"):
        client_privacy(PrivacyConfig(enabled=True, clients={"5": {"budget_epsilon": 1.0}}), client_id="5", n_local=60)
    with pytest.raises(ConfigError, match=r"privacy\.clients\.9: no client"):
        check_overrides(PrivacyConfig(clients={"9": {}}), client_ids=["0", "1"])
    for key in ("target_epsilon=0", "target_epsilon=-1", "clients.3.target_epsilon=0"):
        with pytest.raises(ConfigError, match=r"privacy\..*(target_epsilon|clients)"):
            load_config(None, [f"privacy.{key}"])
