"""Models (GroupNorm only, sizes, fixed θ₀), metrics and deterministic training (also across thread counts)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedsered.centralised import train_centralised
from fedsered.config import Config, ModelConfig, TrainConfig, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.models import build_model, complexity, fixed_init_state
from fedsered.training.metrics import classification_metrics
from fedsered.training.train import evaluate, train_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cnn6", "cnn_iot", "resnet9"])
def test_models_use_groupnorm_and_report_size(name: str) -> None:
    cfg = ModelConfig(name=name, width=8)
    model = build_model(cfg, n_classes=5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model(torch.zeros(3, 1, 64, 94)).shape == (3, 5)
    size = complexity(model, (1, 64, 94))
    assert size["params"] == sum(p.numel() for p in model.parameters())
    assert size["macs"] > size["params"]


@pytest.mark.parametrize("name", ["cnn6", "cnn_iot", "resnet9"])
def test_stats_pooling_keeps_four_bands_of_mean_and_std_whatever_the_mels(name: str) -> None:
    """``model.pooling: stats``: embedding = per channel, 4 frequency bands × (mean, std over time); its
    convolutions are the same as ``mean_max``'s, and those share θ₀'s construction."""
    plain, stats = (build_model(ModelConfig(name=name, width=8, pooling=p), n_classes=5) for p in ("mean_max", "stats"))
    channels = plain.embed(torch.zeros(1, 1, 64, 94)).shape[1]
    for mels, frames in ((64, 94), (32, 20)):
        x = torch.randn(3, 1, mels, frames, generator=torch.Generator().manual_seed(0))
        emb = stats.embed(x)
        assert emb.shape == (3, channels * 8) and stats(x).shape == (3, 5) and torch.isfinite(emb).all()
        h = stats.features(x)
        bands = nn.functional.adaptive_avg_pool2d(h, (4, h.shape[3]))
        assert torch.allclose(emb.view(3, channels, 8)[:, :, 4:], bands.std(dim=3, correction=0), atol=1e-6)
    a, b = (fixed_init_state(ModelConfig(name=name, pooling=p), n_classes=5) for p in ("mean_max", "stats"))
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("head.fc"))


def test_iot_variant_is_much_smaller_than_cnn6() -> None:
    big = complexity(build_model(ModelConfig(name="cnn6"), n_classes=5), (1, 64, 94))
    small = complexity(build_model(ModelConfig(name="cnn_iot"), n_classes=5), (1, 64, 94))
    assert small["macs"] * 5 < big["macs"] and small["params"] * 10 < big["params"]


def test_fixed_init_is_reproducible_and_seed_dependent() -> None:
    a = fixed_init_state(ModelConfig(init_seed=0), n_classes=5)
    b = fixed_init_state(ModelConfig(init_seed=0), n_classes=5)
    c = fixed_init_state(ModelConfig(init_seed=1), n_classes=5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_metrics_uar_is_balanced_accuracy() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 0, 0, 0, 1, 2, 0])
    m = classification_metrics(y, p, n_classes=4)  # class 3 absent from the test set: not averaged
    assert m["uar"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert m["wa"] == pytest.approx(6 / 8)
    assert m["confusion"][1] == [1, 1, 0, 0]


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    x = rng.normal(size=(n, 1, 16, 12)).astype(np.float32)
    rows = y[:, None] * 4 + np.arange(4)  # class c lights up mel rows 4c..4c+3, under unit noise
    x[np.arange(n)[:, None], 0, rows] += 1.0
    return x, y


def test_training_learns_and_is_deterministic() -> None:
    x, y = _toy(120, 0)
    xt, yt = _toy(60, 1)
    mcfg, tcfg = ModelConfig(name="cnn_iot", width=8, dropout=0.0), TrainConfig(epochs=15, batch_size=16, lr=3e-3)
    init = fixed_init_state(mcfg, n_classes=3)
    m1 = train_model(x, y, model_cfg=mcfg, train_cfg=tcfg, n_classes=3, init_state=init, seed=5)
    m2 = train_model(x, y, model_cfg=mcfg, train_cfg=tcfg, n_classes=3, init_state=init, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    assert evaluate(m1, xt, yt, n_classes=3)["uar"] > 0.8


def _tiny_centralised(tmp: Path) -> tuple[Config, Dataset]:
    """The tiny embedded corpus of the federation tests: 4 training speakers, 32 mels × 38 frames, a 4-channel net."""
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        "data.embedded.n_speakers=5", "data.embedded.utterances_per_emotion=2", "data.embedded.duration_s=[1.0, 1.2]",
        "data.test_speakers=0.25",  # one held-out speaker (the default holds out 40 %)
        "features.segment_s=1.2", "features.n_mels=32", f"features.cache_dir={tmp / 'cache'}",
        "model.name=cnn_iot", "model.width=4", "train.epochs=2", "federation.num_clients=2",
    ])  # fmt: skip
    return cfg, build_dataset(cfg)


def _state_at(threads: int, cfg: Config, data: Dataset) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = train_centralised(cfg, data)
        assert torch.get_num_threads() == threads  # train_model restores the caller's count
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    finally:
        torch.set_num_threads(before)


def test_centralised_training_is_bit_identical_at_one_and_two_caller_threads(tmp_path: Path) -> None:
    cfg, data = _tiny_centralised(tmp_path)
    assert cfg.train.threads == 1  # the default pins training to one thread
    one, two = _state_at(1, cfg, data), _state_at(2, cfg, data)
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one), [k for k in one if not torch.equal(one[k], two[k])]


def test_unpinned_training_depends_on_the_thread_count(tmp_path: Path) -> None:
    """Why the pin exists (torch 2.13, CPU): conv and linear weight gradients sum per-thread partial sums."""
    cfg, data = _tiny_centralised(tmp_path)
    unpinned = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": 0})})
    one, two = _state_at(1, unpinned, data), _state_at(2, unpinned, data)
    again = _state_at(2, unpinned, data)
    assert all(torch.equal(two[k], again[k]) for k in two)  # reproducible at a fixed count
    differ = [k for k in one if not torch.equal(one[k], two[k])]
    assert any(k.endswith(".0.weight") for k in differ)  # conv weights differ in their last bits
    assert max(float((one[k] - two[k]).abs().max()) for k in differ) < 1e-5
