"""The functionals reference: utterance functionals (values, padding, cache) and the logistic-regression model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fedsered.centralised import run_functionals_baseline
from fedsered.config import FeaturesConfig, FunctionalsConfig, load_config
from fedsered.data import functionals as fmod
from fedsered.data.dataset import build_dataset
from fedsered.data.features import extract_features, live_frames, n_frames
from fedsered.data.functionals import (
    PROSODIC_NAMES,
    Functionals,
    FunctionalSplits,
    extract_functionals,
    functional_names,
    logmel_statistics,
    prosodic_features,
)
from fedsered.data.types import AudioCorpus
from fedsered.errors import ConfigError, DataError
from fedsered.models.functionals import fit_functionals_model, predict_functionals

SR = 16000
SETTINGS = FunctionalsConfig()
P = {name: i for i, name in enumerate(PROSODIC_NAMES)}


def harmonic(f0: float | np.ndarray, seconds: float, *, amp: float = 0.3) -> np.ndarray:
    """A voiced clip: 8 harmonics of ``f0`` (a constant or one value per sample)."""
    n = round(seconds * SR)
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 9))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def noise(seconds: float, *, seed: int = 0, amp: float = 0.1) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def corpus_of(audio: list[np.ndarray], *, digest: str = "functionals-test") -> AudioCorpus:
    n = len(audio)
    return AudioCorpus(
        audio=audio, sample_rate=SR, labels=np.arange(n, dtype=np.int64) % 2, emotions=("neutral", "angry"),
        speaker=np.array([f"spk{i % 2}" for i in range(n)]), utterance_id=np.array([f"utt{i}" for i in range(n)]),
        digest=digest,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# prosody from the audio


def test_f0_of_a_harmonic_clip_in_semitones() -> None:
    for f0 in (120.0, 200.0, 310.0):
        p = prosodic_features(harmonic(f0, 1.5), sample_rate=SR, settings=SETTINGS)
        assert p[P["f0_median_st"]] == pytest.approx(12 * np.log2(f0 / 100.0), abs=0.05)
        assert p[P["f0_std_st"]] < 0.05 and p[P["f0_range_st"]] < 0.1
        assert p[P["voiced_fraction"]] > 0.95
        assert p[P["duration_s"]] == pytest.approx(1.5)


def test_f0_range_of_a_glide() -> None:
    n = round(2.0 * SR)
    glide = harmonic(150.0 * 2.0 ** (np.arange(n) / n), 2.0)  # one octave up over the clip
    p = prosodic_features(glide, sample_rate=SR, settings=SETTINGS)
    assert 9.0 < p[P["f0_range_st"]] < 12.5  # 5th to 95th percentile of a 12-semitone glide: ~10.8
    assert p[P["f0_median_st"]] == pytest.approx(12 * np.log2(150.0 * 2**0.5 / 100.0), abs=0.3)


def test_noise_and_silence_have_no_voiced_frames() -> None:
    assert prosodic_features(noise(1.0), sample_rate=SR, settings=SETTINGS)[P["voiced_fraction"]] < 0.05
    for clip in (np.zeros(SR, dtype=np.float32), np.zeros(0, dtype=np.float32)):
        p = prosodic_features(clip, sample_rate=SR, settings=SETTINGS)
        assert p[P["voiced_fraction"]] == 0.0 and np.isnan(p[:3]).all()  # F0 undefined, not 0
        assert p[P["energy_mean_db"]] == pytest.approx(-100.0) and p[P["energy_std_db"]] == 0.0


def test_energy_follows_the_level_and_f0_does_not() -> None:
    quiet, loud = harmonic(180.0, 1.0, amp=0.1), harmonic(180.0, 1.0, amp=0.2)
    pq = prosodic_features(quiet, sample_rate=SR, settings=SETTINGS)
    pl = prosodic_features(loud, sample_rate=SR, settings=SETTINGS)
    assert pl[P["energy_mean_db"]] - pq[P["energy_mean_db"]] == pytest.approx(20 * np.log10(2.0), abs=0.01)
    assert pl[P["f0_median_st"]] == pytest.approx(pq[P["f0_median_st"]], abs=1e-6)


def test_f0_above_nyquist_and_a_short_frame_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="f0_max_hz"):
        prosodic_features(harmonic(200.0, 0.5), sample_rate=8000, settings=FunctionalsConfig(f0_max_hz=4500.0))
    with pytest.raises(ConfigError, match="frame_s must hold two periods"):
        load_config(None, ["functionals.frame_s=0.02"])  # 60 Hz needs >= 33 ms


# ---------------------------------------------------------------------------------------------------------------
# log-Mel statistics and the whole corpus


def test_logmel_statistics_leave_out_the_padding() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 1, 4, 10)).astype(np.float32)
    live = np.array([10, 4, 1])
    padded = x.copy()
    padded[1, :, :, 4:] = -1000.0  # what sits after the clip must not matter
    padded[2, :, :, 1:] = 123.0
    stats = logmel_statistics(padded, live)
    for i, k in enumerate(live):
        np.testing.assert_allclose(stats[i, :4], x[i, 0, :, :k].astype(np.float64).mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(stats[i, 4:], x[i, 0, :, :k].astype(np.float64).std(axis=1), atol=1e-12)
    with pytest.raises(DataError):
        logmel_statistics(x, np.array([10, 0, 1]))


def test_corpus_functionals_use_the_live_frames_of_the_cnn_segment() -> None:
    features = FeaturesConfig(segment_s=1.0, n_mels=32, cache_dir=None)
    audio = [harmonic(150.0, 0.6), harmonic(220.0, 1.4), noise(1.0, seed=2)]
    corpus = corpus_of(audio)
    logmel = extract_features(corpus, features).x
    fx = extract_functionals(corpus, logmel=logmel, features=features, settings=SETTINGS)
    assert fx.x.shape == (3, 2 * 32 + len(PROSODIC_NAMES)) and fx.x.dtype == np.float32
    assert fx.names == functional_names(32) and list(fx.utterance_id) == ["utt0", "utt1", "utt2"]
    short_live = live_frames(features, len(audio[0]))
    assert short_live < n_frames(features)  # the 0.6 s clip is padded to 1 s
    np.testing.assert_allclose(fx.x[0, :32], logmel[0, 0, :, :short_live].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(fx.x[1, 32:64], logmel[1, 0].std(axis=1), rtol=1e-4)  # cropped: every frame live
    assert fx.x[1, 64 + P["duration_s"]] == pytest.approx(1.4)  # duration of the whole clip, not the segment
    with pytest.raises(DataError, match="shape"):
        extract_functionals(corpus, logmel=logmel[:2], features=features, settings=SETTINGS)


def _fail(*args: object, **kwargs: object) -> Functionals:
    raise AssertionError("functionals were recomputed instead of loaded from the cache")


def test_cache_hits_misses_and_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = FeaturesConfig(segment_s=1.0, n_mels=16, cache_dir=str(tmp_path))
    corpus = corpus_of([harmonic(150.0, 0.8), noise(0.9), harmonic(250.0, 1.0)])
    logmel = extract_features(corpus, features).x
    first = extract_functionals(corpus, logmel=logmel, features=features, settings=SETTINGS)
    (path,) = tmp_path.glob("functionals-*.npz")
    with monkeypatch.context() as m:
        m.setattr(fmod, "compute_functionals", _fail)
        again = extract_functionals(corpus, logmel=logmel, features=features, settings=SETTINGS)
        np.testing.assert_array_equal(again.x, first.x)  # NaN F0 of the noise clip included
        classifier_only = SETTINGS.model_copy(update={"C": 0.1, "max_iter": 10})
        extract_functionals(corpus, logmel=logmel, features=features, settings=classifier_only)
        with pytest.raises(AssertionError, match="recomputed"):
            extract_functionals(corpus, logmel=logmel, features=features, settings=SETTINGS.model_copy(
                update={"voicing_threshold": 0.6}))  # fmt: skip
        with pytest.raises(AssertionError, match="recomputed"):
            extract_functionals(corpus_of(corpus.audio, digest="other"), logmel=logmel, features=features,
                                settings=SETTINGS)  # fmt: skip
    path.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="corrupt"):
        redone = extract_functionals(corpus, logmel=logmel, features=features, settings=SETTINGS)
    np.testing.assert_array_equal(redone.x, first.x)


def test_build_dataset_splits_functionals_row_for_row(tmp_path: Path) -> None:
    cfg = load_config(None, [
        "data.embedded.n_speakers=4", "data.embedded.utterances_per_emotion=2", "data.embedded.duration_s=[1.0, 1.2]",
        "features.segment_s=1.0", "features.n_mels=16", f"features.cache_dir={tmp_path}", "federation.num_clients=2",
    ])  # fmt: skip
    assert build_dataset(cfg).functionals is None
    data = build_dataset(cfg, functionals=True)
    assert isinstance(data.functionals, FunctionalSplits)
    np.testing.assert_array_equal(data.functionals.train.utterance_id, data.train.utterance_id)
    np.testing.assert_array_equal(data.functionals.test.utterance_id, data.test.utterance_id)
    result = run_functionals_baseline(cfg, data)
    assert sum(map(sum, result["confusion"])) == len(data.test) and 0.0 <= result["uar"] <= 1.0
    shuffled = FunctionalSplits(train=data.functionals.train.subset(np.arange(len(data.train))[::-1]),
                                test=data.functionals.test)  # fmt: skip
    with pytest.raises(DataError, match="not in the order"):
        run_functionals_baseline(cfg, dataclasses.replace(data, functionals=shuffled))
    with pytest.raises(DataError, match="without functionals"):
        run_functionals_baseline(cfg, build_dataset(cfg))


# ---------------------------------------------------------------------------------------------------------------
# the classifier


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    x = rng.normal(size=(n, 6)) * np.array([1, 1, 1, 100, 0.01, 1])  # scales the standardisation must absorb
    x[:, 0] += 3.0 * (y == 1)
    x[:, 4] += 0.03 * (y == 2)
    x[rng.random(n) < 0.2, 5] = np.nan  # missing F0-like column
    return x.astype(np.float32), y


def test_classifier_learns_and_is_fitted_on_training_data_only() -> None:
    x, y = _toy(300, 0)
    xt, yt = _toy(200, 1)
    model = fit_functionals_model(x, y, cfg=SETTINGS)
    pred = predict_functionals(model, xt)
    assert pred.dtype == np.int64 and pred.shape == yt.shape
    assert np.mean(pred == yt) > 0.85 and model.converged
    imputed = np.where(np.isnan(x), np.nanmedian(x, axis=0), x).astype(np.float64)
    np.testing.assert_allclose(model.pipeline.named_steps["scale"].mean_, imputed.mean(axis=0), rtol=1e-6)
    again = fit_functionals_model(x, y, cfg=SETTINGS)
    np.testing.assert_array_equal(predict_functionals(again, xt), pred)  # deterministic


def test_classifier_reports_non_convergence_and_refuses_bad_input() -> None:
    x, y = _toy(100, 2)
    assert not fit_functionals_model(x, y, cfg=SETTINGS.model_copy(update={"max_iter": 1})).converged
    with pytest.raises(DataError, match="fewer than two"):
        fit_functionals_model(x, np.zeros(100, dtype=np.int64), cfg=SETTINGS)
    model = fit_functionals_model(x, y, cfg=SETTINGS)
    with pytest.raises(DataError, match="columns"):
        predict_functionals(model, x[:, :5])
