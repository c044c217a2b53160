"""Multi-formation along time (``distill.formation``): packing, decoding, the metadata check, distil and the server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedsered.config import Config, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.distill import distil
from fedsered.distill.formation import decode, decode_labels, factor, pack, training_examples
from fedsered.distill.synthetic_set import SyntheticSet, validate_set
from fedsered.errors import ConfigError, PayloadError
from fedsered.federation import run_pipeline
from tests.test_federated import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Dataset]:
    cfg = load_config(str(ROOT / "configs" / "default.yaml"), tiny_overrides(tmp_path_factory.mktemp("formation")))
    return cfg, build_dataset(cfg)


def test_pack_then_decode_gives_back_what_time_resampling_keeps() -> None:
    """Examples constant in time survive pack → decode exactly, in order; a class's short group is filled by cycling."""
    levels = np.arange(5, dtype=np.float32)  # example k is the constant k (per mel bin k + bin/10)
    x = (levels[:, None, None, None] + np.arange(3, dtype=np.float32)[None, None, :, None] / 10) * np.ones(
        (1, 1, 1, 12), dtype=np.float32)  # fmt: skip
    y = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    xs, ys = pack(x, y, 2)
    assert xs.shape == (3, 1, 3, 12) and xs.dtype == np.float32 and ys.tolist() == [0, 0, 1]
    back = decode(torch.from_numpy(xs), 2).numpy()
    assert decode_labels(ys, 2).tolist() == [0, 0, 0, 0, 1, 1]
    np.testing.assert_allclose(back, x[[0, 1, 2, 0, 3, 4]], atol=1e-6)  # class 0's third group: 2, then 0 again
    # f not dividing T: the tail frames are zero in storage and ignored by decoding
    xs3, _ = pack(x[:3], y[:3], 5)
    assert np.all(xs3[..., 10:] == 0.0)
    np.testing.assert_allclose(decode(torch.from_numpy(xs3), 5).numpy(), x[[0, 1, 2, 0, 1]], atol=1e-6)


def test_decode_is_differentiable_in_every_stored_frame_it_uses() -> None:
    x = torch.randn(2, 1, 4, 10, requires_grad=True)
    out = decode(x, 2)
    assert out.shape == (4, 1, 4, 10)
    (out**2).sum().backward()
    assert x.grad is not None and bool((x.grad != 0).all())
    assert decode(x, 1) is x


@pytest.mark.parametrize("bad", [0, 5, "2", 2.0, True, None])
def test_a_bad_formation_in_a_shared_set_is_one_payload_error(bad: object) -> None:
    meta = {"method": "dm", "ipc": 1, "n_classes": 2, "features": {}, "init": "random", "client_id": "client-3",
            "privacy": None, "version": "x", "formation": bad}  # fmt: skip
    s = SyntheticSet(x=np.zeros((2, 1, 3, 8), dtype=np.float32), y=np.array([0, 1], dtype=np.int64), meta=meta)
    with pytest.raises(PayloadError, match=r"client-3: metadata 'formation' must be an integer in \[1, 4\]"):
        validate_set(s, n_classes=2, expected_shape=None, max_bytes=None, source="client-3")
    assert factor({}) == 1


def test_distil_packs_random_and_matches_decoded_dm_and_refuses_other_methods(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    part = data.client(0)
    mf = cfg.distill.model_copy(update={"formation": 2})
    common = {"ipc": 2, "model_cfg": cfg.model, "n_classes": data.n_classes, "init_state": None, "seed": 1}
    packed = distil(part, method="random", cfg=mf, **common)
    per_class = np.bincount(part.y, minlength=data.n_classes)
    stored = -(-np.minimum(4, per_class) // 2)  # ipc·f real examples (what the class has), f per stored example
    assert np.bincount(packed.y, minlength=data.n_classes).tolist() == stored.tolist()
    assert packed.meta["formation"] == 2 and packed.meta["ipc_effective"] == stored.tolist()
    x, y = training_examples(packed.x, packed.y, packed.meta)
    assert len(x) == 2 * len(packed) and y.tolist() == np.repeat(packed.y, 2).tolist()

    dm = distil(part, method="dm", cfg=mf, **common)
    assert dm.meta["formation"] == 2 and len(dm) == 2 * int((per_class > 0).sum())
    plain = distil(part, method="dm", cfg=cfg.distill, **common)
    assert "formation" not in plain.meta and plain.x.shape == dm.x.shape and not np.array_equal(plain.x, dm.x)
    with pytest.raises(ConfigError, match=r"distill\.formation: 2 is implemented for random and dm only, not 'gm'"):
        distil(part, method="gm", cfg=mf, **common)


def test_the_server_decodes_and_the_random_baseline_stays_real(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    mf = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"formation": 2})})
    syn = run_pipeline(mf, data, pipeline="synthetic", seed=3)
    one = run_pipeline(cfg, data, pipeline="synthetic", seed=3)
    assert syn.shared is not None and one.shared is not None
    assert len(syn.shared) == 2 * sum(len(s) for s in syn.sets.values()) == 2 * len(one.shared)
    assert all(s.meta["formation"] == 2 for s in syn.sets.values())
    assert abs(syn.bytes_up_total - one.bytes_up_total) < 100  # the same arrays; the metadata says "formation": 2
    base = run_pipeline(mf, data, pipeline="random_subset", seed=3)
    ref = run_pipeline(cfg, data, pipeline="random_subset", seed=3)
    assert base.shared is not None and ref.shared is not None and np.array_equal(base.shared.x, ref.shared.x)
