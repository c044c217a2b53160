"""merf (one-shot DP mean embeddings): the fit lowers its loss, the DP mechanism is exactly one release at q = 1, the
set depends on the real data only through that release, the secret noise seed decides the noise, and ``distil`` with
and without DP returns valid sets (one ledger entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)

import fedsered.distill.merf as merf
from fedsered.config import DistillConfig, ModelConfig, PrivacyConfig, load_config
from fedsered.data.types import FeatureSet
from fedsered.distill import distil, validate_set
from fedsered.distill.dm import dp_dm_loss
from fedsered.distill.dp import DP_METHODS, plan_dp
from fedsered.distill.init import LearnTask
from fedsered.errors import PrivacyBudgetError
from fedsered.models.build import fixed_init_state
from fedsered.privacy.accountant import epsilon_of, releases_of
from fedsered.privacy.client import client_privacy
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.mechanism import DPSpec

N_CLASSES = 5
N_REAL = 30
SHAPE = (1, 16, 24)
IPC = 3
MODEL = ModelConfig(name="cnn_iot", width=4, dropout=0.0)
CFG = DistillConfig(merf_networks=3, merf_iterations=40, lr_img=0.01, img_optimizer="sgd")


def toy(seed: int) -> FeatureSet:
    """Class c lifts mel row 3c by 2 under unit noise; six examples per class."""
    r = np.random.default_rng(seed)
    y = (np.arange(N_REAL) % N_CLASSES).astype(np.int64)
    x = r.normal(size=(N_REAL, *SHAPE)).astype(np.float32)
    x[np.arange(N_REAL), 0, y * 3] += 2.0
    return FeatureSet(x, y, np.array(["s"] * N_REAL), np.array([f"u{i}" for i in range(N_REAL)]))


def _task(data: FeatureSet, *, seed: int = 0) -> LearnTask:
    y0 = np.repeat(np.arange(N_CLASSES, dtype=np.int64), IPC)
    x0 = np.random.default_rng(99).standard_normal((len(y0), *SHAPE)).astype(np.float32)
    theta0 = dict(fixed_init_state(MODEL, n_classes=N_CLASSES))
    return LearnTask(data.x.copy(), data.y.copy(), x0, y0, model_cfg=MODEL, n_classes=N_CLASSES, init_state=theta0,
                     seed=seed)  # fmt: skip


def _spec(noise_seed: int, sigma: float = 1.0) -> DPSpec:
    return DPSpec(mechanism="dp_merf_oneshot", noise_multiplier=sigma, max_grad_norm=1.0, sample_rate=1.0, steps=1,
                  noise_seed=noise_seed)  # fmt: skip


def test_merf_fit_lowers_the_loss_and_moves_the_set_towards_the_real_class_means() -> None:
    task = _task(toy(0))
    x_syn, y_syn, meta = merf.distil_merf(task, CFG)
    hist = meta["loss_history"]
    assert len(hist) == CFG.merf_iterations and meta["merf_networks"] == 3
    assert hist[-1] < hist[0] / 5
    # independently: the distance of the set's clipped class-mean embeddings to the exact real class means
    nets = merf.merf_nets(task, CFG.merf_networks)
    means = merf.means_of(*merf.release_sums(nets, task.x, task.y, n_classes=N_CLASSES, dp=None))

    def dist(x: np.ndarray) -> float:
        with torch.no_grad():
            return float(dp_dm_loss(nets, means, torch.from_numpy(x), y_syn, max_norm=merf.NON_DP_MAX_NORM))

    assert dist(x_syn) < dist(task.x_init) / 5
    assert y_syn.tolist() == task.y_init.tolist() and x_syn.shape == task.x_init.shape


def test_merf_upsampled_synthesis_fits_a_smooth_low_resolution_set() -> None:
    """r = 2: the set is a bilinear upsampling of a [8, 12] image per example (so it is exactly reproduced by
    upsampling its own pooled version's fitted source), smooth along time, of full size, and the fit still works."""
    task = _task(toy(0))
    cfg = CFG.model_copy(update={"merf_upsample": 2})
    x_syn, _, meta = merf.distil_merf(task, cfg)
    hist = meta["loss_history"]
    assert x_syn.shape == task.x_init.shape and hist[-1] < hist[0] / 5
    # in the range of the upsampling operator: the least-squares low-res preimage reproduces the set exactly
    up = merf.upsampled(torch.eye(8 * 12).reshape(96, 1, 8, 12), SHAPE[1:]).reshape(96, -1).T.numpy()
    flat = x_syn.reshape(len(x_syn), -1).T
    coef, *_ = np.linalg.lstsq(up, flat, rcond=None)
    assert np.abs(up @ coef - flat).max() < 1e-4
    free, _, _ = merf.distil_merf(task, CFG)
    assert np.abs(np.diff(x_syn, axis=-1)).mean() < np.abs(np.diff(free, axis=-1)).mean() / 2


def test_merf_embedding_is_the_concatenation_of_the_nets_scaled_by_one_over_sqrt_k() -> None:
    task = _task(toy(0))
    one, four = merf.merf_nets(task, 1), merf.merf_nets(task, 4)
    x = torch.from_numpy(task.x[:4])
    with torch.no_grad():
        e1, e4 = one.embed(x), four.embed(x)
    assert e4.shape[1] == 4 * e1.shape[1]
    assert torch.allclose(e4[:, : e1.shape[1]], e1 / 2.0)  # net 0 (θ₀) is the same in both, scaled by 1/√4


def test_dp_merf_is_one_release_at_sample_rate_one_and_meets_the_target_epsilon() -> None:
    data = toy(1)
    for q in (0.5, 0.01):  # privacy.sample_rate does not apply to merf
        pv = client_privacy(PrivacyConfig(enabled=True, target_epsilon=4.0, sample_rate=q), client_id="3",
                            n_local=len(data))  # fmt: skip
        assert pv is not None
        spec = plan_dp("merf", cfg=CFG, privacy=pv, seed=0)
        assert (spec.mechanism, spec.steps, spec.sample_rate) == (DP_METHODS["merf"], 1, 1.0)
    s = distil(data, method="merf", ipc=IPC, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=None, seed=0,
               client_id="3", privacy=pv)  # fmt: skip
    obj = s.meta["privacy"]
    [rel] = obj["releases"]
    assert (rel["mechanism"], rel["sample_rate"], rel["steps"]) == ("dp_merf_oneshot", 1.0, 1)
    assert obj["epsilon"] == pytest.approx(4.0, abs=0.02)
    assert epsilon_of(releases_of(obj), delta=obj["delta"], accountant="rdp") == pytest.approx(obj["epsilon"])
    # q = 1: the plain Gaussian mechanism (RDP α / 2σ²); ε 4 at δ 1e-5 needs σ of about 1.2
    assert 0.5 < rel["noise_multiplier"] < 2.0
    with pytest.raises(ValueError, match="releases once"):
        merf.distil_merf(_task(data), CFG, dp=DPSpec("dp_merf_oneshot", 1.0, 1.0, sample_rate=0.5, steps=1))


def test_merf_touches_the_real_data_once_per_net_and_never_after_the_release(monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy(2)
    calls: list[tuple[int, int, bool]] = []
    embed = merf.embed

    def spy(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        calls.append((id(net), len(x), torch.is_grad_enabled()))
        return embed(net, x)

    monkeypatch.setattr(merf, "embed", spy)
    reference = merf.distil_merf(_task(data), CFG, dp=_spec(5))
    real = [c for c in calls if c[1] == N_REAL]
    assert len(real) == CFG.merf_networks and len({c[0] for c in real}) == CFG.merf_networks
    assert not any(grad for _, _, grad in real)  # the release's forward passes, under no_grad
    assert {n for _, n, _ in calls} == {N_REAL, IPC * N_CLASSES}  # otherwise only the synthetic set is embedded

    release = merf.release_sums

    def release_then_scramble(
        nets: merf.ConcatEmbedding, x: np.ndarray, y: np.ndarray, **kw: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = release(nets, x, y, **kw)
        x[...] = np.random.default_rng(0).normal(size=x.shape)  # the real data changes after the release
        y[...] = 0
        return out

    monkeypatch.setattr(merf, "release_sums", release_then_scramble)
    task = _task(data)
    scrambled = merf.distil_merf(task, CFG, dp=_spec(5))
    assert not np.array_equal(task.x, data.x)  # the scramble did happen
    assert np.array_equal(scrambled[0], reference[0]) and scrambled[2] == reference[2]
    # and the set is synthesise(released means, public start): nothing else about the data enters
    fresh = _task(data)
    nets = merf.merf_nets(fresh, CFG.merf_networks)
    means = merf.means_of(*release(nets, fresh.x, fresh.y, n_classes=N_CLASSES, dp=_spec(5)))
    x_post, hist = merf.synthesise(nets, means, fresh.x_init, fresh.y_init, cfg=CFG, max_norm=1.0)
    assert np.array_equal(x_post, reference[0]) and hist == reference[2]["loss_history"]


def test_merf_noise_comes_from_the_secret_seed_not_the_run_seed() -> None:
    data = toy(3)
    a = merf.distil_merf(_task(data, seed=0), CFG, dp=_spec(11))[0]
    b = merf.distil_merf(_task(data, seed=0), CFG, dp=_spec(11))[0]
    c = merf.distil_merf(_task(data, seed=0), CFG, dp=_spec(12))[0]
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    nets = merf.merf_nets(_task(data), CFG.merf_networks)
    m11, m12 = (merf.release_sums(nets, data.x, data.y, n_classes=N_CLASSES, dp=_spec(s))[0] for s in (11, 12))
    assert not torch.allclose(m11, m12)


def test_distil_merf_through_the_public_api_with_and_without_dp(tmp_path: Path) -> None:
    data = toy(4)
    theta0 = dict(fixed_init_state(MODEL, n_classes=N_CLASSES))
    plain = distil(data, method="merf", ipc=IPC, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=theta0,
                   seed=0)  # fmt: skip
    validate_set(plain, n_classes=N_CLASSES, expected_shape=SHAPE, max_bytes=None, source="test")
    assert plain.meta["method"] == "merf" and plain.meta.get("privacy") is None
    assert plain.meta["merf_networks"] == CFG.merf_networks and len(plain) == IPC * N_CLASSES

    pv = client_privacy(PrivacyConfig(enabled=True, target_epsilon=2.0), client_id="9", n_local=len(data))
    assert pv is not None
    ledger = PrivacyLedger(tmp_path / "ledger.json", budget_epsilon=2.0, delta=pv.delta, accountant="rdp",
                           client_id="9")  # fmt: skip
    s = distil(data, method="merf", ipc=IPC, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=theta0, seed=0,
               client_id="9", privacy=pv, ledger=ledger)  # fmt: skip
    validate_set(s, n_classes=N_CLASSES, expected_shape=SHAPE, max_bytes=None, source="test")
    assert sorted(s.y.tolist()) == sorted(np.repeat(np.arange(N_CLASSES), IPC).tolist())
    assert s.meta["init_mode"] == "noise-dp"
    assert len(ledger.releases) == 1 and ledger.releases[0].to_json() == s.meta["privacy"]["releases"][0]
    assert not any(np.allclose(s.x[i], data.x[j]) for i in range(len(s)) for j in range(len(data)))
    with pytest.raises(PrivacyBudgetError, match="client 9: release refused"):  # the one release spent the budget
        distil(data, method="merf", ipc=IPC, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=None,
               seed=1, client_id="9", privacy=pv, ledger=ledger)  # fmt: skip
    assert len(ledger.releases) == 1


def test_merf_is_accepted_wherever_a_method_is_configured() -> None:
    cfg = load_config(None, ["distill.methods=[merf, dm]", "federation.method=merf", "sweep.methods=[merf]"])
    assert cfg.distill.methods == ("merf", "dm") and cfg.federation.method == "merf"
    assert cfg.sweep.methods == ("merf",) and cfg.distill.merf_networks == 4 and cfg.distill.merf_iterations == 200
