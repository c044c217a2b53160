"""Training-time augmentation (``fedsered.training.augment``): each transform does what it says, draws only from the
trainer's generator, and ``train_model`` under it is deterministic and differs from training without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsered.config import AugmentConfig, ModelConfig, TrainConfig
from fedsered.models import fixed_init_state
from fedsered.training.augment import augment_batch, is_active
from fedsered.training.train import train_model


def batch(n: int = 16, mels: int = 8, frames: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, mels, frames, generator=g) + 3.0, torch.arange(n) % 5


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_off_by_default_and_the_identity_when_off() -> None:
    cfg = AugmentConfig()
    assert not is_active(cfg) and not is_active(TrainConfig().augment)
    x, y = batch()
    b = augment_batch(x, y, cfg, generator=gen())
    assert torch.equal(b.x, x) and torch.equal(b.y, y) and torch.equal(b.lam, torch.ones(len(x)))


def test_time_shift_rolls_each_example_within_its_bound() -> None:
    x, y = batch()
    before = x.clone()
    b = augment_batch(x, y, AugmentConfig(time_shift=0.2), generator=gen())
    assert torch.equal(x, before)  # the input is left alone
    shifts = []
    for i in range(len(x)):
        found = [s for s in range(-4, 5) if torch.equal(torch.roll(x[i], s, dims=-1), b.x[i])]
        assert len(found) == 1, i  # a roll by at most 0.2 × 20 frames, nothing else changed
        shifts.append(found[0])
    assert len(set(shifts)) > 3  # per example, not one shift for the batch


def test_masks_zero_bands_no_wider_than_their_bound() -> None:
    x, y = batch(mels=32, frames=50)
    cfg = AugmentConfig(time_masks=2, time_mask=0.1, freq_masks=1, freq_mask=0.25)
    b = augment_batch(x, y, cfg, generator=gen())
    zero = b.x == 0
    assert not (x == 0).any()
    for i in range(len(x)):
        cols = zero[i, 0].all(dim=0)  # masked frames: zero in every bin
        rows = zero[i, 0].all(dim=1)
        assert int(cols.sum()) <= 2 * 5 and int(rows.sum()) <= 8
        # every zero is in a masked row or column, and everything else is untouched
        assert torch.equal(zero[i, 0], cols.view(1, -1) | rows.view(-1, 1))
        kept = ~zero[i, 0]
        assert torch.equal(b.x[i, 0][kept], x[i, 0][kept])
    assert zero.any()


def test_mixup_mixes_inputs_with_the_weights_it_reports() -> None:
    x, y = batch()
    b = augment_batch(x, y, AugmentConfig(mixup=0.4), generator=gen())
    assert torch.all(b.lam >= 0.5) and torch.all(b.lam <= 1.0) and not torch.all(b.lam == 1.0)
    # each output is lam·own + (1 − lam)·partner, the partner's label reported
    for i in range(len(x)):
        diffs = [(k, float((b.x[i] - (b.lam[i] * x[i] + (1 - b.lam[i]) * x[k])).abs().max())) for k in range(len(x))]
        k, err = min(diffs, key=lambda d: d[1])
        assert err < 1e-5 and int(b.y_mix[i]) == int(y[k]), (i, k, err)


def test_same_generator_same_batch_other_seed_other_batch() -> None:
    x, y = batch()
    cfg = AugmentConfig(time_shift=0.1, time_masks=1, freq_masks=1, mixup=0.4)
    a, b, c = (augment_batch(x, y, cfg, generator=gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.x, b.x) and torch.equal(a.lam, b.lam) and torch.equal(a.y_mix, b.y_mix)
    assert not torch.equal(a.x, c.x)
    state = torch.random.get_rng_state()
    augment_batch(x, y, cfg, generator=gen())
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_train_model_under_augmentation_is_deterministic_and_differs(mixup: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 16, 24)).astype(np.float32)
    y = (np.arange(40) % 5).astype(np.int64)
    model_cfg = ModelConfig(name="cnn_iot", width=4)
    init = fixed_init_state(model_cfg, n_classes=5)
    aug = AugmentConfig(time_shift=0.2, time_masks=1, freq_masks=1, mixup=mixup)

    def weights(train_cfg: TrainConfig) -> list[torch.Tensor]:
        m = train_model(x, y, model_cfg=model_cfg, train_cfg=train_cfg, n_classes=5, init_state=init, seed=3)
        return [p.detach().clone() for p in m.parameters()]

    plain = weights(TrainConfig(epochs=2, batch_size=8))
    first, second = (weights(TrainConfig(epochs=2, batch_size=8, augment=aug)) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, plain, strict=True))
