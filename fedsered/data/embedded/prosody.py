"""Utterance timing and melody: the syllable plan (consonant onsets, vowels, pauses) and the F0 contour over it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsered.data.embedded.source_filter import VOWEL_FORMANTS

_CONTROL_RATE = 200.0  # Hz of the F0 control grid, interpolated to the sample rate


@dataclass(frozen=True)
class Segment:
    kind: str  # "vowel", "fricative" or "burst"
    start: int
    end: int
    vowel: int = 0  # row of VOWEL_FORMANTS, or of FRICATIVE_BANDS for fricatives and bursts
    level: float = 1.0


def schedule(r: np.random.Generator, n: int, sr: int, rate: float) -> list[Segment]:
    """Syllable plan: consonant onsets, vowels and pauses over ``n`` samples at ``rate`` syllables per second."""
    segs: list[Segment] = []
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
            segs.append(
                Segment(
                    "fricative", to_samples(t, sr), to_samples(t + cons, sr), int(r.integers(4)), r.uniform(0.1, 0.3)
                )
            )
        elif onset < 0.65 and syl > 0.14:  # plosive: closure, then a burst
            closure, burst = r.uniform(0.025, 0.05), r.uniform(0.01, 0.02)
            cons = closure + burst
            segs.append(
                Segment(
                    "burst",
                    to_samples(t + closure, sr),
                    to_samples(t + cons, sr),
                    int(r.integers(3)),
                    r.uniform(0.3, 0.6),
                )
            )
        segs.append(
            Segment(
                "vowel", to_samples(t + cons, sr), to_samples(t + syl, sr), int(r.integers(len(VOWEL_FORMANTS))), level
            )
        )
        t += syl
        if r.random() < 0.12 and end - t > 0.4:
            t += r.uniform(0.08, 0.25) * 4.5 / rate
    return [s for s in segs if s.end - s.start >= 8]


def to_samples(t: float, sr: int) -> int:
    """``t`` seconds as a whole number of samples at rate ``sr`` (rounded)."""
    return round(t * sr)


def f0_contour(
    r: np.random.Generator,
    segs: list[Segment],
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
