"""The dataset pipeline on a tiny embedded corpus: speaker-independent split, train-only statistics, determinism."""

from pathlib import Path

import numpy as np
import pytest
from wavtrees import FIVE, synth_clip, write_manifest, write_wav

from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.errors import DataError


def _cfg(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        None,
        [
            "data.embedded.n_speakers=5", "data.embedded.utterances_per_emotion=3", "data.test_speakers=0.2",
            "data.embedded.duration_s=[1.0, 1.5]", "features.segment_s=1.5", f"features.cache_dir={tmp_path}",
            "federation.num_clients=4", *extra,
        ],
    )  # fmt: skip


def test_dataset_split_normalisation_and_clients(tmp_path: Path) -> None:
    fixed = build_dataset(_cfg(tmp_path))  # the default: (dB - offset) / scale, the same for every split and client
    cfg = _cfg(tmp_path, "features.normalise=train_speakers")
    data = build_dataset(cfg)
    assert np.array_equal(fixed.train.utterance_id, data.train.utterance_id)
    raw_db = data.train.x * data.normaliser.std + data.normaliser.mean
    assert np.allclose(fixed.train.x, (raw_db - cfg.features.db_offset) / cfg.features.db_scale, atol=1e-4)
    assert len(data.train) + len(data.test) == 5 * 5 * 3
    assert not set(data.train.speaker) & set(data.test.speaker)
    assert len(set(data.test.speaker)) == 1
    # train_speakers: statistics from the training speakers only: train is standardised per mel bin, test is not
    assert np.abs(data.train.x.mean(axis=(0, 1, 3))).max() < 1e-4
    assert np.abs(data.train.x.std(axis=(0, 1, 3)) - 1).max() < 1e-3
    assert np.abs(data.test.x.mean(axis=(0, 1, 3))).max() > 1e-3
    # clients: whole training speakers, every training utterance exactly once, none from the test speaker
    owned = np.sort(np.concatenate(data.clients))
    assert np.array_equal(owned, np.arange(len(data.train)))
    assert all(len(set(data.client(k).speaker)) == 1 for k in range(4))
    assert data.input_shape == (1, 64, 1 + int(1.5 * 16000) // 512)


def test_dataset_is_a_pure_function_of_config_and_seed(tmp_path: Path) -> None:
    a = build_dataset(_cfg(tmp_path / "a"))
    b = build_dataset(_cfg(tmp_path / "b"))  # separate cache: recomputed from scratch
    c = build_dataset(_cfg(tmp_path / "a", "seed=1"))
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.utterance_id, b.test.utterance_id)
    assert not np.array_equal(a.train.x[:5], c.train.x[:5])


def _manifest(tmp_path: Path, split_of: dict[str, str]) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for spk_i, spk in enumerate(split_of):
        for emo in FIVE:
            for j in range(2):
                wav = write_wav(tmp_path / "wav" / f"{spk}_{emo}_{j}.wav",
                                synth_clip(emo, speaker=spk_i, seconds=0.6, sample_rate=16000, rng=rng),
                                sample_rate=16000)  # fmt: skip
                split = split_of[spk] if j == 0 or spk != "mixed" else "train"
                rows.append({"path": str(wav.relative_to(tmp_path)), "speaker": spk, "emotion": emo, "split": split})
    return write_manifest(tmp_path / "manifest.csv", rows)


def test_manifest_split_column_defines_the_test_set(tmp_path: Path) -> None:
    csv = _manifest(tmp_path, {"a": "train", "b": "train", "c": "test"})
    cfg = load_config(None, ["data.corpus=manifest", f"data.path={csv}", "data.test_speakers=split",
                             "features.segment_s=0.6", f"features.cache_dir={tmp_path / 'cache'}",
                             "federation.num_clients=2"])  # fmt: skip
    data = build_dataset(cfg)
    assert set(data.test.speaker) == {"c"} and set(data.train.speaker) == {"a", "b"}
    assert len(data.test) == 10 and len(data.train) == 20


def test_manifest_split_must_be_speaker_independent(tmp_path: Path) -> None:
    csv = _manifest(tmp_path, {"a": "train", "mixed": "test"})
    cfg = load_config(
        None,
        ["data.corpus=manifest", f"data.path={csv}", "data.test_speakers=split", "features.segment_s=0.6",
         "features.cache_dir=null", "federation.num_clients=1"],
    )  # fmt: skip
    with pytest.raises(DataError, match=r"not speaker-independent: speaker\(s\) \['mixed'\]"):
        build_dataset(cfg)
