"""Siamese augmentation inside dm (``distill.dsa``): the transform is one per class and side-independent, it is a
circular shift plus two zero bands, gradients reach the synthetic features through it (none where it masked), dm
under it is seeded and differs from dm without it, and under DP it spends exactly the same releases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)

from fedsered.config import DistillConfig, DsaConfig, ModelConfig, load_config
from fedsered.distill import dsa
from fedsered.distill.dm import distil_dm
from fedsered.distill.init import LearnTask
from fedsered.errors import ConfigError
from fedsered.models.build import fixed_init_state
from fedsered.privacy.mechanism import DPSpec

N_CLASSES, MELS, FRAMES = 3, 8, 12
MODEL = ModelConfig(name="cnn_iot", width=4, dropout=0.0)
ON = DsaConfig(time_shift=0.25, time_mask=0.3, freq_mask=0.3)


def _views(seed: int = 0, cfg: DsaConfig = ON) -> dsa.Views:
    return dsa.draw(cfg, n_classes=N_CLASSES, mels=MELS, frames=FRAMES, gen=torch.Generator().manual_seed(seed))


def test_off_by_default_and_bounds_checked(tmp_path: pytest.TempPathFactory) -> None:
    assert not dsa.is_active(DistillConfig().dsa) and dsa.is_active(ON)
    path = tmp_path / "c.yaml"  # type: ignore[operator]
    path.write_text("distill:\n  dsa:\n    time_shift: 0.7\n")
    with pytest.raises(ConfigError, match=r"distill\.dsa\.time_shift"):
        load_config(path)


def test_each_example_gets_its_class_transform_a_roll_and_two_zero_bands() -> None:
    views = _views()
    assert views.shift.abs().max() <= int(0.25 * FRAMES) and views.time_width.max() <= int(0.3 * FRAMES)
    x = torch.randn(6, 1, MELS, FRAMES)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    out = dsa.apply(x, labels, views)
    for i, c in enumerate(labels.tolist()):
        want = torch.roll(x[i], shifts=int(views.shift[c]), dims=-1)
        t0, tw = int(views.time_start[c]), int(views.time_width[c])
        f0, fw = int(views.freq_start[c]), int(views.freq_width[c])
        want[..., t0 : t0 + tw] = 0.0
        want[:, f0 : f0 + fw, :] = 0.0
        assert torch.equal(out[i], want), i
    # the same transform whichever side, batch or position an example of the class comes in (siamese)
    alone = dsa.apply(x[3:4], labels[3:4], views)
    assert torch.equal(alone[0], out[3])
    assert torch.equal(dsa.apply(x, labels, _views(0)), out) and not torch.equal(dsa.apply(x, labels, _views(1)), out)
    assert torch.equal(dsa.apply(x, labels, _views(0, DsaConfig())), x)  # all widths 0: identity


def test_gradients_flow_through_the_transform_and_not_into_masked_cells() -> None:
    views = _views(3)
    x = torch.randn(3, 1, MELS, FRAMES, requires_grad=True)
    labels = torch.arange(3)
    dsa.apply(x, labels, views).pow(2).sum().backward()
    assert x.grad is not None
    out = dsa.apply(x.detach(), labels, views)
    # gradient 2·x where the cell survives (moved by the roll back to its source), 0 where a band masked it
    kept = dsa.apply(torch.ones_like(x), labels, views)  # 1 where kept, in output coordinates
    back = torch.stack([torch.roll(kept[i], shifts=-int(views.shift[i]), dims=-1) for i in range(3)])
    assert torch.allclose(x.grad, 2 * x.detach() * back)
    assert int((x.grad == 0).sum()) >= int((back == 0).sum()) > 0 and out.shape == x.shape


def _task(seed: int = 0) -> LearnTask:
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(N_CLASSES, dtype=np.int64), 8)
    x = r.normal(size=(len(y), 1, MELS, FRAMES)).astype(np.float32)
    x[np.arange(len(y)), 0, y * 2] += 2.0
    y0 = np.repeat(np.arange(N_CLASSES, dtype=np.int64), 2)
    x0 = x[[0, 1, 8, 9, 16, 17]].copy()
    theta0 = dict(fixed_init_state(MODEL, n_classes=N_CLASSES))
    return LearnTask(x, y, x0, y0, model_cfg=MODEL, n_classes=N_CLASSES, init_state=theta0, seed=seed)


def test_dm_under_dsa_is_seeded_and_differs_from_dm_without_it() -> None:
    cfg = DistillConfig(dm_iterations=15, lr_img=0.05, dsa=ON)
    a, ya, meta = distil_dm(_task(), cfg)
    b, _, _ = distil_dm(_task(), cfg)
    plain, _, _ = distil_dm(_task(), cfg.model_copy(update={"dsa": DsaConfig()}))
    assert np.array_equal(a, b) and not np.array_equal(a, plain)
    assert np.array_equal(ya, np.repeat(np.arange(N_CLASSES), 2)) and len(meta["loss_history"]) == 15
    assert np.isfinite(a).all() and not np.array_equal(a, _task().x_init)


def test_dp_dm_under_dsa_takes_one_release_per_update_and_its_noise_seed_decides() -> None:
    cfg = DistillConfig(dm_iterations=6, lr_img=0.05, dsa=ON)

    def spec(noise_seed: int) -> DPSpec:
        return DPSpec(mechanism="dp_dm", noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=6,
                      noise_seed=noise_seed)  # fmt: skip

    a, _, _ = distil_dm(_task(), cfg, dp=spec(1))
    b, _, _ = distil_dm(_task(), cfg, dp=spec(1))
    c, _, _ = distil_dm(_task(), cfg, dp=spec(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="covers 5 steps"):
        distil_dm(_task(), cfg, dp=DPSpec(mechanism="dp_dm", noise_multiplier=1.0, max_grad_norm=1.0,
                                          sample_rate=0.5, steps=5, noise_seed=1))  # fmt: skip
