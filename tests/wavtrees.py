"""Small WAV trees laid out like the real corpora, for tests (synthetic voiced tones and noise, no real speech).

Each emotion gets its own "voice" (pitch, pitch contour, loudness, tremolo, breathiness: roughly the directions of
Banse & Scherer), each speaker a pitch offset, each clip a little random jitter, so a classifier on log-Mel
features can learn something from a tree while no two clips are identical.

Writers return the paths they wrote, sorted. Import as ``from wavtrees import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf


class Voice:
    """Synthesis parameters of one emotion."""

    def __init__(
        self, f0: float, *, glide: float = 0.0, level: float = 0.3, tremolo_hz: float = 0.0, noise: float = 0.02,
        tilt: float = 1.0,
    ) -> None:  # fmt: skip
        self.f0 = f0  # Hz
        self.glide = glide  # f0 change over the clip, as a fraction of f0 (+ rising, - falling)
        self.level = level  # peak-ish amplitude
        self.tremolo_hz = tremolo_hz  # amplitude modulation rate (0 = none)
        self.noise = noise  # breathiness / harshness, relative to level
        self.tilt = tilt  # harmonic k has weight 1 / k**tilt (small tilt = bright, tense voice)


VOICES: dict[str, Voice] = {
    "neutral": Voice(140.0),
    "calm": Voice(125.0, level=0.2, noise=0.01, tilt=1.6),
    "happy": Voice(250.0, glide=0.25, level=0.4, tremolo_hz=5.0, tilt=0.9),
    "sad": Voice(110.0, glide=-0.2, level=0.15, noise=0.01, tilt=2.0),
    "angry": Voice(210.0, level=0.6, noise=0.15, tilt=0.5),
    "fearful": Voice(320.0, level=0.3, tremolo_hz=9.0, noise=0.06),
    "disgust": Voice(160.0, glide=-0.1, level=0.35, noise=0.10, tilt=1.2),
    "surprised": Voice(220.0, glide=0.8, level=0.45, tilt=0.8),
    "boredom": Voice(100.0, level=0.15, noise=0.02, tilt=1.8),
    "excited": Voice(270.0, glide=0.3, level=0.5, tremolo_hz=6.0, tilt=0.7),
    "frustrated": Voice(180.0, level=0.45, noise=0.12, tilt=0.8),
}

RAVDESS_CODES = {
    "neutral": 1, "calm": 2, "happy": 3, "sad": 4, "angry": 5, "fearful": 6, "disgust": 7, "surprised": 8,
}  # fmt: skip
CREMA_D_CODES = {"angry": "ANG", "disgust": "DIS", "fearful": "FEA", "happy": "HAP", "neutral": "NEU", "sad": "SAD"}
EMODB_CODES = {
    "angry": "W", "boredom": "L", "disgust": "E", "fearful": "A", "happy": "F", "sad": "T", "neutral": "N",
}  # fmt: skip
IEMOCAP_CODES = {
    "neutral": "neu", "happy": "hap", "excited": "exc", "angry": "ang", "sad": "sad", "frustrated": "fru",
    "surprised": "sur", "fearful": "fea", "disgust": "dis", "other": "oth", "unlabelled": "xxx",
}  # fmt: skip

FIVE = ("neutral", "happy", "sad", "angry", "fearful")


def _voice(emotion: str) -> Voice:
    if emotion in VOICES:
        return VOICES[emotion]
    h = zlib.crc32(emotion.encode())
    return Voice(100.0 + h % 250, level=0.2 + (h >> 8) % 30 / 100, noise=(h >> 16) % 10 / 100)


def tone(freq: float, *, seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A pure sine, float32."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def synth_clip(emotion: str, *, speaker: int, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced, emotion-coloured clip: harmonics of a gliding f0, tremolo, noise, 10 ms fades; float32 mono.

    Args:
        emotion: canonical emotion name (``VOICES``; unknown names get a hashed voice).
        speaker: speaker index (shifts the pitch by up to about +-15%).
        seconds: clip length.
        sample_rate: rate in Hz.
        rng: jitter of pitch, level and noise.

    Returns:
        1-D float32 array with peak below 1.
    """
    v = _voice(emotion)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = v.f0 * (1.0 + 0.075 * ((speaker % 5) - 2)) * rng.uniform(0.95, 1.05)
    contour = f0 * (1.0 + v.glide * t / max(seconds, 1e-9))
    phase = 2 * np.pi * np.cumsum(contour) / sample_rate
    nyquist = sample_rate / 2
    voiced = sum(np.sin(k * phase) / k**v.tilt for k in range(1, 9) if k * contour.max() < nyquist)
    voiced = voiced / np.max(np.abs(voiced))
    envelope = 1.0 + 0.5 * np.sin(2 * np.pi * v.tremolo_hz * t) if v.tremolo_hz else np.ones(n)
    level = v.level * rng.uniform(0.8, 1.2)
    clip = level * (voiced * envelope / 1.5 + v.noise * rng.standard_normal(n))
    fade = min(n // 2, round(0.01 * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        clip[:fade] *= ramp
        clip[n - fade :] *= ramp[::-1]
    return np.clip(clip, -0.99, 0.99).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, *, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``audio`` (``[n]`` or ``[n, channels]``) as a WAV, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sample_rate, subtype=subtype, format="WAV")
    return path


def ravdess_name(
    *, emotion: int, actor: int, modality: int = 3, channel: int = 1, intensity: int = 1, statement: int = 1,
    repetition: int = 1, suffix: str = ".wav",
) -> str:  # fmt: skip
    """A RAVDESS file name ``MM-VV-EE-II-SS-RR-AA.wav`` from numeric codes."""
    codes = (modality, channel, emotion, intensity, statement, repetition, actor)
    return "-".join(f"{c:02d}" for c in codes) + suffix


def _combos(n_per: int, limit: int) -> range:
    if not 1 <= n_per <= limit:
        raise ValueError(f"n_per must be in 1..{limit}, got {n_per}")
    return range(n_per)


def write_ravdess_tree(
    root: Path,
    *,
    actors: Sequence[int] = (1, 2),
    emotions: Sequence[str] = FIVE,
    n_per: int = 2,
    sample_rate: int = 16000,
    seconds: float = 0.6,
    seed: int = 0,
) -> list[Path]:
    """``root/Actor_NN/03-01-EE-II-SS-RR-NN.wav``: audio-only speech, ``n_per`` (<= 8) clips per actor and emotion.

    Clip ``i`` uses intensity ``1 + i // 4``, statement ``1 + i // 2 % 2``, repetition ``1 + i % 2`` (so the first
    four are normal intensity, as neutral is in the real corpus).
    """
    rng = np.random.default_rng(seed)
    paths = []
    for actor in actors:
        for emotion in emotions:
            for i in _combos(n_per, 8):
                name = ravdess_name(
                    emotion=RAVDESS_CODES[emotion], actor=actor, intensity=1 + i // 4, statement=1 + i // 2 % 2,
                    repetition=1 + i % 2,
                )  # fmt: skip
                clip = synth_clip(emotion, speaker=actor, seconds=seconds, sample_rate=sample_rate, rng=rng)
                paths.append(write_wav(root / f"Actor_{actor:02d}" / name, clip, sample_rate=sample_rate))
    return sorted(paths)


_CREMA_D_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


def write_crema_d_tree(
    root: Path,
    *,
    actors: Sequence[int] = (1001, 1002),
    emotions: Sequence[str] = FIVE,
    n_per: int = 1,
    sample_rate: int = 16000,
    seconds: float = 0.6,
    seed: int = 0,
    subfolder: bool = True,
) -> list[Path]:
    """``root/AudioWAV/AAAA_SSS_EEE_XX.wav`` (or directly in ``root`` when ``subfolder`` is false), ``n_per`` <= 12."""
    rng = np.random.default_rng(seed)
    folder = root / "AudioWAV" if subfolder else root
    paths = []
    for actor in actors:
        for emotion in emotions:
            for i in _combos(n_per, len(_CREMA_D_SENTENCES)):
                name = f"{actor}_{_CREMA_D_SENTENCES[i]}_{CREMA_D_CODES[emotion]}_XX.wav"
                clip = synth_clip(emotion, speaker=actor, seconds=seconds, sample_rate=sample_rate, rng=rng)
                paths.append(write_wav(folder / name, clip, sample_rate=sample_rate))
    return sorted(paths)


def write_emodb_tree(
    root: Path,
    *,
    speakers: Sequence[int] = (3, 8),
    emotions: Sequence[str] = FIVE,
    n_per: int = 1,
    sample_rate: int = 16000,
    seconds: float = 0.6,
    seed: int = 0,
    subfolder: bool = True,
) -> list[Path]:
    """``root/wav/SSTTTEV.wav`` (or directly in ``root``), texts a01.. , version ``a``; ``n_per`` <= 10."""
    rng = np.random.default_rng(seed)
    folder = root / "wav" if subfolder else root
    paths = []
    for spk in speakers:
        for emotion in emotions:
            for i in _combos(n_per, 10):
                name = f"{spk:02d}{'ab'[i // 5]}{i % 5 + 1:02d}{EMODB_CODES[emotion]}a.wav"
                clip = synth_clip(emotion, speaker=spk, seconds=seconds, sample_rate=sample_rate, rng=rng)
                paths.append(write_wav(folder / name, clip, sample_rate=sample_rate))
    return sorted(paths)


def write_iemocap_tree(
    root: Path,
    *,
    dialogs: Mapping[str, Sequence[tuple[str, str]]],
    sample_rate: int = 16000,
    seconds: float = 0.6,
    seed: int = 0,
    unlabelled: Iterable[str] = (),
) -> list[Path]:
    """An IEMOCAP-like tree.

    Args:
        root: the release folder (``Session1`` .. are created below it).
        dialogs: dialog name (e.g. ``Ses01F_impro01``) -> ``[(utterance suffix e.g. "F000", emotion name)]``;
            the session folder is taken from the dialog name.
        sample_rate: rate of the files.
        seconds: clip length.
        seed: jitter seed.
        unlabelled: utterance names written as wavs but left out of the EmoEvaluation file.

    Returns:
        The wav paths.
    """
    rng = np.random.default_rng(seed)
    skip = set(unlabelled)
    paths = []
    for dialog, utts in dialogs.items():
        session = root / f"Session{int(dialog[3:5])}"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for k, (suffix, emotion) in enumerate(utts):
            utt = f"{dialog}_{suffix}"
            speaker = 0 if suffix.startswith("F") else 3
            clip = synth_clip(emotion, speaker=speaker, seconds=seconds, sample_rate=sample_rate, rng=rng)
            wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
            paths.append(write_wav(wav, clip, sample_rate=sample_rate))
            if utt not in skip:
                code = IEMOCAP_CODES.get(emotion, emotion)
                lines += [f"[{k * 2.0:.4f} - {k * 2.0 + seconds:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]"]
                lines += ["C-E1:\tNeutral;\t()", "A-E1:\tval 3; act 2; dom  2;\t()", ""]
        evaluation = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sorted(paths)


def write_manifest(csv_path: Path, rows: Sequence[Mapping[str, str]], *, columns: Sequence[str] | None = None) -> Path:
    """Write a CSV manifest; ``columns`` defaults to the keys of the first row."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    header = list(columns) if columns is not None else list(rows[0])
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return csv_path
