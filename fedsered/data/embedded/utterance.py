"""One utterance end to end: per-utterance variation of the speaker's acted style, the syllables rendered through the
source-filter path, level normalisation, background noise and soft limiting."""

from __future__ import annotations

import numpy as np

from fedsered.data.embedded.emotions import EmotionProfile, Knobs
from fedsered.data.embedded.prosody import f0_contour, schedule
from fedsered.data.embedded.source_filter import (
    FORMANT_BANDWIDTHS,
    VOWEL_FORMANTS,
    envelope,
    formant_sos,
    glottal_source,
    high_shelf,
    noise_band,
)
from fedsered.data.embedded.speakers import Speaker

REFERENCE_RMS = 0.04
"""Vowel RMS (about -28 dBFS) of a clip at 0 dB total gain; emotion gains are relative to it."""

_SOFT_LIMIT = 0.8  # peaks above this are compressed smoothly into (-1, 1)


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


def synthesise(
    r: np.random.Generator, speaker: Speaker, style: EmotionProfile, knobs: Knobs, n: int, sr: int
) -> np.ndarray:
    """One utterance of ``n`` samples: the speaker acting ``style``, with per-utterance randomness everywhere."""
    from scipy import signal  # lazy: it loads scipy.stats, ~1 s of a process start that reads cached features

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

    segs = schedule(r, n, sr, rate)
    f0 = f0_contour(r, segs, n, sr, f0_hz, range_st, tremor, s)
    source = glottal_source(
        r, f0, sr, jitter=jitter, shimmer=shimmer, open_q=speaker.open_q, close_q=close_q, breath=breath
    )
    source = high_shelf(source, hf_db, 1000.0, sr)

    speech = np.zeros(n)
    voiced = np.zeros(n, dtype=bool)
    ms = sr // 1000
    for seg in segs:
        m = seg.end - seg.start
        if seg.kind == "vowel":
            formants = VOWEL_FORMANTS[seg.vowel] * formant_scale * r.lognormal(0.0, 0.03, VOWEL_FORMANTS.shape[1])
            bws = FORMANT_BANDWIDTHS * r.uniform(0.8, 1.25) * (1.0 + breath)
            x = source[seg.start : seg.end] * envelope(m, 20 * ms, 30 * ms)
            y = signal.sosfilt(formant_sos(formants, bws, sr), x)
            voiced[seg.start : seg.end] = True
        else:
            x = r.standard_normal(m)
            if seg.kind == "burst":
                x *= np.exp(-np.arange(m) / (6.0 * ms))
                env = envelope(m, ms, 2 * ms)
            else:
                env = envelope(m, 10 * ms, 15 * ms)
            y = signal.sosfilt(noise_band(seg.vowel, speaker.tract, sr), x) * env
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
