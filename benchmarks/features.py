"""Benchmark: librosa's per-clip log-Mel loop against the batched torch path, on the same clips in the same run.

Run from the repository root::

    .venv/bin/python benchmarks/features.py [--clips 256] [--repeats 5]

Builds seeded speech-like clips of 2-3 s at 16 kHz (a gliding harmonic voice under a syllable envelope, plus
noise), extracts features with the default ``FeaturesConfig`` both ways (a warm-up first, then the best of a few
alternating repeats, torch's default thread count), checks that the outputs agree within 1e-4 dB and prints the
clips per second of each, their ratio and the largest absolute difference.
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


def speech_like_clips(n: int, *, sample_rate: int = 16000, seed: int = 0) -> list[np.ndarray]:
    """Seeded speech-like float32 clips of 2-3 s.

    Args:
        n: number of clips.
        sample_rate: samples per second.
        seed: numpy seed.

    Returns:
        ``n`` 1-D float32 arrays with peaks around 0.3-0.9.
    """
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        length = int(rng.integers(2 * sample_rate, 3 * sample_rate + 1))
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


def timed(fn: Callable[[], np.ndarray], timings: list[float]) -> np.ndarray:
    """Run ``fn`` once, append its wall time to ``timings`` and return its output."""
    start = time.perf_counter()
    out = fn()
    timings.append(time.perf_counter() - start)
    return out


def run(n_clips: int, repeats: int) -> dict[str, float]:
    """Time both backends on ``n_clips`` clips.

    Args:
        n_clips: clips per timed pass.
        repeats: timed passes per backend (alternating; the best counts).

    Returns:
        ``librosa_cps``, ``fast_cps``, ``ratio`` and ``max_abs_diff_db``.
    """
    cfg = FeaturesConfig()
    clips: Sequence[np.ndarray] = speech_like_clips(n_clips, sample_rate=cfg.sample_rate)
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
    args = parser.parse_args(argv)
    cfg = FeaturesConfig()
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"config: {cfg.sample_rate} Hz, n_fft {cfg.n_fft}, hop {cfg.hop_length}, {cfg.n_mels} mels, "
        f"{cfg.segment_s:g} s segments; {args.clips} clips, best of {args.repeats}"
    )
    res = run(args.clips, args.repeats)
    print(f"librosa per-clip loop: {res['librosa_cps']:8.0f} clips/s")
    print(f"fast (torch, batched): {res['fast_cps']:8.0f} clips/s")
    print(f"speed-up:              {res['ratio']:8.1f}x")
    ok = res["max_abs_diff_db"] <= TOLERANCE_DB
    verdict = "OK" if ok else "FAIL"
    print(f"max |fast - librosa|:  {res['max_abs_diff_db']:.2e} dB ({verdict}: tolerance {TOLERANCE_DB:g} dB)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
