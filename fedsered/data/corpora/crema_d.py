"""CREMA-D: ``AudioWAV/AAAA_SSS_EEE_LL.wav`` file names (actor, sentence, emotion, level)."""

from __future__ import annotations

import re
from pathlib import Path

from fedsered.data.corpora.scanning import BadNameError, Entry, Scan, scan_flat

CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}

_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_CREMA_D_LEVELS = ("LO", "MD", "HI", "XX")


def _parse_crema_d(path: Path) -> Entry:
    """Parse ``AAAA_SSS_EEE_LL.wav``; raises ``BadNameError``."""
    match = _CREMA_D_NAME.match(path.stem)
    if match is None:
        raise BadNameError("file name does not match CREMA-D AAAA_SSS_EEE_LL.wav")
    actor, _sentence, emotion, level = match.groups()
    if emotion not in CREMA_D_EMOTIONS:
        raise BadNameError(f"unknown emotion code {emotion} (expected {'/'.join(CREMA_D_EMOTIONS)})")
    if level not in _CREMA_D_LEVELS:
        raise BadNameError(f"unknown level code {level} (expected {'/'.join(_CREMA_D_LEVELS)})")
    return Entry(path=path, speaker=f"crema_d_{actor}", emotion=CREMA_D_EMOTIONS[emotion], utterance_id=path.stem)


def scan_crema_d(root: Path) -> Scan:
    """Scan a CREMA-D folder: ``root/AudioWAV/AAAA_SSS_EEE_LL.wav``, or the wavs directly in ``root``.

    Emotions ANG DIS FEA HAP NEU SAD are angry, disgust, fearful, happy, neutral, sad; the speaker is
    ``crema_d_AAAA`` and the utterance id the file stem.

    Args:
        root: the folder holding ``AudioWAV`` (or the wavs themselves).

    Returns:
        The ``Scan``.
    """
    return scan_flat(root, corpus="crema_d", subfolder="AudioWAV", parse=_parse_crema_d)
