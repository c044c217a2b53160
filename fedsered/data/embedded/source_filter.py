"""The source-filter signal path: glottal source, spectral tilt, vowel formant resonators, and the noise bands and
envelopes of consonants."""

from __future__ import annotations

import functools

import numpy as np

# Formants (Hz) F1-F6 of an adult male reference tract; rows: /a/ /ɛ/ /i/ /ɔ/ /u/ /æ/ /ʌ/ (F1-F3 from Peterson &
# Barney 1952). F5 and F6 are fixed; like Klatt's higher-pole correction they keep energy above F4.
VOWEL_FORMANTS = np.array(
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
FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0, 300.0, 500.0])
# Fricative noise bands (Hz) for a reference tract: /s/, /ʃ/, /f/, /h/.
FRICATIVE_BANDS = ((3800.0, 7500.0), (2200.0, 5000.0), (1200.0, 7000.0), (500.0, 3500.0))


def _glottal_pulse_table(open_q: float, close_q: float, size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """One period of glottal flow over the phase fraction [0, 1]: raised-cosine opening and closing, then closed.

    Unlike Rosenberg's quarter-cosine closing, the closing here has no corner at closure, so the flow derivative is
    continuous and its spectrum falls at 12 dB/octave: little aliasing, which would make the voice aperiodic.
    """
    x = np.linspace(0.0, 1.0, size)
    rise = 0.5 * (1.0 - np.cos(np.pi * np.minimum(x / open_q, 1.0)))
    fall = 0.5 * (1.0 + np.cos(np.pi * np.clip((x - open_q) / close_q, 0.0, 1.0)))
    return x, np.where(x < open_q, rise, fall)


def glottal_source(
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


def high_shelf(x: np.ndarray, gain_db: float, fc: float, sr: int) -> np.ndarray:
    """First-order high shelf: unity at DC, ``gain_db`` above ``fc`` (bilinear transform)."""
    k = np.tan(np.pi * min(fc, 0.25 * sr) / sr)
    v = 10.0 ** (gain_db / 20.0)
    b = np.array([v + k, k - v]) / (1.0 + k)
    a = np.array([1.0, (k - 1.0) / (1.0 + k)])
    from scipy import signal  # lazy: it loads scipy.stats, ~1 s of a process start that reads cached features

    return signal.lfilter(b, a, x)


def formant_sos(formants: np.ndarray, bandwidths: np.ndarray, sr: int) -> np.ndarray:
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
    from scipy import signal  # lazy: it loads scipy.stats, ~1 s of a process start that reads cached features

    return np.asarray(signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos"))


def noise_band(kind: int, tract: float, sr: int) -> np.ndarray:
    lo, hi = FRICATIVE_BANDS[kind]
    hi_c = min(hi * tract, 0.45 * sr)
    lo_c = min(lo * tract, 0.6 * hi_c)
    return _band_sos(int(round(lo_c, -1)), int(round(hi_c, -1)), sr)


def envelope(m: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release over ``m`` samples."""
    env = np.ones(m)
    a, b = min(attack, m // 2), min(release, m // 2)
    if a > 0:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    if b > 0:
        env[m - b :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, b + 1) / b)
    return env
