"""Benchmark: librosa's per-clip log-Mel loop against the batched torch path, on the same clips in the same run.

Run from the repository root::

    .venv/bin/python benchmarks/features.py [--clips 256] [--repeats 5] [--duration 2 3]

Builds seeded speech-like clips of 2-3 s at 16 kHz (a gliding harmonic voice under a syllable envelope, plus
noise), extracts features with the default ``FeaturesConfig`` both ways (a warm-up first, then the best of a few
alternating repeats, default thread settings: the fast path uses ``torch.get_num_threads()`` worker threads),
checks that the outputs agree within 1e-4 dB and prints the clips per second of each, their ratio and the largest
absolute difference.

Each timed run starts after a short pause: numpy's OpenBLAS threads (used by librosa's filterbank product) keep
spinning for a moment after each call and would otherwise slow down whatever runs next. Other processes on the
machine skew both timings (librosa's more, through the same BLAS threads); the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedsered.config import FeaturesConfig
from fedsered.data.features import logmel_fast, logmel_librosa

TOLERANCE_DB = 1e-4


def speech_like_clips(
    n: int, *, sample_rate: int = 16000, seed: int = 0, duration: tuple[float, float] = (2.0, 3.0)
) -> list[np.ndarray]:
    """Seeded speech-like float32 clips.

    Args:
        n: number of clips.
        sample_rate: samples per second.
        seed: numpy seed.
        duration: shortest and longest clip in seconds (uniform).

    Returns:
        ``n`` 1-D float32 arrays with peaks around 0.3-0.9.
    """
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        length = int(rng.integers(round(duration[0] * sample_rate), round(duration[1] * sample_rate) + 1))
        t = np.arange(length) / sample_rate
        f0 = rng.uniform(90.0, 260.0) * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(1.0, 5.0) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        n_harm = int(rng.integers(8, 25))
        tilt = rng.uniform(0.6, 1.4)
        voice = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**tilt for k in range(1, n_harm + 1))
        syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * t + rng.uniform(0, np.pi)), 0.0, None) ** 2
        noise = rng.standard_normal(length) * 10 ** (-rng.uniform(1.0, 3.0))
        x = voice * syllables + noise
        clips.append((rng.uniform(0.3, 0.9) * x / np.max(np.abs(x))).astype(np.float32))
    return clips


def timed(fn: Callable[[], np.ndarray], timings: list[float], *, pause_s: float = 0.3) -> np.ndarray:
    """After ``pause_s`` of idling, run ``fn`` once, append its wall time to ``timings`` and return its output."""
    time.sleep(pause_s)
    start = time.perf_counter()
    out = fn()
    timings.append(time.perf_counter() - start)
    return out


def run(n_clips: int, repeats: int, duration: tuple[float, float] = (2.0, 3.0)) -> dict[str, float]:
    """Time both backends on ``n_clips`` clips.

    Args:
        n_clips: clips per timed pass.
        repeats: timed passes per backend (alternating; the best counts).
        duration: clip lengths in seconds (shortest, longest).

    Returns:
        ``librosa_cps``, ``fast_cps``, ``ratio`` and ``max_abs_diff_db``.
    """
    cfg = FeaturesConfig()
    clips: Sequence[np.ndarray] = speech_like_clips(n_clips, sample_rate=cfg.sample_rate, duration=duration)
    logmel_librosa(clips[:8], cfg)  # warm-up: imports, filterbank, FFT plans
    logmel_fast(clips[:8], cfg)
    t_lib: list[float] = []
    t_fast: list[float] = []
    ref = out = np.empty(0, dtype=np.float32)
    for _ in range(repeats):
        ref = timed(lambda: logmel_librosa(clips, cfg), t_lib)
        out = timed(lambda: logmel_fast(clips, cfg), t_fast)
    lib_cps, fast_cps = n_clips / min(t_lib), n_clips / min(t_fast)
    return {
        "librosa_cps": lib_cps,
        "fast_cps": fast_cps,
        "ratio": fast_cps / lib_cps,
        "max_abs_diff_db": float(np.max(np.abs(out - ref))),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 when the outputs differ by more than 1e-4 dB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clips", type=int, default=256, help="clips per timed pass (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per backend; the best counts")
    parser.add_argument(
        "--duration", type=float, nargs=2, default=(2.0, 3.0), metavar=("MIN_S", "MAX_S"), help="clip lengths"
    )
    args = parser.parse_args(argv)
    cfg = FeaturesConfig()
    lo, hi = args.duration
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} CPUs (load average {load}), torch {torch.__version__}: "
        f"{torch.get_num_threads()} threads = fast-path workers\n"
        f"config: {cfg.sample_rate} Hz, n_fft {cfg.n_fft}, hop {cfg.hop_length}, {cfg.n_mels} mels, "
        f"{cfg.segment_s:g} s segments; {args.clips} clips of {lo:g}-{hi:g} s, best of {args.repeats}"
    )
    res = run(args.clips, args.repeats, (lo, hi))
    print(f"librosa per-clip loop: {res['librosa_cps']:8.0f} clips/s")
    print(f"fast (batched):        {res['fast_cps']:8.0f} clips/s")
    print(f"speed-up:              {res['ratio']:8.1f}x")
    ok = res["max_abs_diff_db"] <= TOLERANCE_DB
    verdict = "OK" if ok else "FAIL"
    print(f"max |fast - librosa|:  {res['max_abs_diff_db']:.2e} dB ({verdict}: tolerance {TOLERANCE_DB:g} dB)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
