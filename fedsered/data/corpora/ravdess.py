"""RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`` file names, audio-only speech kept, songs and video excluded."""

from __future__ import annotations

import re
from pathlib import Path

from fedsered.data.corpora.scanning import BadNameError, Entry, Excluded, Scan, scan_files, subdirs, wav_files

RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip

EXCLUDED_SONG = "(ravdess song)"
EXCLUDED_NOT_AUDIO_ONLY = "(ravdess audio-video)"
"""Keys of ``AudioCorpus.excluded`` for RAVDESS files that are not audio-only speech (not bad input)."""

_RAVDESS_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_ACTOR_PREFIX = re.compile(r"^Actor_", re.IGNORECASE)
_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def _has_ravdess_actors(folder: Path) -> bool:
    return bool(subdirs(folder, _RAVDESS_ACTOR_DIR))


def _ravdess_wavs(root: Path) -> list[Path]:
    """The wavs of every ``Actor_NN`` folder, and the other ``Actor_*`` folders themselves (bad input, reported)."""
    odd = [d for d in subdirs(root, _ACTOR_PREFIX) if not _RAVDESS_ACTOR_DIR.match(d.name)]
    return [*odd, *(f for actor in subdirs(root, _RAVDESS_ACTOR_DIR) for f in wav_files(actor))]


def _parse_ravdess(path: Path) -> Entry | Excluded:
    """Parse ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``; songs and video are ``Excluded``; raises ``BadNameError``."""
    if _ACTOR_PREFIX.match(path.name) and path.is_dir():
        n = len(wav_files(path))
        raise BadNameError(f"folder name is not Actor_NN (two digits, UTF-8); its {n} wav file(s) were not read")
    match = _RAVDESS_NAME.match(path.stem)
    if match is None:
        raise BadNameError("file name does not match RAVDESS MM-VV-EE-II-SS-RR-AA.wav")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = (
        ("modality", modality, ("01", "02", "03")),
        ("vocal channel", channel, ("01", "02")),
        ("emotion", emotion, tuple(RAVDESS_EMOTIONS)),
        ("intensity", intensity, ("01", "02")),
        ("statement", statement, ("01", "02")),
        ("repetition", repetition, ("01", "02")),
    )
    for what, code, allowed in checks:
        if code not in allowed:
            raise BadNameError(f"unknown {what} code {code} (expected {'/'.join(allowed)})")
    folder = _RAVDESS_ACTOR_DIR.match(path.parent.name)
    if folder is not None and folder.group(1) != actor:
        raise BadNameError(f"actor {actor} in the file name but the file is in {path.parent.name}")
    if modality != "03":
        return Excluded(EXCLUDED_NOT_AUDIO_ONLY)
    if channel != "01":
        return Excluded(EXCLUDED_SONG)
    return Entry(path=path, speaker=f"ravdess_{actor}", emotion=RAVDESS_EMOTIONS[emotion], utterance_id=path.stem)


def scan_ravdess(root: Path) -> Scan:
    """Scan a RAVDESS folder: ``root/Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``.

    Audio-only (modality 03) speech (vocal channel 01) is kept; songs and audio-video files are counted in
    ``excluded``. Emotions 01..08 are neutral, calm, happy, sad, angry, fearful, disgust, surprised; the speaker is
    ``ravdess_AA`` (the actor field) and the utterance id the file stem.

    Args:
        root: the folder holding the ``Actor_NN`` folders.

    Returns:
        The ``Scan``.
    """
    return scan_files(
        root, corpus="ravdess", find=_ravdess_wavs, parse=_parse_ravdess, looks_like_root=_has_ravdess_actors
    )
