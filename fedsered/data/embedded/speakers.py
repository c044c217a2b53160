"""Speaker profiles: each speaker's voice (F0, tract length, rate, voice quality, loudness) and how that speaker
acts each emotion; the speaker ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsered.data.embedded.emotions import EMOTION_PROFILES, EmotionProfile, Knobs
from fedsered.seeding import rng as role_rng


@dataclass(frozen=True)
class Speaker:
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


def make_speaker(k: int, knobs: Knobs, seed: int) -> Speaker:
    """Speaker ``k``'s voice, from its own stream (independent of how many speakers there are)."""
    r = role_rng(seed, f"corpus/speaker/{k}")
    male = k % 2 == 0
    f0 = r.uniform(100.0, 130.0) if male else r.uniform(180.0, 230.0)
    tract = r.uniform(0.85, 1.0) if male else r.uniform(1.05, 1.2)
    s = knobs.spread
    return Speaker(
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


def speaker_style(k: int, emotion: str, speaker: Speaker, knobs: Knobs, seed: int) -> EmotionProfile:
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


def speaker_ids(n_speakers: int) -> list[str]:
    """``spk00``, ``spk01``, ... (zero-based; width grows past 100 speakers)."""
    width = max(2, len(str(n_speakers - 1)))
    return [f"spk{k:0{width}d}" for k in range(n_speakers)]
