"""DP mechanisms: Poisson sampling, per-example clipping (checked numerically), the noise really added at σ·C, DP-SGD
through Opacus, and ``distil(..., privacy=...)`` carrying an ε that an independent recomputation reproduces."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants.analysis import rdp as rdp_analysis
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)
from torch import nn

from fedsered.config import DistillConfig, ModelConfig, PrivacyConfig
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.errors import ConfigError, PrivacyBudgetError
from fedsered.models.build import build_model, fixed_init_state
from fedsered.privacy.accountant import RDP_ALPHAS, releases_of
from fedsered.privacy.client import client_privacy
from fedsered.privacy.dpsgd import train_dp_sgd
from fedsered.privacy.embeddings import COUNT_SHARE, embedding_bound, noisy_embedding_sums
from fedsered.privacy.gaussian import clip_rows, noisy_class_sums, poisson_sample
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.psg import matched, per_sample_grads, private_class_gradients

N_CLASSES = 3
SHAPE = (1, 16, 12)
MODEL = ModelConfig(name="cnn_iot", width=4, dropout=0.0)
CFG = DistillConfig(
    lr_img=0.02, batch_real=8, mtt_iterations=3, num_experts=2, expert_train_epochs=3, expert_lr=0.1, expert_batch=8,
    expert_epochs=1, max_start_epoch=2, syn_steps=2, batch_syn=6, gm_iterations=2, gm_outer_loop=2, gm_inner_steps=1,
    dm_iterations=4, eval_epochs=5,
)  # fmt: skip


def toy(n: int, seed: int) -> FeatureSet:
    r = np.random.default_rng(seed)
    y = (np.arange(n) % N_CLASSES).astype(np.int64)
    x = r.normal(size=(n, *SHAPE)).astype(np.float32)
    x[np.arange(n), 0, y * 4] += 2.0
    return FeatureSet(x, y, np.array(["s"] * n), np.array([f"u{i}" for i in range(n)]))


def _net() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = build_model(MODEL, n_classes=N_CLASSES, init_state=fixed_init_state(MODEL, n_classes=N_CLASSES))
    return model, {k: v.detach() for k, v in model.named_parameters()}


def test_poisson_sampling_includes_each_example_independently_at_rate_q() -> None:
    gen = np.random.default_rng(0)
    counts = np.zeros(50)
    sizes = []
    for _ in range(2000):
        idx = poisson_sample(50, sample_rate=0.2, gen=gen)
        counts[idx] += 1
        sizes.append(len(idx))
    assert np.allclose(counts / 2000, 0.2, atol=0.04)
    assert np.std(sizes) > 1.5  # the batch size varies (binomial, std 2.8), as the accountant assumes


def test_per_sample_gradients_match_a_loop() -> None:
    model, params = _net()
    data = toy(6, 0)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    names = matched(params)
    g = per_sample_grads(model, params, x, y, names=names)
    for i in (0, 5):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        ref = torch.autograd.grad(loss, [dict(model.named_parameters())[k] for k in names])
        for k, r in zip(names, ref, strict=True):
            assert torch.allclose(g[k][i], r, atol=1e-6)


def test_clipping_bounds_each_example_contribution() -> None:
    model, params = _net()
    data = toy(12, 1)
    x, y = torch.from_numpy(data.x) * 5, torch.from_numpy(data.y)
    names = matched(params)
    full = per_sample_grads(model, params, x, y, names=names)
    norms = torch.cat([full[k].reshape(12, -1) for k in names], 1).norm(dim=1)
    c = float(norms.median())  # half the examples get clipped
    gen = torch.Generator().manual_seed(0)
    for i in range(12):  # σ = 0: the released sum of a one-example batch is that example's clipped gradient
        one = private_class_gradients(
            model, params, x[i : i + 1], y[i : i + 1], n_classes=N_CLASSES, max_norm=c, noise_multiplier=0.0,
            generator=gen,
        )  # fmt: skip
        contrib = torch.cat([one[int(y[i])][k].reshape(-1) for k in names])
        assert float(contrib.norm()) <= c * (1 + 1e-5)
        if norms[i] < c:
            assert torch.allclose(contrib, torch.cat([full[k][i].reshape(-1) for k in names]), atol=1e-6)
        others = [one[k] for k in range(N_CLASSES) if k != int(y[i])]
        assert all(float(v.abs().max()) == 0.0 for o in others for v in o.values())
    # adding one example with a huge input moves the released sum by at most C
    big = private_class_gradients(model, params, x, y, n_classes=N_CLASSES, max_norm=c, noise_multiplier=0.0,
                                  generator=gen)  # fmt: skip
    x2, y2 = torch.cat([x, 1e3 * x[:1]]), torch.cat([y, y[:1]])
    big2 = private_class_gradients(model, params, x2, y2, n_classes=N_CLASSES, max_norm=c, noise_multiplier=0.0,
                                   generator=gen)  # fmt: skip
    diff = torch.cat([(big2[k][n] - big[k][n]).reshape(-1) for k in range(N_CLASSES) for n in names])
    assert float(diff.norm()) <= c * (1 + 1e-5)
    rows = clip_rows(torch.randn(100, 7) * 3, 0.5)
    assert float(rows.norm(dim=1).max()) <= 0.5 + 1e-6


def test_noise_of_scale_sigma_c_is_really_added() -> None:
    sigma, c = 1.7, 0.3
    rows = clip_rows(torch.randn(20, 5), c)
    labels = torch.arange(20) % N_CLASSES
    clean = noisy_class_sums(rows, labels, n_classes=N_CLASSES, noise_multiplier=0.0, max_norm=c,
                             generator=torch.Generator())  # fmt: skip
    gen = torch.Generator().manual_seed(3)
    draws = torch.stack([
        noisy_class_sums(rows, labels, n_classes=N_CLASSES, noise_multiplier=sigma, max_norm=c, generator=gen)
        for _ in range(2000)
    ])  # fmt: skip
    assert torch.allclose(draws.mean(0), clean, atol=4 * sigma * c / np.sqrt(2000))
    assert float(draws.std(0).mean()) == pytest.approx(sigma * c, rel=0.03)
    assert float(draws.std(0).min()) > 0.9 * sigma * c  # every released entry is noised, empty classes included
    # PSG: the released gradient minus the noiseless one has std σ·C over all coordinates
    model, params = _net()
    data = toy(9, 2)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    noisy = private_class_gradients(model, params, x, y, n_classes=N_CLASSES, max_norm=c, noise_multiplier=sigma,
                                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    exact = private_class_gradients(model, params, x, y, n_classes=N_CLASSES, max_norm=c, noise_multiplier=0.0,
                                    generator=torch.Generator())  # fmt: skip
    resid = torch.cat([(noisy[k][n] - exact[k][n]).reshape(-1) for k in range(N_CLASSES) for n in exact[k]])
    assert len(resid) > 1000 and float(resid.std()) == pytest.approx(sigma * c, rel=0.08)
    # DM: embeddings clipped to C·√(1−w²), counts released with noise σ/w (in examples)
    emb = torch.randn(30, 8) * 10
    lab = torch.arange(30) % N_CLASSES
    sums, counts = zip(*[
        noisy_embedding_sums(emb, lab, n_classes=N_CLASSES, max_norm=c, noise_multiplier=sigma, generator=gen)
        for _ in range(2000)
    ], strict=True)  # fmt: skip
    cs = torch.stack(counts)
    assert torch.allclose(cs.mean(0), torch.full((N_CLASSES,), 10.0), atol=0.2 * sigma / COUNT_SHARE)
    assert float(cs.std(0).mean()) == pytest.approx(sigma / COUNT_SHARE, rel=0.05)
    ss = torch.stack(sums)
    assert float(ss.std(0).mean()) == pytest.approx(sigma * c, rel=0.05)
    assert float(ss.mean(0).norm(dim=1).max()) <= 10 * embedding_bound(c) * 1.01


def test_dp_sgd_through_opacus_uses_poisson_sampling_and_reports_its_release() -> None:
    data = toy(40, 3)
    model, _ = _net()
    before = [p.detach().clone() for p in model.parameters()]
    snaps: list[int] = []
    release = train_dp_sgd(
        model, data.x, data.y, noise_multiplier=1.1, max_grad_norm=0.5, sample_rate=0.2, steps=10, lr=0.1, seed=0,
        every=5, on_every=lambda m: snaps.append(1),
    )  # fmt: skip
    assert (release.sample_rate, release.steps, release.noise_multiplier) == (0.2, 10, 1.1)
    assert len(snaps) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not hasattr(next(model.parameters()), "grad_sample") or next(model.parameters()).grad_sample is None
    # empty Poisson batches (q = 1/4 over 4 examples: a third of the steps) still take their noisy step
    tiny_x, tiny_y = data.x[:4], data.y[:4]
    moved: list[float] = []
    prev = [torch.cat([p.detach().flatten() for p in model.parameters()])]

    def step(m: nn.Module) -> None:
        now = torch.cat([p.detach().flatten() for p in m.parameters()])
        moved.append(float((now - prev[0]).norm()))
        prev[0] = now

    release = train_dp_sgd(model, tiny_x, tiny_y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, steps=12,
                           lr=0.1, seed=0, every=1, on_every=step)  # fmt: skip
    assert release.steps == 12 and release.sample_rate == 0.25 and min(moved) > 0.5


def test_dp_sgd_is_a_function_of_its_seed_and_leaves_the_global_stream_alone() -> None:
    data = toy(40, 3)

    def trained(seed: int) -> torch.Tensor:
        model, _ = _net()
        model.train()
        train_dp_sgd(model, data.x, data.y, noise_multiplier=1.0, max_grad_norm=0.5, sample_rate=0.2, steps=6, lr=0.1,
                     seed=seed)  # fmt: skip
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(123)
    a = trained(0)
    after_a = torch.rand(1)
    torch.manual_seed(456)  # another global stream: Poisson sampling, noise and dropout must not depend on it
    b = trained(0)
    assert torch.equal(a, b)
    assert not torch.equal(a, trained(1))
    torch.manual_seed(123)
    trained(0)
    assert torch.equal(torch.rand(1), after_a)


def _independent_epsilon(obj: dict[str, object]) -> float:
    rel = releases_of(obj)  # type: ignore[arg-type]
    rdp = sum(rdp_analysis.compute_rdp(q=r.sample_rate, noise_multiplier=r.noise_multiplier, steps=r.steps,
                                       orders=list(RDP_ALPHAS)) for r in rel)  # fmt: skip
    return float(rdp_analysis.get_privacy_spent(orders=list(RDP_ALPHAS), rdp=rdp, delta=obj["delta"])[0])


@pytest.mark.parametrize("method", ["gm", "dm", "mtt"])
def test_distil_under_dp_carries_a_recomputable_privacy_object(method: str, tmp_path: Path) -> None:
    data = toy(48, 4)
    pv = client_privacy(PrivacyConfig(enabled=True, target_epsilon=4.0), client_id="7", n_local=len(data))
    assert pv is not None
    ledger = PrivacyLedger(tmp_path / "ledger.json", budget_epsilon=4.0, delta=pv.delta, accountant="rdp",
                           client_id="7")  # fmt: skip
    s = distil(data, method=method, ipc=2, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES,
               init_state=fixed_init_state(MODEL, n_classes=N_CLASSES), seed=0, client_id="7", privacy=pv,
               ledger=ledger)  # fmt: skip
    obj = s.meta["privacy"]
    assert obj["accountant"] == "rdp" and obj["delta"] == pv.delta == 1e-5
    assert 3.9 <= obj["epsilon"] <= 4.0
    assert obj["epsilon"] == pytest.approx(_independent_epsilon(obj), rel=1e-9)
    rel = obj["releases"][0]
    # the public sample rate, whatever the client holds; mtt counts every step of every expert: 2 experts x
    # 3 epochs x ceil(1 / q) steps at q = 0.5
    assert rel["sample_rate"] == 0.5
    if method == "mtt":
        assert rel["steps"] == 12
    assert len(s) == 2 * N_CLASSES and sorted(s.y.tolist()) == [0, 0, 1, 1, 2, 2]
    assert not any(np.allclose(s.x[i], data.x[j]) for i in range(len(s)) for j in range(len(data)))
    assert ledger.releases[0].to_json() == rel
    with pytest.raises(PrivacyBudgetError, match="client 7: release refused"):  # the budget is spent
        distil(data, method=method, ipc=2, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=None, seed=1,
               client_id="7", privacy=pv, ledger=ledger)  # fmt: skip
    assert len(ledger.releases) == 1


def test_dp_refuses_methods_without_a_mechanism() -> None:
    data = toy(30, 5)
    pv = client_privacy(PrivacyConfig(enabled=True), client_id=None, n_local=len(data))
    with pytest.raises(ConfigError, match="'random' has no DP mechanism"):
        distil(data, method="random", ipc=2, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=None,
               seed=0, privacy=pv)  # fmt: skip


def test_a_budget_too_small_for_the_steps_is_a_config_error_naming_the_key() -> None:
    data = toy(30, 6)
    cfg = PrivacyConfig(enabled=True, clients={"4": {"target_epsilon": 1e-3}})
    pv = client_privacy(cfg, client_id="4", n_local=len(data))
    pv = dataclasses.replace(pv, target_epsilon=1e-7)  # below what the config accepts: calibration must still refuse
    with pytest.raises(ConfigError, match=r"privacy\.clients\.4\.target_epsilon: 1e-07 for client 4 .* dm's 4 steps"):
        distil(data, method="dm", ipc=1, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=None, seed=0,
               privacy=pv)  # fmt: skip
