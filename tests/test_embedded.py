"""The embedded emotional-speech generator: determinism, corpus structure, and acoustics checked with librosa."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable

import librosa
import numpy as np
import pytest

from fedsered.config import EmbeddedCorpusConfig
from fedsered.data.embedded import SUPPORTED_EMOTIONS, generate_embedded_corpus
from fedsered.data.types import AudioCorpus
from fedsered.errors import DataError

SR = 16000
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful")


def _small(**kw: object) -> EmbeddedCorpusConfig:
    base: dict[str, object] = {"n_speakers": 2, "utterances_per_emotion": 2, "duration_s": (0.5, 0.8)}
    base.update(kw)
    return EmbeddedCorpusConfig.model_validate(base)


def _by_id(corpus: AudioCorpus) -> dict[str, np.ndarray]:
    return dict(zip(corpus.utterance_id.tolist(), corpus.audio, strict=True))


# ---------------------------------------------------------------- determinism and structure


def test_same_seed_same_audio_different_seed_different_audio() -> None:
    cfg = _small()
    a = generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=7)
    b = generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=7)
    c = generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=8)
    assert a.digest == b.digest
    assert all(np.array_equal(x, y) for x, y in zip(a.audio, b.audio, strict=True))
    assert a.digest != c.digest
    assert not any(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a.audio, c.audio, strict=True))


def test_shapes_dtypes_labels_ids_and_counts() -> None:
    cfg = _small(n_speakers=3, utterances_per_emotion=2, duration_s=(0.6, 0.9))
    emotions = ("sad", "angry", "neutral")
    corpus = generate_embedded_corpus(cfg, emotions=emotions, sample_rate=8000, seed=0)
    assert len(corpus.audio) == 3 * 3 * 2
    assert corpus.sample_rate == 8000
    assert corpus.emotions == emotions
    assert corpus.labels.dtype == np.int64
    assert np.bincount(corpus.labels).tolist() == [6, 6, 6]
    assert sorted(set(corpus.speaker.tolist())) == ["spk00", "spk01", "spk02"]
    assert corpus.utterance_id[0] == "spk00_sad_000"
    assert corpus.utterance_id[-1] == "spk02_neutral_001"
    for clip, label, spk, uid in zip(corpus.audio, corpus.labels, corpus.speaker, corpus.utterance_id, strict=True):
        assert clip.dtype == np.float32 and clip.ndim == 1
        assert 0.6 * 8000 - 1 <= clip.size <= 0.9 * 8000 + 1
        assert np.all(np.isfinite(clip))
        assert 1e-3 < np.max(np.abs(clip)) < 1.0
        assert uid == f"{spk}_{emotions[label]}_{uid[-3:]}"
    assert len(set(corpus.utterance_id.tolist())) == len(corpus.audio)
    assert len(corpus.digest) == 64 and int(corpus.digest, 16) >= 0


def test_digest_tracks_every_input() -> None:
    cfg = _small()
    base = generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=0).digest
    changed = [
        generate_embedded_corpus(_small(difficulty=0.6), emotions=EMOTIONS, sample_rate=SR, seed=0).digest,
        generate_embedded_corpus(cfg, emotions=EMOTIONS[::-1], sample_rate=SR, seed=0).digest,
        generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=8000, seed=0).digest,
        generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=1).digest,
    ]
    assert len({base, *changed}) == 5


def test_clips_do_not_depend_on_speaker_count_or_emotion_set() -> None:
    two = _by_id(generate_embedded_corpus(_small(n_speakers=2), emotions=EMOTIONS, sample_rate=SR, seed=3))
    three = _by_id(
        generate_embedded_corpus(_small(n_speakers=3), emotions=("angry", "neutral"), sample_rate=SR, seed=3)
    )
    shared = sorted(set(two) & set(three))
    assert len(shared) == 2 * 2 * 2  # spk00/spk01 x angry/neutral x 2
    for uid in shared:
        assert np.array_equal(two[uid], three[uid]), uid


def test_unknown_emotion_raises_data_error_listing_supported() -> None:
    with pytest.raises(DataError, match="disgust") as err:
        generate_embedded_corpus(_small(), emotions=("neutral", "disgust"), sample_rate=SR, seed=0)
    for name in SUPPORTED_EMOTIONS:
        assert name in str(err.value)
    assert {"neutral", "happy", "sad", "angry", "fearful"} <= set(SUPPORTED_EMOTIONS)


def test_every_supported_emotion_generates() -> None:
    corpus = generate_embedded_corpus(
        _small(n_speakers=2, utterances_per_emotion=1), emotions=SUPPORTED_EMOTIONS, sample_rate=SR, seed=0
    )
    assert len(corpus.audio) == 2 * len(SUPPORTED_EMOTIONS)


# Pinned from the generator as of GENERATOR_VERSION fedsered-embedded-v1: a refactor must not move the audio. The
# samples are rounded to 1e-4 before hashing so that last-bit differences between numpy builds do not count.
_PINNED_AUDIO = {
    0.0: "9001754366edfa1860f70d597f8c8210050d8d045dde4d960b3bf01becd0459c",
    1.0: "a58a51440f7140f17862d00f31e3ddcf2637af275415728a2e0372c3b03769c3",
}


@pytest.mark.parametrize("difficulty", sorted(_PINNED_AUDIO))
def test_generated_audio_is_pinned(difficulty: float) -> None:
    cfg = _small(n_speakers=2, utterances_per_emotion=1, duration_s=(0.3, 0.4), difficulty=difficulty)
    corpus = generate_embedded_corpus(cfg, emotions=SUPPORTED_EMOTIONS, sample_rate=8000, seed=11)
    h = hashlib.sha256()
    for clip in corpus.audio:
        h.update(np.int64(clip.size).tobytes())
        h.update((np.round(clip.astype(np.float64), 4) + 0.0).tobytes())
    assert h.hexdigest() == _PINNED_AUDIO[difficulty]


# ---------------------------------------------------------------- acoustics, measured with librosa


def _voiced_f0(clip: np.ndarray) -> np.ndarray:
    """pyin F0 (Hz) of the voiced frames."""
    f0, voiced, _ = librosa.pyin(clip, fmin=60.0, fmax=500.0, sr=SR, frame_length=1024)
    return f0[voiced]


def _level_db(clip: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(clip.astype(np.float64) ** 2)))


def _hf_ratio_db(clip: np.ndarray) -> float:
    """Energy above 2 kHz relative to the total, in dB (long-term spectrum)."""
    power = (np.abs(librosa.stft(clip, n_fft=1024)) ** 2).sum(axis=1)
    freqs = librosa.fft_frequencies(sr=SR, n_fft=1024)
    return float(10 * np.log10(power[freqs >= 2000].sum() / power.sum()))


def _per_speaker_means(corpus: AudioCorpus, measure: Callable[[np.ndarray], float]) -> dict[str, dict[str, float]]:
    """``{emotion: {speaker: mean of measure over that speaker's clips}}``."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for clip, label, spk in zip(corpus.audio, corpus.labels, corpus.speaker, strict=True):
        values[(corpus.emotions[label], str(spk))].append(measure(clip))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (emotion, spk), v in values.items():
        out[emotion][spk] = float(np.mean(v))
    return out


def _semitones(f: dict[str, dict[str, float]], emotion: str, ref: str) -> float:
    """Mean over speakers of 12 log2(F0_emotion / F0_ref): the within-speaker shift."""
    return float(np.mean([12 * np.log2(f[emotion][s] / f[ref][s]) for s in f[ref]]))


def _median_f0(corpus: AudioCorpus) -> dict[str, dict[str, float]]:
    """``{emotion: {speaker: median pyin F0 over the voiced frames of all that speaker's clips}}``.

    Pooling frames before the median keeps one badly tracked clip from moving a speaker's value.
    """
    frames: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for clip, label, spk in zip(corpus.audio, corpus.labels, corpus.speaker, strict=True):
        frames[(corpus.emotions[label], str(spk))].append(_voiced_f0(clip))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (emotion, spk), f in frames.items():
        pooled = np.concatenate(f)
        assert pooled.size >= 20, (emotion, spk, pooled.size)  # pyin found the voice
        out[emotion][spk] = float(np.median(pooled))
    return out


@pytest.fixture(scope="module")
def default_corpus() -> AudioCorpus:
    cfg = EmbeddedCorpusConfig(n_speakers=2, utterances_per_emotion=3, duration_s=(1.0, 1.4))  # difficulty 0.5
    return generate_embedded_corpus(cfg, emotions=EMOTIONS, sample_rate=SR, seed=0)


@pytest.fixture(scope="module")
def default_f0(default_corpus: AudioCorpus) -> dict[str, dict[str, float]]:
    return _median_f0(default_corpus)


def test_pyin_f0_follows_the_emotion_ordering(default_f0: dict[str, dict[str, float]]) -> None:
    shift = {e: _semitones(default_f0, e, "neutral") for e in EMOTIONS}
    assert shift["angry"] > 1.5, shift
    assert shift["happy"] > 1.0, shift
    assert shift["fearful"] > 1.5, shift
    assert shift["sad"] < -0.5, shift


def test_speakers_differ_more_than_emotions_in_f0(default_f0: dict[str, dict[str, float]]) -> None:
    male = np.mean([default_f0[e]["spk00"] for e in EMOTIONS])
    female = np.mean([default_f0[e]["spk01"] for e in EMOTIONS])
    largest_emotion_shift = max(abs(_semitones(default_f0, e, "neutral")) for e in EMOTIONS)
    assert 12 * np.log2(female / male) > largest_emotion_shift + 2.0


def test_intensity_angry_above_neutral_above_sad(default_corpus: AudioCorpus) -> None:
    level = _per_speaker_means(default_corpus, _level_db)
    mean = {e: float(np.mean(list(level[e].values()))) for e in EMOTIONS}
    assert mean["angry"] > mean["neutral"] + 2.0 > mean["sad"] + 4.0, mean


def test_high_frequency_energy_angry_above_sad(default_corpus: AudioCorpus) -> None:
    hf = _per_speaker_means(default_corpus, _hf_ratio_db)
    for spk in ("spk00", "spk01"):
        assert hf["angry"][spk] > hf["sad"][spk] + 2.0, hf


def test_difficulty_shrinks_the_angry_sad_f0_gap() -> None:
    gaps = []
    for difficulty in (0.0, 1.0):
        cfg = EmbeddedCorpusConfig(n_speakers=2, utterances_per_emotion=3, duration_s=(1.0, 1.4), difficulty=difficulty)
        corpus = generate_embedded_corpus(cfg, emotions=("sad", "angry"), sample_rate=SR, seed=0)
        gaps.append(_semitones(_median_f0(corpus), "angry", "sad"))
    easy, hard = gaps
    assert easy > hard + 2.0, gaps
    assert easy > 4.0, gaps


@pytest.mark.parametrize("sample_rate", [4000, 48000])
def test_shortest_clips_and_extreme_rates_hold_speech(sample_rate: int) -> None:
    cfg = _small(duration_s=(0.3, 0.3), difficulty=1.0, snr_db=80.0)
    corpus = generate_embedded_corpus(cfg, emotions=("sad", "angry"), sample_rate=sample_rate, seed=0)
    for clip in corpus.audio:
        assert clip.size == round(0.3 * sample_rate)
        assert np.all(np.isfinite(clip))
        assert 1e-3 < np.max(np.abs(clip)) < 1.0


def test_loud_emotions_are_soft_limited_below_full_scale() -> None:
    cfg = _small(n_speakers=2, utterances_per_emotion=4, difficulty=0.0, duration_s=(1.0, 1.0))
    corpus = generate_embedded_corpus(cfg, emotions=("angry",), sample_rate=SR, seed=0)
    peaks = np.array([np.max(np.abs(c)) for c in corpus.audio])
    assert np.all(peaks < 1.0)
    assert np.any(peaks > 0.5)  # loud, yet not normalised away
