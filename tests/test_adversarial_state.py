"""The server is the adversary, and it chooses the network a client computes its DP release under (θ₀, the global
model, merf's embedding networks). A finite state can still overflow on chosen inputs, and clipping bounds a row only
when the row is finite: without a guard one NaN row makes a class sum (merf, DP dm, DP gm) or the whole update
(DP-SGD) NaN, which tells that an example that made it is there, whatever σ. These tests hold the guard to that:
non-finite per-example contributions become 0, so the sensitivity stays C on every input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedsered.config import Config, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.distill.merf import embedding_nets, release_sums
from fedsered.federation import Task, run_task
from fedsered.federation.client import LocalClient, statistics_client
from fedsered.models import build_model, fixed_init_state
from fedsered.privacy.dpsgd import train_dp_sgd
from fedsered.privacy.embeddings import embedding_bound
from fedsered.privacy.gaussian import clip_rows
from tests.test_federated import DEFAULT, tiny_overrides

SERVER = ["federation.method=merf", "federation.merf_synthesis=server", "distill.merf_networks=2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Dataset]:
    cfg = load_config(DEFAULT, [*tiny_overrides(tmp_path_factory.mktemp("adv")), *SERVER])
    return cfg, build_dataset(cfg)


def scaled(cfg: Config, data: Dataset, factor: float) -> dict[str, torch.Tensor]:
    """θ₀ with every weight matrix and kernel multiplied by ``factor``: finite, and overflowing on loud inputs."""
    theta0 = fixed_init_state(cfg.model, n_classes=data.n_classes)
    return {k: v * factor if v.ndim > 1 else v.clone() for k, v in theta0.items()}


def test_clipping_zeroes_non_finite_rows_and_keeps_finite_ones_bit_for_bit() -> None:
    rows = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 3
    plain = rows * (1.0 / (rows.norm(dim=1) + 1e-6)).clamp(max=1.0).unsqueeze(1)  # the clipping before the guard
    assert torch.equal(clip_rows(rows, 1.0), plain)
    rows[1, 2], rows[4, 0], rows[5, 3] = float("nan"), float("inf"), -float("inf")
    out = clip_rows(rows, 1.0)
    assert torch.isfinite(out).all() and (out.norm(dim=1) <= 1.0 + 1e-6).all()
    assert out[[1, 4, 5]].abs().sum() == 0 and torch.equal(out[[0, 2, 3]], plain[[0, 2, 3]])


def test_a_state_that_overflows_on_some_inputs_moves_a_release_by_at_most_the_bound(
    tiny: tuple[Config, Dataset],
) -> None:
    cfg, data = tiny
    state = scaled(cfg, data, 1e20)
    nets = embedding_nets(cfg.model, n_classes=data.n_classes, init_state=state, seed=3, k=2)
    d = data.client(0)
    with torch.no_grad():
        finite = torch.isfinite(nets.raw(torch.from_numpy(d.x))).all(dim=1)
    assert 0 < int(finite.sum()) < len(d), "the attack needs inputs on both sides of the overflow"
    full, _ = release_sums(nets, d.x, d.y, n_classes=data.n_classes, dp=None)
    assert torch.isfinite(full).all()
    for i in range(len(d)):  # remove any one example: its class sum moves by at most the bound, never to NaN
        keep = np.arange(len(d)) != i
        less, _ = release_sums(nets, d.x[keep], d.y[keep], n_classes=data.n_classes, dp=None)
        assert float((full - less).norm()) <= embedding_bound(1.0) + 1e-5, i
    # under DP: the client's release is finite, its counts untouched (they count examples, not embeddings)
    dp = load_config(DEFAULT, [*tiny_overrides(Path(cfg.features.cache_dir or ".").parent), *SERVER,
                               "privacy.enabled=true", "privacy.target_epsilon=4"])  # fmt: skip
    stats = statistics_client(d, cfg=dp, client_id="client-0", n_classes=data.n_classes, init_state=state, run_seed=3,
                              seed=1)  # fmt: skip
    assert np.isfinite(stats.sums).all() and np.isfinite(stats.counts).all()


def test_dp_sgd_under_a_state_that_overflows_everywhere_releases_noise_alone(tiny: tuple[Config, Dataset]) -> None:
    """Every example's gradient is non-finite: each adds nothing, so the update is the same whatever the data (the
    sampling and noise streams are the client's, the same for two datasets of one size) and finite."""
    cfg, data = tiny
    state = scaled(cfg, data, 1e30)
    x = data.client(0).x
    y = data.client(0).y
    trained = []
    for xs in (x, x[::-1].copy()):
        model = build_model(cfg.model, n_classes=data.n_classes, init_state=state)
        train_dp_sgd(model, xs, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=3, lr=0.1, seed=5)
        trained.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert all(torch.isfinite(v).all() for v in trained[0].values())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    moved = [k for k in state if not torch.equal(trained[0][k], state[k])]
    assert moved, "the noise moved no parameter: the steps were not taken"


def test_a_client_refuses_a_task_whose_state_is_not_finite(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    state = {k: v.numpy().copy() for k, v in fixed_init_state(cfg.model, n_classes=data.n_classes).items()}
    name = next(iter(state))
    state[name].flat[0] = np.nan
    task = Task(pipeline="synthetic", kind="statistics", round=1, seed=0, state=state, cfg=cfg)
    reply = run_task(task, LocalClient("client-0", data.client(0), data.n_classes))
    assert reply.arrays == {} and reply.error is not None
    assert f"client-0: the task's model state holds non-finite values in {name}" in reply.error
