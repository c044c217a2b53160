"""Reading one audio clip: decode, mix down to mono, resample, and reject files that are not usable speech.

This module owns the per-file checks. A file that cannot be used raises ``BadAudio`` with a short, human reason;
the corpus loader (``fedsered.data.corpora``) turns that into a ``DataError`` or a reported skip, following
``data.on_bad_file``. ``BadAudio`` is internal and deliberately not a ``FedseredError``.

Checks, in order: the file decodes (soundfile / libsndfile), it holds at least one frame, every sample is finite,
it lasts at least ``min_duration_s``, and it is not silent. "Silent" means a peak absolute amplitude below
``SILENCE_PEAK`` = 1e-5 (about -100 dBFS), i.e. below one step of 16-bit PCM (3.05e-5): a 16-bit file is silent
exactly when every sample of its mono mix is zero.
"""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

SILENCE_PEAK = 1e-5
"""A clip whose mono peak ``max |x|`` is below this is rejected as silent."""


class BadAudio(Exception):  # noqa: N818 (the name the data layer uses; internal, never user-facing)
    """A file that cannot be used as a clip; ``reason`` is short and human ("empty", "silent", "too short: ...")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_clip(path: str | Path, *, sample_rate: int, min_duration_s: float) -> np.ndarray:
    """Read one clip as float32 mono at ``sample_rate``.

    Args:
        path: an audio file soundfile can read (WAV, FLAC, OGG, ...).
        sample_rate: target rate in Hz; the clip is resampled (soxr) when the file's rate differs.
        min_duration_s: shorter clips are rejected.

    Returns:
        1-D float32 array.

    Raises:
        BadAudio: the file is unreadable, empty, non-finite, too short or silent.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadAudio(f"corrupt or unreadable ({exc.strerror or exc})") from None
    return decode_clip(data, sample_rate=sample_rate, min_duration_s=min_duration_s)


def decode_clip(data: bytes, *, sample_rate: int, min_duration_s: float) -> np.ndarray:
    """Decode the bytes of one audio file as float32 mono at ``sample_rate`` (see ``read_clip``).

    Args:
        data: the raw file content.
        sample_rate: target rate in Hz.
        min_duration_s: shorter clips are rejected.

    Returns:
        1-D float32 array.

    Raises:
        BadAudio: as ``read_clip``.
    """
    frames, file_rate = _decode(data)
    mono = check_clip(frames, file_rate=file_rate, min_duration_s=min_duration_s)
    return resample(mono, orig_rate=file_rate, target_rate=sample_rate)


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    """``[frames, channels]`` float32 and the file's rate, or ``BadAudio`` when libsndfile refuses the bytes."""
    try:
        frames, file_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        detail = getattr(exc, "error_string", "") or str(exc) or type(exc).__name__
        raise BadAudio(f"corrupt or unreadable ({detail.strip().rstrip('.')})") from None
    return frames, int(file_rate)


def check_clip(frames: np.ndarray, *, file_rate: int, min_duration_s: float) -> np.ndarray:
    """Mix ``[frames, channels]`` down to mono and apply the usability checks.

    Args:
        frames: decoded samples, ``[n_frames, n_channels]``.
        file_rate: the file's sample rate in Hz.
        min_duration_s: shorter clips are rejected.

    Returns:
        1-D float32 mono mix (mean over channels), at ``file_rate``.

    Raises:
        BadAudio: empty, non-finite, too short or silent.
    """
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise BadAudio("empty")
    if not np.all(np.isfinite(frames)):
        raise BadAudio("non-finite samples (NaN or inf)")
    duration = frames.shape[0] / file_rate
    if duration < min_duration_s:
        raise BadAudio(f"too short: {duration:.2f} s < {min_duration_s:.2f} s")
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise BadAudio("silent")
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(audio: np.ndarray, *, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample 1-D audio with soxr (librosa's default ``soxr_hq``); a no-op when the rates agree.

    Args:
        audio: 1-D float32 samples.
        orig_rate: their rate in Hz.
        target_rate: the wanted rate in Hz.

    Returns:
        1-D float32 array at ``target_rate``.
    """
    if orig_rate == target_rate:
        return audio
    out = librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)
