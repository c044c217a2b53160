"""EmoDB (Berlin): ``wav/SSTTTEV.wav`` file names (speaker, text, emotion letter, version)."""

from __future__ import annotations

import re
from pathlib import Path

from fedsered.data.corpora.scanning import BadNameError, Entry, Scan, scan_flat

EMODB_EMOTIONS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral",
}  # fmt: skip

_EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def _parse_emodb(path: Path) -> Entry:
    """Parse ``SSTTTEV.wav`` (e.g. ``03a01Fa.wav``); raises ``BadNameError``."""
    match = _EMODB_NAME.match(path.stem)
    if match is None:
        raise BadNameError("file name does not match EmoDB SSTTTEV.wav (e.g. 03a01Fa.wav)")
    speaker, _text, emotion, _version = match.groups()
    if emotion not in EMODB_EMOTIONS:
        raise BadNameError(f"unknown emotion code {emotion} (expected one of {''.join(EMODB_EMOTIONS)})")
    return Entry(path=path, speaker=f"emodb_{speaker}", emotion=EMODB_EMOTIONS[emotion], utterance_id=path.stem)


def scan_emodb(root: Path) -> Scan:
    """Scan an EmoDB (Berlin) folder: ``root/wav/SSTTTEV.wav``, or the wavs directly in ``root``.

    Emotion letters W L E A F T N are angry, boredom, disgust, fearful, happy, sad, neutral; the speaker is
    ``emodb_SS`` and the utterance id the file stem.

    Args:
        root: the folder holding ``wav`` (or the wavs themselves).

    Returns:
        The ``Scan``.
    """
    return scan_flat(root, corpus="emodb", subfolder="wav", parse=_parse_emodb)
