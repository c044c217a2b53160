"""The embedded corpus: a procedural generator of emotional speech, the project's default data (no outside files).

This module owns the synthetic speech model and nothing else. ``generate_embedded_corpus`` returns an
``AudioCorpus`` of ``n_speakers x len(emotions) x utterances_per_emotion`` float32 mono clips.

Speech model (source-filter, all vectorised with numpy / scipy):

* **Speakers** (one random stream each, role ``corpus/speaker/{k}``) have their own F0 baseline (even ``k`` male,
  ~100-130 Hz; odd ``k`` female, ~180-230 Hz), vocal-tract length (formant scale 0.85-1.2), speaking rate, F0 range,
  voice quality (breathiness, glottal closing quotient, spectral tilt), jitter, shimmer, loudness, and an
  expressiveness with which they act each emotion (role ``corpus/speaker/{k}/style/{emotion}``).
* **Utterances** (role ``corpus/utterance/{k}/{emotion}/{j}``) are sequences of syllables: an optional consonant
  onset (a band-passed fricative noise, or a plosive closure and burst), then a vowel, with occasional pauses. The
  voiced source is a glottal-flow derivative (Rosenberg-like pulses) driven by a cumulative phase, with per-cycle
  jitter and shimmer and flow-modulated aspiration noise, shaped by a first-order high shelf (spectral tilt) and
  filtered by the six formant resonators of a random vowel scaled by the speaker's tract length. The F0 contour is
  declination plus per-syllable accents plus slow drift (plus tremor in fear), smoothed over ~70 ms. Background
  noise (white/brown mix) is added at an SNR drawn around ``snr_db``.
* **Emotions** (``EMOTION_PROFILES``) shift F0 mean, F0 range, intensity, speech rate, high-frequency energy,
  jitter and breathiness in the directions of Banse & Scherer (1996) and Scherer (2003): anger up on all, happiness
  up, fear up in F0 and rate with more jitter, sadness down on all, boredom like sadness but flatter; neutral is the
  reference. Calm is a slightly lower-arousal neutral.
* **Level**: every clip's vowels are scaled to a fixed reference RMS (``REFERENCE_RMS``) times the speaker, emotion
  and utterance gain, so intensity differences between emotions survive; peaks above 0.8 are soft-limited into
  (-1, 1).

``difficulty`` in [0, 1] is a smooth, monotone knob: the emotion effect sizes are scaled by ``1.5 - difficulty``
(1.5x the nominal profiles at 0, 1x at the default 0.5, 0.5x at 1), every random spread (per utterance and per
speaker) by ``0.5 + difficulty``, and the mean SNR is ``snr_db + 10 * (0.5 - difficulty)`` dB.

The audio is a pure function of ``(GENERATOR_VERSION, cfg, emotions, sample_rate, seed)``, so the digest of those
is the content key of the corpus (the feature cache keys on it). Change ``GENERATOR_VERSION`` whenever a change here
changes the audio.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

import numpy as np
from scipy import signal

from fedsered.config import EmbeddedCorpusConfig
from fedsered.data.types import AudioCorpus
from fedsered.errors import DataError
from fedsered.seeding import rng as role_rng

GENERATOR_VERSION = "fedsered-embedded-v1"
"""Part of the digest: bump it whenever a code change alters the generated audio."""

REFERENCE_RMS = 0.04
"""Vowel RMS (about -28 dBFS) of a clip at 0 dB total gain; emotion gains are relative to it."""

_CONTROL_RATE = 200.0  # Hz of the F0 control grid, interpolated to the sample rate
_SOFT_LIMIT = 0.8  # peaks above this are compressed smoothly into (-1, 1)


@dataclass(frozen=True)
class EmotionProfile:
    """Nominal acoustic shifts of one emotion relative to neutral (at difficulty 0.5).

    Additive fields scale linearly with the effect strength; multiplicative fields (``*_mult``) scale in log space.
    """

    f0_st: float  # F0 mean shift in semitones
    range_mult: float  # F0 range (declination and accents)
    gain_db: float  # intensity
    rate_mult: float  # syllables per second
    hf_db: float  # high-shelf gain above ~1 kHz (spectral tilt / high-frequency energy)
    jitter_mult: float  # cycle-to-cycle F0 perturbation (shimmer follows its square root)
    breath_mult: float  # aspiration noise
    tremor_st: float  # depth of a 5-8 Hz F0 tremor
    formant_mult: float  # formant scaling (spread lips in happiness, wide jaw in anger)


EMOTION_PROFILES: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile(0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0),
    "calm": EmotionProfile(-0.7, 0.8, -1.5, 0.92, -1.5, 0.9, 1.2, 0.0, 1.0),
    "happy": EmotionProfile(3.0, 2.0, 3.5, 1.05, 2.0, 0.9, 0.7, 0.0, 1.06),
    "sad": EmotionProfile(-2.0, 0.55, -5.0, 0.8, -5.0, 1.2, 1.6, 0.0, 0.98),
    "angry": EmotionProfile(4.0, 1.5, 6.0, 1.18, 6.0, 1.4, 0.6, 0.0, 1.03),
    "fearful": EmotionProfile(5.0, 0.7, 0.5, 1.35, 3.0, 2.6, 2.4, 0.9, 1.0),
    "boredom": EmotionProfile(-1.8, 0.4, -4.0, 0.85, -4.0, 1.0, 1.3, 0.0, 0.99),
}

SUPPORTED_EMOTIONS: tuple[str, ...] = tuple(EMOTION_PROFILES)
"""Emotion names the generator can voice (a run's ``data.emotions`` must be a subset)."""

# Formants (Hz) F1-F6 of an adult male reference tract; rows: /a/ /ɛ/ /i/ /ɔ/ /u/ /æ/ /ʌ/ (F1-F3 from Peterson &
# Barney 1952). F5 and F6 are fixed; like Klatt's higher-pole correction they keep energy above F4.
_VOWEL_FORMANTS = np.array(
    [
        [730, 1090, 2440, 3400, 4500, 5500],
        [530, 1840, 2480, 3500, 4500, 5500],
        [270, 2290, 3010, 3700, 4500, 5500],
        [570, 840, 2410, 3400, 4500, 5500],
        [300, 870, 2240, 3400, 4500, 5500],
        [660, 1720, 2410, 3400, 4500, 5500],
        [520, 1190, 2390, 3400, 4500, 5500],
    ],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0, 300.0, 500.0])
# Fricative noise bands (Hz) for a reference tract: /s/, /ʃ/, /f/, /h/.
_FRICATIVE_BANDS = ((3800.0, 7500.0), (2200.0, 5000.0), (1200.0, 7000.0), (500.0, 3500.0))


@dataclass(frozen=True)
class _Knobs:
    """What ``difficulty`` sets: effect strength, spread of randomness, SNR mean."""

    effect: float
    spread: float
    snr_mean_db: float


@dataclass(frozen=True)
class _Speaker:
    f0_hz: float
    tract: float
    rate: float  # syllables per second
    range_st: float
    breath: float
    close_q: float
    open_q: float
    hf_db: float
    jitter: float
    shimmer: float
    gain_db: float
    expressiveness: float


@dataclass(frozen=True)
class _Segment:
    kind: str  # "vowel", "fricative" or "burst"
    start: int
    end: int
    vowel: int = 0  # row of _VOWEL_FORMANTS, or of _FRICATIVE_BANDS for fricatives and bursts
    level: float = 1.0


def _knobs(cfg: EmbeddedCorpusConfig) -> _Knobs:
    d = cfg.difficulty
    return _Knobs(effect=1.5 - d, spread=0.5 + d, snr_mean_db=cfg.snr_db + 10.0 * (0.5 - d))


def _check_emotions(emotions: tuple[str, ...]) -> None:
    unknown = [e for e in emotions if e not in EMOTION_PROFILES]
    if unknown:
        raise DataError(
            f"embedded corpus: unsupported emotion(s) {', '.join(unknown)}; supported: {', '.join(SUPPORTED_EMOTIONS)}"
        )
    if not emotions:
        raise DataError("embedded corpus: no emotions requested")


def corpus_digest(cfg: EmbeddedCorpusConfig, *, emotions: tuple[str, ...], sample_rate: int, seed: int) -> str:
    """Hex BLAKE2b (32 bytes) of everything the generated audio is a pure function of (its content key)."""
    payload = {
        "generator": GENERATOR_VERSION,
        "config": cfg.model_dump(mode="json"),
        "emotions": list(emotions),
        "sample_rate": int(sample_rate),
        "seed": int(seed),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).hexdigest()


def _make_speaker(k: int, knobs: _Knobs, seed: int) -> _Speaker:
    """Speaker ``k``'s voice, from its own stream (independent of how many speakers there are)."""
    r = role_rng(seed, f"corpus/speaker/{k}")
    male = k % 2 == 0
    f0 = r.uniform(100.0, 130.0) if male else r.uniform(180.0, 230.0)
    tract = r.uniform(0.85, 1.0) if male else r.uniform(1.05, 1.2)
    s = knobs.spread
    return _Speaker(
        f0_hz=float(f0),
        tract=float(tract),
        rate=float(r.uniform(3.8, 5.2)),
        range_st=float(r.uniform(2.0, 4.0)),
        breath=float(r.uniform(0.03, 0.15) if male else r.uniform(0.06, 0.22)),
        close_q=float(r.uniform(0.12, 0.22)),
        open_q=float(r.uniform(0.35, 0.5)),
        hf_db=float(r.normal(0.0, 1.5)),
        jitter=float(r.uniform(0.003, 0.009)),
        shimmer=float(r.uniform(0.03, 0.08)),
        gain_db=float(r.normal(0.0, 1.0 * s)),
        expressiveness=float(np.exp(r.normal(0.0, 0.15 * s))),
    )


def _speaker_style(k: int, emotion: str, speaker: _Speaker, knobs: _Knobs, seed: int) -> EmotionProfile:
    """How speaker ``k`` acts ``emotion``: the nominal profile scaled by strength, with a personal deviation."""
    base = EMOTION_PROFILES[emotion]
    if emotion == "neutral":
        return base
    r = role_rng(seed, f"corpus/speaker/{k}/style/{emotion}")
    e = knobs.effect * speaker.expressiveness
    s = knobs.spread

    def mult(m: float, sd: float) -> float:
        return float(np.exp(np.log(m) * e + r.normal(0.0, sd * s)))

    return EmotionProfile(
        f0_st=base.f0_st * e + float(r.normal(0.0, 0.5 * s)),
        range_mult=mult(base.range_mult, 0.1),
        gain_db=base.gain_db * e + float(r.normal(0.0, 0.8 * s)),
        rate_mult=mult(base.rate_mult, 0.04),
        hf_db=base.hf_db * e + float(r.normal(0.0, 0.8 * s)),
        jitter_mult=mult(base.jitter_mult, 0.1),
        breath_mult=mult(base.breath_mult, 0.1),
        tremor_st=base.tremor_st * e,
        formant_mult=mult(base.formant_mult, 0.01),
    )


def _schedule(r: np.random.Generator, n: int, sr: int, rate: float) -> list[_Segment]:
    """Syllable plan: consonant onsets, vowels and pauses over ``n`` samples at ``rate`` syllables per second."""
    segs: list[_Segment] = []
    dur = n / sr
    t = min(r.uniform(0.05, 0.2), 0.15 * dur)  # leading and trailing silence leave >= 70% for speech
    end = dur - min(r.uniform(0.05, 0.2), 0.15 * dur)
    decrescendo_db = r.uniform(0.0, 4.0)
    while end - t > 0.08:
        syl = min(r.lognormal(0.0, 0.25) / rate, end - t)
        if end - t - syl < 0.08:  # final syllable absorbs the remainder (final lengthening)
            syl = end - t
        level = (1.0 if r.random() < 0.45 else r.uniform(0.5, 0.8)) * 10 ** (-decrescendo_db * t / end / 20)
        onset = r.random()
        cons = 0.0
        if onset < 0.35 and syl > 0.14:  # fricative onset
            cons = syl * r.uniform(0.25, 0.4)
            segs.append(_Segment("fricative", _i(t, sr), _i(t + cons, sr), int(r.integers(4)), r.uniform(0.1, 0.3)))
        elif onset < 0.65 and syl > 0.14:  # plosive: closure, then a burst
            closure, burst = r.uniform(0.025, 0.05), r.uniform(0.01, 0.02)
            cons = closure + burst
            segs.append(
                _Segment("burst", _i(t + closure, sr), _i(t + cons, sr), int(r.integers(3)), r.uniform(0.3, 0.6))
            )
        segs.append(_Segment("vowel", _i(t + cons, sr), _i(t + syl, sr), int(r.integers(len(_VOWEL_FORMANTS))), level))
        t += syl
        if r.random() < 0.12 and end - t > 0.4:
            t += r.uniform(0.08, 0.25) * 4.5 / rate
    return [s for s in segs if s.end - s.start >= 8]


def _i(t: float, sr: int) -> int:
    return round(t * sr)


def _f0_contour(
    r: np.random.Generator,
    segs: list[_Segment],
    n: int,
    sr: int,
    f0_hz: float,
    range_st: float,
    tremor_st: float,
    spread: float,
) -> np.ndarray:
    """Per-sample F0 (Hz): declination + per-vowel accents + slow drift + tremor, around ``f0_hz``."""
    dur = n / sr
    tc = np.arange(0.0, dur + 2.0 / _CONTROL_RATE, 1.0 / _CONTROL_RATE)
    vowels = [s for s in segs if s.kind == "vowel"]
    t0 = vowels[0].start / sr if vowels else 0.0
    t1 = vowels[-1].end / sr if vowels else dur
    decl = range_st * r.uniform(0.4, 0.8)
    st = decl * (0.5 - np.clip((tc - t0) / max(t1 - t0, 1e-3), 0.0, 1.0))
    for v in vowels:
        a, b = v.start / sr - 0.08, v.end / sr + 0.02  # the accent spans the syllable, onset included
        peak = r.uniform(0.3, 0.7)
        amp = range_st * v.level * r.uniform(0.3, 1.0)
        lo, hi = np.searchsorted(tc, [a, b])
        x = (tc[lo:hi] - a) / max(b - a, 1e-3)
        bump = np.where(x < peak, np.sin(0.5 * np.pi * x / peak), np.cos(0.5 * np.pi * (x - peak) / (1 - peak)))
        st[lo:hi] += amp * bump**2
    win = np.hanning(15)  # ~70 ms smoothing: F0 cannot jump (and stays trackable by pitch trackers)
    st = np.convolve(np.pad(st, 7, mode="edge"), win / win.sum(), mode="valid")
    st -= range_st * 0.25  # accents lift the mean: centre the contour on the target level
    knots = np.arange(0.0, dur + 0.6, 0.3)
    st += np.interp(tc, knots, r.normal(0.0, 0.3 * spread, knots.size))
    if tremor_st > 0:
        st += tremor_st * np.sin(2 * np.pi * r.uniform(5.0, 8.0) * tc + r.uniform(0, 2 * np.pi))
    f0 = np.clip(f0_hz * 2.0 ** (st / 12.0), 50.0, min(600.0, sr / 8))
    return np.interp(np.arange(n) / sr, tc, f0)


def _glottal_pulse_table(open_q: float, close_q: float, size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """One period of glottal flow over the phase fraction [0, 1]: raised-cosine opening and closing, then closed.

    Unlike Rosenberg's quarter-cosine closing, the closing here has no corner at closure, so the flow derivative is
    continuous and its spectrum falls at 12 dB/octave: little aliasing, which would make the voice aperiodic.
    """
    x = np.linspace(0.0, 1.0, size)
    rise = 0.5 * (1.0 - np.cos(np.pi * np.minimum(x / open_q, 1.0)))
    fall = 0.5 * (1.0 + np.cos(np.pi * np.clip((x - open_q) / close_q, 0.0, 1.0)))
    return x, np.where(x < open_q, rise, fall)


def _glottal_source(
    r: np.random.Generator,
    f0: np.ndarray,
    sr: int,
    *,
    jitter: float,
    shimmer: float,
    open_q: float,
    close_q: float,
    breath: float,
) -> np.ndarray:
    """Glottal-flow derivative with per-cycle jitter and shimmer, plus flow-modulated aspiration noise."""
    phase0 = np.cumsum(f0 / sr)
    n_cyc = int(phase0[-1] * 1.5) + 4
    jit = np.clip(1.0 + jitter * r.standard_normal(n_cyc), 0.7, 1.3)
    shim = np.clip(1.0 + shimmer * r.standard_normal(n_cyc), 0.3, 1.7)
    phase = np.cumsum(f0 * jit[phase0.astype(np.int64)] / sr)
    cyc = np.minimum(phase.astype(np.int64), n_cyc - 1)
    flow = np.interp(phase - cyc, *_glottal_pulse_table(open_q, close_q)) * shim[cyc]
    dflow = np.diff(flow, prepend=0.0)
    noise = np.diff(r.standard_normal(f0.size + 1)) * (0.25 + flow)
    scale = np.sqrt(np.mean(dflow**2) / max(np.mean(noise**2), 1e-20))
    return dflow + breath * scale * noise


def _high_shelf(x: np.ndarray, gain_db: float, fc: float, sr: int) -> np.ndarray:
    """First-order high shelf: unity at DC, ``gain_db`` above ``fc`` (bilinear transform)."""
    k = np.tan(np.pi * min(fc, 0.25 * sr) / sr)
    v = 10.0 ** (gain_db / 20.0)
    b = np.array([v + k, k - v]) / (1.0 + k)
    a = np.array([1.0, (k - 1.0) / (1.0 + k)])
    return signal.lfilter(b, a, x)


def _formant_sos(formants: np.ndarray, bandwidths: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators, one per formant below 0.45 * sr."""
    keep = formants < 0.45 * sr
    f, bw = formants[keep], bandwidths[keep]
    rad = np.exp(-np.pi * bw / sr)
    c = 2.0 * rad * np.cos(2.0 * np.pi * f / sr)
    sos = np.zeros((f.size, 6))
    sos[:, 0] = 1.0 - c + rad**2
    sos[:, 3] = 1.0
    sos[:, 4] = -c
    sos[:, 5] = rad**2
    return sos


@functools.lru_cache(maxsize=4096)
def _band_sos(lo: int, hi: int, sr: int) -> np.ndarray:
    return np.asarray(signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos"))


def _noise_band(kind: int, tract: float, sr: int) -> np.ndarray:
    lo, hi = _FRICATIVE_BANDS[kind]
    hi_c = min(hi * tract, 0.45 * sr)
    lo_c = min(lo * tract, 0.6 * hi_c)
    return _band_sos(int(round(lo_c, -1)), int(round(hi_c, -1)), sr)


def _envelope(m: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release over ``m`` samples."""
    env = np.ones(m)
    a, b = min(attack, m // 2), min(release, m // 2)
    if a > 0:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    if b > 0:
        env[m - b :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, b + 1) / b)
    return env


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def _soft_limit(x: np.ndarray) -> np.ndarray:
    """Identity below ``_SOFT_LIMIT``, a tanh knee above it, never reaching +-1."""
    t = _SOFT_LIMIT
    mag = np.abs(x)
    over = mag > t
    if not over.any():
        return x
    out = x.copy()
    out[over] = np.sign(x[over]) * (t + (1.0 - t) * np.tanh((mag[over] - t) / (1.0 - t)))
    return out


def _synthesise(
    r: np.random.Generator, speaker: _Speaker, style: EmotionProfile, knobs: _Knobs, n: int, sr: int
) -> np.ndarray:
    """One utterance of ``n`` samples: the speaker acting ``style``, with per-utterance randomness everywhere."""
    s = knobs.spread
    f0_hz = speaker.f0_hz * 2.0 ** ((style.f0_st + r.normal(0.0, 0.6 * s)) / 12.0)
    range_st = speaker.range_st * style.range_mult * r.lognormal(0.0, 0.2 * s)
    rate = speaker.rate * style.rate_mult * r.lognormal(0.0, 0.07 * s)
    gain_db = speaker.gain_db + style.gain_db + r.normal(0.0, 1.5 * s)
    hf_db = speaker.hf_db + style.hf_db + r.normal(0.0, 1.5 * s)
    jitter = speaker.jitter * style.jitter_mult * r.lognormal(0.0, 0.25 * s)
    shimmer = speaker.shimmer * np.sqrt(style.jitter_mult) * r.lognormal(0.0, 0.25 * s)
    breath = min(speaker.breath * style.breath_mult * r.lognormal(0.0, 0.3 * s), 0.9)
    close_q = float(np.clip(speaker.close_q * np.exp(-0.06 * (hf_db - speaker.hf_db)), 0.04, 0.4))
    tremor = style.tremor_st * r.uniform(0.5, 1.5)
    formant_scale = speaker.tract * style.formant_mult * r.lognormal(0.0, 0.015 * s)
    snr_db = r.normal(knobs.snr_mean_db, 3.0 * s)

    segs = _schedule(r, n, sr, rate)
    f0 = _f0_contour(r, segs, n, sr, f0_hz, range_st, tremor, s)
    source = _glottal_source(
        r, f0, sr, jitter=jitter, shimmer=shimmer, open_q=speaker.open_q, close_q=close_q, breath=breath
    )
    source = _high_shelf(source, hf_db, 1000.0, sr)

    speech = np.zeros(n)
    voiced = np.zeros(n, dtype=bool)
    ms = sr // 1000
    for seg in segs:
        m = seg.end - seg.start
        if seg.kind == "vowel":
            formants = _VOWEL_FORMANTS[seg.vowel] * formant_scale * r.lognormal(0.0, 0.03, _VOWEL_FORMANTS.shape[1])
            bws = _FORMANT_BANDWIDTHS * r.uniform(0.8, 1.25) * (1.0 + breath)
            x = source[seg.start : seg.end] * _envelope(m, 20 * ms, 30 * ms)
            y = signal.sosfilt(_formant_sos(formants, bws, sr), x)
            voiced[seg.start : seg.end] = True
        else:
            x = r.standard_normal(m)
            if seg.kind == "burst":
                x *= np.exp(-np.arange(m) / (6.0 * ms))
                env = _envelope(m, ms, 2 * ms)
            else:
                env = _envelope(m, 10 * ms, 15 * ms)
            y = signal.sosfilt(_noise_band(seg.vowel, speaker.tract, sr), x) * env
        rms = _rms(y)
        if rms > 0:
            speech[seg.start : seg.end] += y * (seg.level * 10 ** (hf_db / 20.0 if seg.kind != "vowel" else 0.0) / rms)
    ref = _rms(speech[voiced]) or 1.0
    speech *= REFERENCE_RMS * 10 ** (gain_db / 20.0) / ref

    noise = r.standard_normal(n)
    brown = signal.lfilter([1.0], [1.0, -0.97], r.standard_normal(n))
    mix = r.uniform(0.0, 1.0)
    noise = (1 - mix) * noise / (_rms(noise) or 1.0) + mix * brown / (_rms(brown) or 1.0)
    level = _rms(speech[voiced]) / 10 ** (snr_db / 20.0)
    out = speech + noise * (level / (_rms(noise) or 1.0))
    return _soft_limit(out).astype(np.float32)


def speaker_ids(n_speakers: int) -> list[str]:
    """``spk00``, ``spk01``, ... (zero-based; width grows past 100 speakers)."""
    width = max(2, len(str(n_speakers - 1)))
    return [f"spk{k:0{width}d}" for k in range(n_speakers)]


def generate_embedded_corpus(
    cfg: EmbeddedCorpusConfig, *, emotions: tuple[str, ...], sample_rate: int, seed: int
) -> AudioCorpus:
    """Generate the embedded emotional-speech corpus.

    Clips are ordered speaker, then emotion (in the order of ``emotions``), then utterance. Each utterance has its
    own random stream (role ``corpus/utterance/{k}/{emotion}/{j}``), so a clip does not depend on generation order,
    on how many speakers or utterances there are, or on which other emotions are requested.

    Args:
        cfg: generator settings (speakers, utterances per emotion, duration range, difficulty, SNR).
        emotions: emotion names to voice; their order is the label index. Each must be in ``SUPPORTED_EMOTIONS``.
        sample_rate: output rate in Hz.
        seed: the run seed.

    Returns:
        An ``AudioCorpus`` of float32 mono clips in [-1, 1]; ``speaker`` ids ``spk00``..., utterance ids like
        ``spk03_angry_007``; ``digest`` from ``corpus_digest`` (the audio is a pure function of its inputs).

    Raises:
        DataError: an emotion is not supported.
    """
    _check_emotions(emotions)
    knobs = _knobs(cfg)
    lo, hi = cfg.duration_s
    audio: list[np.ndarray] = []
    labels: list[int] = []
    speakers: list[str] = []
    utt_ids: list[str] = []
    for k, spk_id in enumerate(speaker_ids(cfg.n_speakers)):
        speaker = _make_speaker(k, knobs, seed)
        for label, emotion in enumerate(emotions):
            style = _speaker_style(k, emotion, speaker, knobs, seed)
            for j in range(cfg.utterances_per_emotion):
                r = role_rng(seed, f"corpus/utterance/{k}/{emotion}/{j}")
                n = max(_i(r.uniform(lo, hi), sample_rate), 1)
                audio.append(_synthesise(r, speaker, style, knobs, n, sample_rate))
                labels.append(label)
                speakers.append(spk_id)
                utt_ids.append(f"{spk_id}_{emotion}_{j:03d}")
    return AudioCorpus(
        audio=audio,
        sample_rate=int(sample_rate),
        labels=np.asarray(labels, dtype=np.int64),
        emotions=tuple(emotions),
        speaker=np.asarray(speakers),
        utterance_id=np.asarray(utt_ids),
        digest=corpus_digest(cfg, emotions=emotions, sample_rate=sample_rate, seed=seed),
    )
