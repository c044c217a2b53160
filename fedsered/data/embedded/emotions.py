"""Emotion effects: the nominal acoustic shifts of each emotion relative to neutral (``EMOTION_PROFILES``), and the
``difficulty`` knobs that scale those effects, every random spread and the SNR."""

from __future__ import annotations

from dataclasses import dataclass

from fedsered.config import EmbeddedCorpusConfig
from fedsered.errors import DataError


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


@dataclass(frozen=True)
class Knobs:
    """What ``difficulty`` sets: effect strength, spread of randomness, SNR mean."""

    effect: float
    spread: float
    snr_mean_db: float


def difficulty_knobs(cfg: EmbeddedCorpusConfig) -> Knobs:
    d = cfg.difficulty
    return Knobs(effect=1.5 - d, spread=0.5 + d, snr_mean_db=cfg.snr_db + 10.0 * (0.5 - d))


def check_emotions(emotions: tuple[str, ...]) -> None:
    unknown = [e for e in emotions if e not in EMOTION_PROFILES]
    if unknown:
        raise DataError(
            f"embedded corpus: unsupported emotion(s) {', '.join(unknown)}; supported: {', '.join(SUPPORTED_EMOTIONS)}"
        )
    if not emotions:
        raise DataError("embedded corpus: no emotions requested")
