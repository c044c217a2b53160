"""DP that holds against the server: the planned noise is really added, it is secret unless switched to reproducible,
the client's own policy decides (a task can only tighten it), and malformed replies are rejected by the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)

import fedsered.distill.dm as dm_module
from fedsered.config import DistillConfig, ModelConfig, PrivacyConfig, load_config
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.distill.synthetic_set import make_meta
from fedsered.errors import PayloadError
from fedsered.federation.accept import accept_set, accept_update, reply_metric
from fedsered.federation.client import LocalClient, run_task
from fedsered.federation.protocol import Reply, Task
from fedsered.models.build import fixed_init_state
from fedsered.privacy.client import client_privacy
from fedsered.privacy.embeddings import embedding_bound
from fedsered.privacy.gaussian import clip_rows

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 3
MODEL = ModelConfig(name="cnn_iot", width=4)
CFG = DistillConfig(dm_iterations=60, batch_real=4)


def toy(n: int, seed: int) -> FeatureSet:
    gen = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % N_CLASSES
    x = (gen.standard_normal((n, 1, 16, 12)) + y[:, None, None, None]).astype(np.float32)
    return FeatureSet(x, y, np.array(["s"] * n), np.array([f"u{i}" for i in range(n)]))


def dp_dm(data: FeatureSet, *, seed: int, reproducible: bool = False, eps: float = 4.0) -> Any:
    pv = client_privacy(PrivacyConfig(enabled=True, target_epsilon=eps, reproducible_noise=reproducible),
                        client_id="c", n_local=len(data))  # fmt: skip
    theta0 = fixed_init_state(MODEL, n_classes=N_CLASSES)
    return distil(data, method="dm", ipc=2, cfg=CFG, model_cfg=MODEL, n_classes=N_CLASSES, init_state=theta0,
                  seed=seed, client_id="c", privacy=pv)  # fmt: skip


def measured_noise_std(
    monkeypatch: pytest.MonkeyPatch, data: FeatureSet, *, zero_noise: bool = False
) -> tuple[float, float]:
    """Run DP dm and measure, at every step, released per-class sums minus the clean sums of the same sampled rows:
    the noise actually added. Returns (its std, σ·C of the plan)."""
    real = dm_module.noisy_embedding_sums
    noise: list[torch.Tensor] = []

    def spy(emb: torch.Tensor, labels: torch.Tensor, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if zero_noise:  # the mutation the test must catch: a loop that forgot its noise
            kw = {**kw, "noise_multiplier": 1e-12}
        sums, counts = real(emb, labels, **kw)
        clean = torch.zeros_like(sums).index_add_(0, labels, clip_rows(emb, embedding_bound(kw["max_norm"])))
        noise.append((sums - clean).flatten())
        return sums, counts

    monkeypatch.setattr(dm_module, "noisy_embedding_sums", spy)
    s = dp_dm(data, seed=0)
    release = s.meta["privacy"]["releases"][0]
    planned = release["noise_multiplier"] * s.meta["privacy"]["max_grad_norm"]
    assert len(noise) == release["steps"]  # every released step was seen
    return float(torch.cat(noise).std()), planned


def test_the_noise_released_is_the_noise_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy(40, 1)
    measured, planned = measured_noise_std(monkeypatch, data)
    assert measured == pytest.approx(planned, rel=0.05)
    with monkeypatch.context() as m:  # the same measurement on a loop without noise fails the check above
        zero, _ = measured_noise_std(m, data, zero_noise=True)
    assert zero < 0.01 * planned


def test_dp_noise_is_secret_unless_reproducible() -> None:
    data = toy(30, 2)
    a, b = dp_dm(data, seed=5), dp_dm(data, seed=5)
    assert not np.array_equal(a.x, b.x)  # same config and seed: the server cannot replay the client
    assert "reproducible_noise" not in a.meta["privacy"]
    c, d = dp_dm(data, seed=5, reproducible=True), dp_dm(data, seed=5, reproducible=True)
    assert np.array_equal(c.x, d.x)
    assert c.meta["privacy"]["reproducible_noise"] is True
    assert "NOT hold against the server" in c.meta["privacy"]["warning"]


def _task(tmp: Path, *overrides: str, pipeline: str = "synthetic", kind: str = "share") -> Task:
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        "model.name=cnn_iot", "model.width=4", "distill.dm_iterations=3", "features.n_mels=16",
        f"features.cache_dir={tmp / 'cache'}", *overrides,
    ])  # fmt: skip
    theta0 = {k: v.numpy() for k, v in fixed_init_state(cfg.model, n_classes=N_CLASSES).items()}
    return Task(pipeline=pipeline, kind=kind, round=1, seed=0, state=theta0, cfg=cfg)  # type: ignore[arg-type]


def test_the_clients_policy_decides(tmp_path: Path) -> None:
    data = toy(30, 3)
    policy = PrivacyConfig(enabled=True, target_epsilon=2.0)  # synthetic sets only, DP at eps <= 2
    client = LocalClient("client-0", data, N_CLASSES, tmp_path / "ledgers", policy)
    refused = {
        "raw sharing": _task(tmp_path, pipeline="raw_sharing"),
        "larger epsilon": _task(tmp_path, "privacy.enabled=true", "privacy.target_epsilon=8"),
        "no DP": _task(tmp_path),
    }
    for why, task in refused.items():
        reply = run_task(task, client)
        assert reply.error is not None and reply.error.startswith("PolicyError") and reply.arrays == {}, why
    assert "does not allow raw_sharing" in str(run_task(refused["raw sharing"], client).error)
    ok = run_task(_task(tmp_path, "privacy.enabled=true", "privacy.target_epsilon=1"), client)  # less loss: fine
    assert ok.error is None and json.loads(ok.meta)["privacy"]["target_epsilon"] == 1.0
    assert ok.metrics == {}  # a DP client publishes no timings (they grow with its data)
    ledger = json.loads((tmp_path / "ledgers" / "synthetic.json").read_text())
    assert ledger["budget_epsilon"] == 2.0  # the budget is the policy's, not the request's


def test_the_server_rejects_malformed_privacy_and_metrics() -> None:
    shape = (1, 4, 5)
    x, y = np.zeros((3, *shape), np.float32), np.arange(3, dtype=np.int64)
    meta = make_meta(method="dm", ipc=1, n_classes=3, features={}, init="theta0:0", client_id="client-1")
    for bad in ({"releases": "all"}, {"releases": [{"noise_multiplier": -1}], "delta": 1e-5, "accountant": "rdp"},
                {"releases": [{"noise_multiplier": 1, "sample_rate": 0.5, "steps": 3}], "delta": 7,
                 "accountant": "rdp"}):  # fmt: skip
        reply = Reply("client-1", {"x": x, "y": y}, json.dumps({**meta, "privacy": bad}))
        with pytest.raises(PayloadError, match="client-1"):
            accept_set(reply, n_classes=3, input_shape=shape, max_bytes=10**6)
    # more examples than the task asked for: a set that would outweigh the others in the union
    arrays = {"x": np.zeros((8, *shape), np.float32), "y": np.array([0] * 6 + [1, 2])}
    many = Reply("client-1", arrays, json.dumps(meta))
    with pytest.raises(PayloadError, match=r"6 examples of class 0, the task asked for at most federation\.ipc=1"):
        accept_set(many, n_classes=3, input_shape=shape, max_bytes=10**6, max_per_class=1)
    with pytest.raises(PayloadError, match=r"above federation\.max_client_examples=5"):
        accept_set(many, n_classes=3, input_shape=shape, max_bytes=10**6, max_examples=5)
    assert len(accept_set(many, n_classes=3, input_shape=shape, max_bytes=10**6, max_per_class=6)[0].y) == 8
    ref = {"w": np.zeros(3, np.float32)}
    for bad_meta, why in (("{}", "num_examples"), ('{"num_examples": 10**9}', "JSON"),
                          ('{"num_examples": 5000000}', "max_client_examples")):  # fmt: skip
        with pytest.raises(PayloadError, match=why):
            accept_update(Reply("client-1", ref, bad_meta), reference=ref, max_bytes=10**6, max_examples=1000, dp=False)
    with pytest.raises(PayloadError, match="privacy release"):
        accept_update(Reply("client-1", ref, "{}"), reference=ref, max_bytes=10**6, max_examples=None, dp=True)
    assert [reply_metric({"s": v}, "s") for v in (1.5, -1, float("nan"), "3", True, None)] == [1.5] + [None] * 5
