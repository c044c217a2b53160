"""Log-Mel features: fast path against the librosa reference, fix_length, the on-disk cache and normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from fedsered.config import FeaturesConfig
from fedsered.data import features as feat
from fedsered.data.cache import cache_key, load_cached, save_cached
from fedsered.data.features import (
    Normaliser,
    extract_features,
    fit_normaliser,
    fix_length,
    logmel_fast,
    logmel_librosa,
    n_frames,
    normalise,
)
from fedsered.data.types import AudioCorpus
from fedsered.errors import DataError

SR = 16000
TOL_DB = 1e-4


def voice(seconds: float, *, seed: int, f0: float = 140.0, noise_db: float = -40.0) -> np.ndarray:
    """A speech-like clip: gliding harmonics under a syllable envelope, plus white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 3.0 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 16)) * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2
    x = x + 10 ** (noise_db / 20) * rng.standard_normal(t.size)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def tone(freq: float, seconds: float = 3.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def sample_clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        voice(3.0, seed=0),  # exactly the segment
        voice(1.3, seed=1, f0=220.0),  # shorter: zero-padded
        voice(4.7, seed=2, f0=95.0, noise_db=-60.0),  # longer: centre-cropped
        (1e-6 * rng.standard_normal(2 * SR)).astype(np.float32),  # near-silent (about -120 dB, under amin)
        (3e-5 * rng.standard_normal(3 * SR)).astype(np.float32),  # quiet, straddling the -100 dB floor
        np.zeros(SR, dtype=np.float32),  # digital silence
        tone(440.0, 2.2) + voice(2.2, seed=3),
        np.zeros(0, dtype=np.float32),  # empty: all padding
        np.full(1, 0.5, dtype=np.float32),  # a single sample: only the first frame is live
    ]


def make_corpus(n: int = 6, *, seed: int = 0, sample_rate: int = SR, digest: str = "corpus-a") -> AudioCorpus:
    rng = np.random.default_rng(seed)
    audio = [voice(float(rng.uniform(1.0, 3.5)), seed=seed * 100 + i, f0=float(rng.uniform(90, 250))) for i in range(n)]
    return AudioCorpus(
        audio=audio,
        sample_rate=sample_rate,
        labels=np.arange(n, dtype=np.int32) % 3,
        emotions=("neutral", "happy", "sad"),
        speaker=np.array([f"spk{i % 2}" for i in range(n)]),
        utterance_id=np.array([f"utt{i:03d}" for i in range(n)]),
        digest=digest,
    )


# ---------------------------------------------------------------------------------------------------------------
# the transform


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"hop_length": 256, "n_mels": 40, "fmin": 50.0, "fmax": 7000.0},
        {"n_fft": 400, "hop_length": 160, "n_mels": 80, "top_db": None, "segment_s": 2.0},
        {"n_fft": 511, "hop_length": 128, "n_mels": 32, "top_db": 60.0},
    ],
)
def test_fast_matches_librosa(settings: dict[str, object]) -> None:
    cfg = FeaturesConfig(cache_dir=None, **settings)  # type: ignore[arg-type]
    clips = sample_clips()
    ref = logmel_librosa(clips, cfg)
    for batch_size in (1, 3, 16):
        out = logmel_fast(clips, cfg, batch_size=batch_size)
        assert out.shape == ref.shape == (len(clips), 1, cfg.n_mels, n_frames(cfg))
        assert out.dtype == ref.dtype == np.float32
        assert float(np.max(np.abs(out - ref))) <= TOL_DB


def test_worker_threads_give_identical_output() -> None:
    cfg = FeaturesConfig(cache_dir=None)
    clips = [voice(float(d), seed=i) for i, d in enumerate(np.linspace(0.5, 4.0, 9))]
    before = torch.get_num_threads()
    serial = logmel_fast(clips, cfg, batch_size=2, workers=1)
    calls: list[tuple[int, int]] = []
    threaded = logmel_fast(clips, cfg, batch_size=2, workers=3, progress=lambda d, t: calls.append((d, t)))
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(threaded, serial)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (9, 9) and len(calls) == 5
    assert float(np.max(np.abs(serial - logmel_librosa(clips, cfg)))) <= TOL_DB
    assert logmel_fast([], cfg).shape == (0, 1, 64, 94)
    with pytest.raises(ValueError):
        logmel_fast(clips, cfg, batch_size=0)


def test_shape_follows_segment_and_hop() -> None:
    cfg = FeaturesConfig(cache_dir=None)
    n_samples = round(cfg.segment_s * cfg.sample_rate)
    out = logmel_fast([voice(2.0, seed=0)], cfg)
    assert out.shape == (1, 1, 64, 1 + n_samples // 512) == (1, 1, 64, 94)


def test_silence_sits_on_the_amin_floor() -> None:
    cfg = FeaturesConfig(cache_dir=None)
    out = logmel_fast([np.zeros(SR, dtype=np.float32)], cfg)
    np.testing.assert_array_equal(out, logmel_librosa([np.zeros(SR, dtype=np.float32)], cfg))
    np.testing.assert_allclose(out, -100.0, atol=1e-4)


def test_top_db_clamps_per_clip() -> None:
    cfg = FeaturesConfig(cache_dir=None, top_db=50.0)
    out = logmel_fast([voice(3.0, seed=4), 0.001 * voice(3.0, seed=5)], cfg)
    for clip in out:
        assert clip.max() - clip.min() == pytest.approx(50.0, abs=1e-4)
    assert out[0].max() - out[1].max() == pytest.approx(60.0, abs=0.05)  # x0.001 is -60 dB


@pytest.mark.parametrize("backend", [logmel_fast, logmel_librosa])
def test_1khz_tone_peaks_in_its_mel_bin(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = FeaturesConfig(cache_dir=None)
    out = backend([tone(1000.0)], cfg)
    edges = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.sample_rate / 2)
    expected = int(np.argmin(np.abs(edges[1:-1] - 1000.0)))  # the filter centred nearest 1 kHz
    assert edges[expected] < 1000.0 < edges[expected + 2]  # ... whose triangle contains 1 kHz
    assert int(np.argmax(out[0, 0].mean(axis=1))) == expected


def test_fix_length_crops_centre_and_pads_end() -> None:
    np.testing.assert_array_equal(fix_length(np.arange(10), 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(fix_length(np.arange(9), 4), [2, 3, 4, 5])  # odd surplus: extra sample off the end
    np.testing.assert_array_equal(fix_length(np.arange(1, 4), 6), [1, 2, 3, 0, 0, 0])
    clip = np.arange(5, dtype=np.float32)
    same = fix_length(clip, 5)
    np.testing.assert_array_equal(same, clip)
    assert same is not clip
    assert fix_length(np.arange(3, dtype=np.float64), 5).dtype == np.float32
    with pytest.raises(DataError):
        fix_length(np.zeros((2, 5)), 4)


# ---------------------------------------------------------------------------------------------------------------
# extract_features and the cache


def test_extract_features_returns_corpus_metadata() -> None:
    corpus = make_corpus()
    cfg = FeaturesConfig(cache_dir=None)
    calls: list[tuple[int, int]] = []
    fs = extract_features(corpus, cfg, progress=lambda done, total: calls.append((done, total)))
    assert fs.x.shape == (6, 1, 64, 94)
    assert fs.y.dtype == np.int64
    np.testing.assert_array_equal(fs.y, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(fs.utterance_id, corpus.utterance_id)
    np.testing.assert_array_equal(fs.speaker, corpus.speaker)
    assert calls[-1] == (6, 6)
    ref = extract_features(corpus, cfg.model_copy(update={"backend": "librosa"}))
    assert float(np.max(np.abs(ref.x - fs.x))) <= TOL_DB


def test_sample_rate_mismatch_is_a_data_error() -> None:
    with pytest.raises(DataError, match="22050 Hz"):
        extract_features(make_corpus(sample_rate=22050), FeaturesConfig(cache_dir=None))


def test_non_finite_audio_is_a_data_error() -> None:
    corpus = make_corpus(3)
    corpus.audio[1][100] = np.nan
    with pytest.raises(DataError, match="utt001"):
        extract_features(corpus, FeaturesConfig(cache_dir=None))


def _no_extraction(*args: object, **kwargs: object) -> np.ndarray:
    raise AssertionError("features were recomputed instead of loaded from the cache")


def test_cache_hit_skips_extraction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = make_corpus()
    cfg = FeaturesConfig(cache_dir=str(tmp_path))
    first = extract_features(corpus, cfg)
    files = list(tmp_path.glob("features-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    monkeypatch.setattr(feat, "logmel_fast", _no_extraction)
    monkeypatch.setattr(feat, "logmel_librosa", _no_extraction)
    second = extract_features(corpus, cfg)
    np.testing.assert_array_equal(second.x, first.x)
    np.testing.assert_array_equal(second.y, first.y)
    np.testing.assert_array_equal(second.utterance_id, first.utterance_id)
    # the backend does not enter the key (both give the same numbers)
    third = extract_features(corpus, cfg.model_copy(update={"backend": "librosa"}))
    np.testing.assert_array_equal(third.x, first.x)
    assert files[0].stat().st_mtime_ns == mtime
    # a changed setting misses the cache
    with pytest.raises(AssertionError, match="recomputed"):
        extract_features(corpus, cfg.model_copy(update={"n_mels": 40}))
    # so does another corpus digest
    with pytest.raises(AssertionError, match="recomputed"):
        extract_features(make_corpus(digest="corpus-b"), cfg)


def test_cache_hit_takes_labels_from_the_corpus(tmp_path: Path) -> None:
    cfg = FeaturesConfig(cache_dir=str(tmp_path))
    corpus = make_corpus()
    extract_features(corpus, cfg)
    relabelled = AudioCorpus(
        audio=corpus.audio,
        sample_rate=SR,
        labels=np.full(6, 2),
        emotions=corpus.emotions,
        speaker=corpus.speaker,
        utterance_id=corpus.utterance_id,
        digest=corpus.digest,
    )
    np.testing.assert_array_equal(extract_features(relabelled, cfg).y, np.full(6, 2))


def test_a_new_setting_writes_a_second_file(tmp_path: Path) -> None:
    corpus = make_corpus(3)
    cfg = FeaturesConfig(cache_dir=str(tmp_path))
    a = extract_features(corpus, cfg)
    b = extract_features(corpus, cfg.model_copy(update={"n_mels": 40}))
    assert a.x.shape[2] == 64 and b.x.shape[2] == 40
    assert len(list(tmp_path.glob("features-*.npz"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "empty"])
def test_corrupt_cache_file_is_replaced(tmp_path: Path, damage: str) -> None:
    corpus = make_corpus(4)
    cfg = FeaturesConfig(cache_dir=str(tmp_path))
    good = extract_features(corpus, cfg)
    (path,) = tmp_path.glob("features-*.npz")
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        save_cached(path, good.subset(np.arange(2)))  # valid file, wrong number of clips
    with pytest.warns(UserWarning, match="corrupt"):
        again = extract_features(corpus, cfg)
    np.testing.assert_array_equal(again.x, good.x)
    reloaded = load_cached(path)
    assert reloaded is not None
    np.testing.assert_array_equal(reloaded.x, good.x)


def test_load_cached_missing_file_is_none(tmp_path: Path) -> None:
    assert load_cached(tmp_path / "features-nothing.npz") is None


def test_load_cached_deletes_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "features-bad.npz"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.warns(UserWarning, match="corrupt"):
        assert load_cached(path) is None
    assert not path.exists()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    fs = extract_features(make_corpus(3), FeaturesConfig(cache_dir=None))
    path = save_cached(tmp_path / "sub" / "f.npz", fs)
    back = load_cached(path, expected_shape=fs.x.shape)
    assert back is not None
    for name in ("x", "y", "speaker", "utterance_id"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fs, name))
    assert back.x.dtype == np.float32 and back.y.dtype == np.int64
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # no leftovers of the atomic write


def test_cache_key_covers_output_settings_only() -> None:
    cfg = FeaturesConfig()
    ids = ["a", "b", "c"]
    key = cache_key("d1", cfg, ids)
    assert len(key) == 32 and int(key, 16) >= 0
    assert cache_key("d1", cfg.model_copy(update={"backend": "librosa", "cache_dir": "/elsewhere"}), ids) == key
    for changed in ({"n_mels": 32}, {"hop_length": 256}, {"fmax": 7000.0}, {"top_db": None}, {"segment_s": 2.0}):
        assert cache_key("d1", cfg.model_copy(update=changed), ids) != key
    assert cache_key("d2", cfg, ids) != key
    assert cache_key("d1", cfg, ["b", "a", "c"]) != key
    assert cache_key("d1", cfg, ["ab", "c"]) != cache_key("d1", cfg, ["a", "bc"])


# ---------------------------------------------------------------------------------------------------------------
# normalisation


def _features(n: int, *, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offsets = np.linspace(-80, -10, 8)[None, None, :, None]
    scales = np.linspace(1, 20, 8)[None, None, :, None]
    return (offsets + scales * rng.standard_normal((n, 1, 8, 30))).astype(np.float32)


def test_normaliser_standardises_train_per_bin() -> None:
    train = _features(50, seed=0)
    norm = fit_normaliser(train)
    assert norm.mean.shape == norm.std.shape == (1, 8, 1)
    z = normalise(train, norm)
    assert z.dtype == np.float32 and z.shape == train.shape
    np.testing.assert_allclose(z.mean(axis=(0, 1, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 1, 3)), 1.0, atol=1e-4)


def test_normaliser_applies_train_statistics_to_other_data() -> None:
    train = _features(50, seed=0)
    other = 2.0 * _features(20, seed=1) + 5.0
    norm = fit_normaliser(train)
    mean = train.astype(np.float64).mean(axis=(0, 3), keepdims=True)
    std = train.astype(np.float64).std(axis=(0, 3), keepdims=True)
    np.testing.assert_allclose(normalise(other, norm), (other - mean) / std, rtol=1e-4, atol=1e-4)
    assert np.abs(normalise(other, norm).mean(axis=(0, 1, 3))).max() > 1.0  # not re-fitted on ``other``


def test_constant_bin_gets_the_std_floor() -> None:
    train = _features(10, seed=0)
    train[:, :, 3, :] = -100.0
    norm = fit_normaliser(train)
    assert norm.std[0, 3, 0] == pytest.approx(feat.STD_FLOOR)
    z = normalise(train, norm)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, :, 3, :], 0.0)


def test_normaliser_dict_round_trip() -> None:
    norm = fit_normaliser(_features(10, seed=0))
    back = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    with pytest.raises(DataError):
        Normaliser.from_dict({"mean": [0.0, 1.0]})
    with pytest.raises(DataError):
        Normaliser.from_dict({"mean": [0.0, 1.0], "std": [1.0, 0.0]})
    with pytest.raises(DataError):
        Normaliser.from_dict({"mean": [0.0, 1.0], "std": [1.0]})
