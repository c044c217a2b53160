"""Real emotional-speech corpora on local disk: find the files, read their labels, load them as an ``AudioCorpus``.

This module owns the file conventions of each corpus (RAVDESS, CREMA-D, EmoDB, IEMOCAP, and a CSV manifest for
anything else), the mapping of corpus emotions onto the configured emotion set (``data.label_map``), and the
bookkeeping of what was left out: files outside the emotion set are counted in ``AudioCorpus.excluded`` and bad
files either stop the run or are listed in ``AudioCorpus.skipped`` (``data.on_bad_file``) — nothing is dropped
silently. Decoding one clip is ``fedsered.data.audio``'s job.

Each scanner returns the corpus' native, canonical lowercase emotion names (e.g. IEMOCAP's ``exc`` is
``excited``); merging classes is done by the config's ``label_map``. ``SUGGESTED_LABEL_MAPS`` lists the common
choices, e.g. ``{"excited": "happy"}`` for the usual 4-class IEMOCAP setup (neutral, happy+excited, angry, sad).

Scanner conventions shared by the folder corpora: only ``.wav`` files count (any case, e.g. ``.WAV``), other files
and hidden files (``.name``, such as macOS ``._`` resource forks) are ignored; a ``.wav`` whose name breaks the
convention or carries an unknown code is bad input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import DataConfig
from fedsered.data.audio import BadAudio, decode_clip
from fedsered.data.types import AudioCorpus, SkippedFile
from fedsered.errors import ConfigError, DataError

CONVENTIONS: dict[str, str] = {
    "ravdess": "Actor_NN/MM-VV-EE-II-SS-RR-AA.wav folders under data.path (e.g. Actor_01/03-01-05-01-01-01-01.wav)",
    "crema_d": "AudioWAV/AAAA_SSS_EEE_LL.wav under data.path, or the wavs directly in it (e.g. 1001_DFA_ANG_XX.wav)",
    "emodb": "wav/SSTTTEV.wav under data.path, or the wavs directly in it (e.g. 03a01Fa.wav)",
    "iemocap": (
        "SessionK/sentences/wav/<dialog>/<utt>.wav under data.path, "
        "labels in SessionK/dialog/EmoEvaluation/<dialog>.txt"
    ),
    "manifest": "data.path is a CSV file with header columns path, speaker, emotion (and optionally split)",
}
"""The expected layout of each corpus, as error messages state it."""

_RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
_CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_EMODB_EMOTIONS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral",
}  # fmt: skip
_IEMOCAP_EMOTIONS = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated",
    "sur": "surprised", "fea": "fearful", "dis": "disgust", "oth": "other", "xxx": "unlabelled",
}  # fmt: skip

EMOTIONS: dict[str, tuple[str, ...]] = {
    "ravdess": tuple(_RAVDESS_EMOTIONS.values()),
    "crema_d": tuple(_CREMA_D_EMOTIONS.values()),
    "emodb": tuple(_EMODB_EMOTIONS.values()),
    "iemocap": tuple(_IEMOCAP_EMOTIONS.values()),
}
"""Every emotion name each fixed-vocabulary corpus can produce (the manifest's vocabulary is its CSV's)."""

SUGGESTED_LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "iemocap": {"excited": "happy"},
}
"""Common ``data.label_map`` choices; IEMOCAP's 4-class setup merges ``excited`` into ``happy``."""

EXCLUDED_SONG = "(ravdess song)"
EXCLUDED_NOT_AUDIO_ONLY = "(ravdess audio-video)"
"""Keys of ``AudioCorpus.excluded`` for RAVDESS files that are not audio-only speech (not bad input)."""


@dataclass(frozen=True)
class Entry:
    """One labelled audio file of a corpus, before decoding.

    Attributes:
        path: the audio file.
        speaker: speaker id, prefixed with the corpus (e.g. ``ravdess_01``, ``Ses01_F``).
        emotion: the corpus' canonical lowercase emotion name (e.g. ``angry``, ``excited``).
        utterance_id: unique within the corpus (the file stem; for a manifest, the path without suffix).
        split: the manifest's optional ``split`` value; ``None`` elsewhere.
    """

    path: Path
    speaker: str
    emotion: str
    utterance_id: str
    split: str | None = None


@dataclass(frozen=True)
class Scan:
    """What a scanner found.

    Attributes:
        entries: usable labelled files.
        bad: files breaking the corpus convention (bad name, unknown code, no label), with the reason.
        excluded: files deliberately left out that are not bad input (RAVDESS songs and video), per reason.
    """

    entries: tuple[Entry, ...]
    bad: tuple[SkippedFile, ...] = ()
    excluded: dict[str, int] = field(default_factory=dict)


class _BadNameError(Exception):
    """A file breaking the corpus convention (internal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Excluded:
    """A well-formed file that the corpus loader leaves out on purpose (internal); ``key`` names the kind."""

    key: str


# ---------------------------------------------------------------------------------------------------------------
# file discovery


def _is_wav(path: Path) -> bool:
    return path.suffix.lower() == ".wav" and not path.name.startswith(".") and path.is_file()


def _wav_files(folder: Path) -> list[Path]:
    """The ``.wav`` files directly in ``folder`` (any case, hidden ones ignored), sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_wav(p))


def _subdirs(folder: Path, pattern: re.Pattern[str] | None = None) -> list[Path]:
    """Non-hidden sub-folders of ``folder`` (whose name matches ``pattern`` when given), sorted by name."""
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and (pattern is None or pattern.match(d.name))
    )


def _require_dir(root: Path, corpus: str) -> Path:
    if not root.exists():
        raise DataError(f"{root}: folder not found; corpus={corpus} expects {CONVENTIONS[corpus]}")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; corpus={corpus} expects {CONVENTIONS[corpus]}")
    return root


def _nested_hint(root: Path, looks_like_root: Callable[[Path], bool]) -> str:
    """A hint naming a sub-folder (up to two levels down) that looks like the corpus root, or ``""``."""
    for child in _subdirs(root):
        for candidate in (child, *_subdirs(child)):
            if looks_like_root(candidate):
                return f" (found a matching layout in {candidate}; set data.path to it)"
    return ""


def _no_files(root: Path, corpus: str, looks_like_root: Callable[[Path], bool]) -> DataError:
    hint = _nested_hint(root, looks_like_root)
    return DataError(f"{root}: no {corpus} audio files found; expected {CONVENTIONS[corpus]}{hint}")


def _collect(files: Iterable[Path], parse: Callable[[Path], Entry | _Excluded]) -> Scan:
    """Parse every file: entries, bad files with their reason, and exclusion counts."""
    entries: list[Entry] = []
    bad: list[SkippedFile] = []
    excluded: Counter[str] = Counter()
    for path in files:
        try:
            parsed = parse(path)
        except _BadNameError as exc:
            bad.append(SkippedFile(str(path), exc.reason))
            continue
        if isinstance(parsed, _Excluded):
            excluded[parsed.key] += 1
        else:
            entries.append(parsed)
    return Scan(tuple(entries), tuple(bad), dict(sorted(excluded.items())))


def _is_empty(scan: Scan) -> bool:
    return not (scan.entries or scan.bad or scan.excluded)


# ---------------------------------------------------------------------------------------------------------------
# RAVDESS

_RAVDESS_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def _has_ravdess_actors(folder: Path) -> bool:
    return bool(_subdirs(folder, _RAVDESS_ACTOR_DIR))


def _parse_ravdess(path: Path) -> Entry | _Excluded:
    """Parse ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``; songs and video are ``_Excluded``; raises ``_BadNameError``."""
    match = _RAVDESS_NAME.match(path.stem)
    if match is None:
        raise _BadNameError("file name does not match RAVDESS MM-VV-EE-II-SS-RR-AA.wav")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = (
        ("modality", modality, ("01", "02", "03")),
        ("vocal channel", channel, ("01", "02")),
        ("emotion", emotion, tuple(_RAVDESS_EMOTIONS)),
        ("intensity", intensity, ("01", "02")),
        ("statement", statement, ("01", "02")),
        ("repetition", repetition, ("01", "02")),
    )
    for what, code, allowed in checks:
        if code not in allowed:
            raise _BadNameError(f"unknown {what} code {code} (expected {'/'.join(allowed)})")
    folder = _RAVDESS_ACTOR_DIR.match(path.parent.name)
    if folder is not None and folder.group(1) != actor:
        raise _BadNameError(f"actor {actor} in the file name but the file is in {path.parent.name}")
    if modality != "03":
        return _Excluded(EXCLUDED_NOT_AUDIO_ONLY)
    if channel != "01":
        return _Excluded(EXCLUDED_SONG)
    return Entry(path=path, speaker=f"ravdess_{actor}", emotion=_RAVDESS_EMOTIONS[emotion], utterance_id=path.stem)


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
    root = _require_dir(root, "ravdess")
    files = [f for actor in _subdirs(root, _RAVDESS_ACTOR_DIR) for f in _wav_files(actor)]
    scan = _collect(files, _parse_ravdess)
    if _is_empty(scan):
        raise _no_files(root, "ravdess", _has_ravdess_actors)
    return scan


# ---------------------------------------------------------------------------------------------------------------
# CREMA-D

_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_CREMA_D_LEVELS = ("LO", "MD", "HI", "XX")


def _parse_crema_d(path: Path) -> Entry:
    """Parse ``AAAA_SSS_EEE_LL.wav``; raises ``_BadNameError``."""
    match = _CREMA_D_NAME.match(path.stem)
    if match is None:
        raise _BadNameError("file name does not match CREMA-D AAAA_SSS_EEE_LL.wav")
    actor, _sentence, emotion, level = match.groups()
    if emotion not in _CREMA_D_EMOTIONS:
        raise _BadNameError(f"unknown emotion code {emotion} (expected {'/'.join(_CREMA_D_EMOTIONS)})")
    if level not in _CREMA_D_LEVELS:
        raise _BadNameError(f"unknown level code {level} (expected {'/'.join(_CREMA_D_LEVELS)})")
    return Entry(path=path, speaker=f"crema_d_{actor}", emotion=_CREMA_D_EMOTIONS[emotion], utterance_id=path.stem)


def scan_crema_d(root: Path) -> Scan:
    """Scan a CREMA-D folder: ``root/AudioWAV/AAAA_SSS_EEE_LL.wav``, or the wavs directly in ``root``.

    Emotions ANG DIS FEA HAP NEU SAD are angry, disgust, fearful, happy, neutral, sad; the speaker is
    ``crema_d_AAAA`` and the utterance id the file stem.

    Args:
        root: the folder holding ``AudioWAV`` (or the wavs themselves).

    Returns:
        The ``Scan``.
    """
    return _scan_flat(root, corpus="crema_d", subfolder="AudioWAV", parse=_parse_crema_d)


def _scan_flat(root: Path, *, corpus: str, subfolder: str, parse: Callable[[Path], Entry]) -> Scan:
    """Scan ``root/<subfolder>/*.wav`` (or the wavs directly in ``root``), each file parsed by its name."""
    root = _require_dir(root, corpus)
    folder = root / subfolder if (root / subfolder).is_dir() else root
    scan = _collect(_wav_files(folder), parse)
    if _is_empty(scan):
        raise _no_files(root, corpus, lambda d: (d / subfolder).is_dir())
    return scan


# ---------------------------------------------------------------------------------------------------------------
# EmoDB

_EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def _parse_emodb(path: Path) -> Entry:
    """Parse ``SSTTTEV.wav`` (e.g. ``03a01Fa.wav``); raises ``_BadNameError``."""
    match = _EMODB_NAME.match(path.stem)
    if match is None:
        raise _BadNameError("file name does not match EmoDB SSTTTEV.wav (e.g. 03a01Fa.wav)")
    speaker, _text, emotion, _version = match.groups()
    if emotion not in _EMODB_EMOTIONS:
        raise _BadNameError(f"unknown emotion code {emotion} (expected one of {''.join(_EMODB_EMOTIONS)})")
    return Entry(path=path, speaker=f"emodb_{speaker}", emotion=_EMODB_EMOTIONS[emotion], utterance_id=path.stem)


def scan_emodb(root: Path) -> Scan:
    """Scan an EmoDB (Berlin) folder: ``root/wav/SSTTTEV.wav``, or the wavs directly in ``root``.

    Emotion letters W L E A F T N are angry, boredom, disgust, fearful, happy, sad, neutral; the speaker is
    ``emodb_SS`` and the utterance id the file stem.

    Args:
        root: the folder holding ``wav`` (or the wavs themselves).

    Returns:
        The ``Scan``.
    """
    return _scan_flat(root, corpus="emodb", subfolder="wav", parse=_parse_emodb)


# ---------------------------------------------------------------------------------------------------------------
# IEMOCAP

_IEMOCAP_SESSION_DIR = re.compile(r"^Session\d+$")
_IEMOCAP_UTT = re.compile(r"^(Ses\d{2})[FM]_\w+_([FM])\d{3}$")
_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")


def parse_emo_evaluation(text: str) -> dict[str, str]:
    """Utterance -> raw label code from an IEMOCAP ``EmoEvaluation/<dialog>.txt``.

    Only the summary lines ``[start - end]<TAB>utt<TAB>label<TAB>[v, a, d]`` are read; the per-evaluator lines
    (``C-E1: ...``, ``A-E2: ...``) and comments are ignored.

    Args:
        text: the file's content.

    Returns:
        Mapping from utterance name to label code (e.g. ``"exc"``).
    """
    labels: dict[str, str] = {}
    for line in text.splitlines():
        match = _IEMOCAP_LINE.match(line)
        if match is not None:
            labels[match.group(1)] = match.group(2)
    return labels


class _IemocapLabels:
    """Reads and caches ``SessionK/dialog/EmoEvaluation/<dialog>.txt`` on demand."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, str] | None] = {}

    def file_for(self, wav: Path) -> Path:
        session = wav.parents[3]  # SessionK/sentences/wav/<dialog>/<utt>.wav
        return session / "dialog" / "EmoEvaluation" / f"{wav.parent.name}.txt"

    def get(self, txt: Path) -> dict[str, str] | None:
        if txt not in self._cache:
            try:
                self._cache[txt] = parse_emo_evaluation(txt.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                self._cache[txt] = None
        return self._cache[txt]


def _parse_iemocap(path: Path, labels: _IemocapLabels) -> Entry:
    utt = path.stem
    match = _IEMOCAP_UTT.match(utt)
    if match is None or not utt.startswith(path.parent.name + "_"):
        raise _BadNameError(f"file name does not match IEMOCAP <dialog>_[FM]NNN.wav in folder {path.parent.name}")
    txt = labels.file_for(path)
    table = labels.get(txt)
    if table is None:
        raise _BadNameError(f"labels file missing or unreadable: {txt}")
    if utt not in table:
        raise _BadNameError(f"no label for {utt} in {txt}")
    code = table[utt]
    if code not in _IEMOCAP_EMOTIONS:
        raise _BadNameError(f"unknown emotion label {code!r} in {txt} (expected one of {', '.join(_IEMOCAP_EMOTIONS)})")
    session, gender = match.groups()
    return Entry(path=path, speaker=f"{session}_{gender}", emotion=_IEMOCAP_EMOTIONS[code], utterance_id=utt)


def scan_iemocap(root: Path) -> Scan:
    """Scan an IEMOCAP release: ``root/SessionK/sentences/wav/<dialog>/<utt>.wav`` with labels from
    ``root/SessionK/dialog/EmoEvaluation/<dialog>.txt``.

    Label codes neu hap exc ang sad fru sur fea dis oth xxx become neutral, happy, excited, angry, sad, frustrated,
    surprised, fearful, disgust, other, unlabelled. The usual 4-class setup needs ``data.label_map:
    {excited: happy}`` (``SUGGESTED_LABEL_MAPS["iemocap"]``). The speaker is the session plus the speaking
    actor's gender, the letter before the utterance number (``Ses01F_impro01_M003`` -> ``Ses01_M``); the utterance
    id is the file stem. A wav without a label line is bad input.

    Args:
        root: the folder holding ``Session1`` .. ``Session5``.

    Returns:
        The ``Scan``.
    """
    root = _require_dir(root, "iemocap")
    files: list[Path] = []
    for session in _subdirs(root, _IEMOCAP_SESSION_DIR):
        wav_root = session / "sentences" / "wav"
        if wav_root.is_dir():
            files.extend(f for dialog in _subdirs(wav_root) for f in _wav_files(dialog))
    labels = _IemocapLabels()
    scan = _collect(files, lambda p: _parse_iemocap(p, labels))
    if _is_empty(scan):
        raise _no_files(root, "iemocap", lambda d: bool(_subdirs(d, _IEMOCAP_SESSION_DIR)))
    return scan


# ---------------------------------------------------------------------------------------------------------------
# CSV manifest

_MANIFEST_REQUIRED = ("path", "speaker", "emotion")


def _manifest_header(header: Sequence[str], csv_path: Path) -> dict[str, int]:
    columns = [h.strip().lower() for h in header]
    dup = sorted({c for c in columns if c and columns.count(c) > 1})
    if dup:
        raise DataError(f"{csv_path}: line 1: column(s) {', '.join(dup)} appear more than once in the header")
    missing = [c for c in _MANIFEST_REQUIRED if c not in columns]
    if missing:
        raise DataError(
            f"{csv_path}: line 1: missing column(s) {', '.join(missing)}; the header must name "
            f"path, speaker, emotion (and optionally split), found: {', '.join(columns) or '(nothing)'}"
        )
    return {c: i for i, c in enumerate(columns) if c}


def _manifest_row(row: Sequence[str], *, columns: Mapping[str, int], n_header: int, csv_path: Path, line: int) -> Entry:
    where = f"{csv_path}: line {line}"
    if len(row) > n_header and any(v.strip() for v in row[n_header:]):
        raise DataError(f"{where}: {len(row)} fields but the header has {n_header}")
    values = {c: (row[i].strip() if i < len(row) else "") for c, i in columns.items()}
    for name in _MANIFEST_REQUIRED:
        if not values[name]:
            raise DataError(f"{where}: empty {name!r} field")
    base = csv_path.parent
    raw = Path(values["path"]).expanduser()
    path = Path(os.path.normpath(raw if raw.is_absolute() else base / raw))
    if not path.is_file():
        raise DataError(f"{where}: audio file not found: {path}")
    return Entry(
        path=path,
        speaker=values["speaker"],
        emotion=values["emotion"].lower(),
        utterance_id=_relative(path.with_suffix(""), base),
        split=values.get("split") or None,
    )


def scan_manifest(csv_path: Path) -> Scan:
    """Read a CSV manifest: a header with ``path, speaker, emotion`` and optionally ``split`` (any order, any case;
    other columns ignored), one clip per row.

    Relative paths resolve against the CSV's folder; any format soundfile reads is accepted. Emotions are used
    as written (lowercased); speakers as written. The utterance id is the path relative to the CSV's folder
    (with ``..`` for files outside it), without its suffix. A missing column, an empty field, or a missing audio
    file is a ``DataError`` naming the CSV and the line (the header is line 1).

    Args:
        csv_path: the manifest (UTF-8, an optional BOM is fine).

    Returns:
        The ``Scan`` (``bad`` and ``excluded`` are always empty: manifest problems are errors).
    """
    if not csv_path.exists():
        raise DataError(f"{csv_path}: manifest not found; corpus=manifest expects {CONVENTIONS['manifest']}")
    if csv_path.is_dir():
        raise DataError(f"{csv_path}: is a folder; corpus=manifest expects {CONVENTIONS['manifest']}")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: cannot read the manifest as UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{csv_path}: empty manifest; expected {CONVENTIONS['manifest']}")
    columns = _manifest_header(header, csv_path)
    entries = [
        _manifest_row(row, columns=columns, n_header=len(header), csv_path=csv_path, line=reader.line_num)
        for row in reader
        if any(v.strip() for v in row)
    ]
    if not entries:
        raise DataError(f"{csv_path}: the manifest lists no files; expected {CONVENTIONS['manifest']}")
    return Scan(tuple(entries))


# ---------------------------------------------------------------------------------------------------------------
# loading

SCANNERS: dict[str, Callable[[Path], Scan]] = {
    "ravdess": scan_ravdess,
    "crema_d": scan_crema_d,
    "emodb": scan_emodb,
    "iemocap": scan_iemocap,
    "manifest": scan_manifest,
}


def scan_corpus(corpus: str, path: Path) -> Scan:
    """Run the scanner of ``corpus`` (a ``data.corpus`` value other than ``embedded``) on ``path``.

    Args:
        corpus: ravdess, crema_d, emodb, iemocap or manifest.
        path: the corpus folder, or the CSV file for a manifest.

    Returns:
        The ``Scan``.
    """
    if corpus not in SCANNERS:
        raise ValueError(f"no file scanner for corpus {corpus!r} (the embedded corpus is generated, not scanned)")
    return SCANNERS[corpus](path)


def resolve_label_map(
    label_map: Mapping[str, str | None], *, corpus: str, emotions: Sequence[str]
) -> dict[str, str | None]:
    """Check and normalise ``data.label_map``: keys lowercased, targets in ``emotions`` (or ``None``).

    Args:
        label_map: corpus emotion name -> common emotion name, or ``None`` to exclude.
        corpus: the corpus; for fixed-vocabulary corpora every key must be one of its emotions (catches typos).
        emotions: the common emotion set.

    Returns:
        The normalised mapping.
    """
    vocabulary = EMOTIONS.get(corpus)
    resolved: dict[str, str | None] = {}
    for key, target in label_map.items():
        name = key.strip().lower()
        if vocabulary is not None and name not in vocabulary:
            raise ConfigError(
                f"data.label_map.{key}: {key!r} is not an emotion of corpus {corpus} (its emotions: "
                f"{', '.join(vocabulary)})"
            )
        if target is not None and target not in emotions:
            raise ConfigError(
                f"data.label_map.{key}: maps to {target!r}, which is not in data.emotions ({', '.join(emotions)}); "
                "map it to null to exclude it"
            )
        resolved[name] = target
    return resolved


def select_emotions(
    entries: Iterable[Entry], *, label_map: Mapping[str, str | None], emotions: Sequence[str]
) -> tuple[list[tuple[Entry, int]], dict[str, int]]:
    """Map corpus emotions through ``label_map`` and keep those in ``emotions``.

    Args:
        entries: scanned entries.
        label_map: normalised mapping (``resolve_label_map``); unlisted names map to themselves.
        emotions: the common emotion set (its order is the label index).

    Returns:
        ``(kept, excluded)``: kept entries with their label index, and the count of left-out entries per corpus
        emotion name.
    """
    index = {name: i for i, name in enumerate(emotions)}
    kept: list[tuple[Entry, int]] = []
    excluded: Counter[str] = Counter()
    for entry in entries:
        target = label_map.get(entry.emotion, entry.emotion)
        if target is None or target not in index:
            excluded[entry.emotion] += 1
        else:
            kept.append((entry, index[target]))
    return kept, dict(sorted(excluded.items()))


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form (with ``..`` when outside it), independent of where both live."""
    return Path(os.path.relpath(path, base)).as_posix()


def _bad_file_error(path: str, reason: str, *, more: int = 0) -> DataError:
    extra = f"; {more} more bad file(s)" if more else ""
    return DataError(f"{path}: {reason} (set data.on_bad_file: skip to skip such files{extra})")


def _drop_duplicates(
    kept: list[tuple[Entry, int]], *, on_bad_file: str
) -> tuple[list[tuple[Entry, int]], list[SkippedFile]]:
    """Keep the first entry of each utterance id (in the given order); later ones are bad input."""
    first: dict[str, Path] = {}
    unique: list[tuple[Entry, int]] = []
    skipped: list[SkippedFile] = []
    for entry, label in kept:
        if entry.utterance_id in first:
            reason = f"duplicate utterance id {entry.utterance_id!r} (also {first[entry.utterance_id]})"
            if on_bad_file == "error":
                raise _bad_file_error(str(entry.path), reason)
            skipped.append(SkippedFile(str(entry.path), reason))
        else:
            first[entry.utterance_id] = entry.path
            unique.append((entry, label))
    return unique, skipped


def _read_entry(entry: Entry, *, sample_rate: int, min_duration_s: float) -> tuple[bytes, np.ndarray]:
    """The raw bytes (for the digest) and the decoded clip; ``BadAudio`` when the file cannot be used."""
    try:
        data = entry.path.read_bytes()
    except OSError as exc:
        raise BadAudio(f"corrupt or unreadable ({exc.strerror or exc})") from None
    return data, decode_clip(data, sample_rate=sample_rate, min_duration_s=min_duration_s)


def _check_every_emotion_present(labels: Sequence[int], *, emotions: Sequence[str], source: Path) -> None:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(emotions))
    empty = [name for name, c in zip(emotions, counts, strict=True) if c == 0]
    if empty:
        raise DataError(
            f"{source}: no usable clips for emotion(s) {', '.join(empty)} of data.emotions; remove them from "
            "data.emotions, or map a corpus emotion onto them with data.label_map"
        )


def load_corpus(
    cfg: DataConfig, *, sample_rate: int, progress: Callable[[int, int], None] | None = None
) -> AudioCorpus:
    """Load a real corpus from disk.

    Steps: scan the files (``scan_corpus``); bad names stop the run or are skipped (``cfg.on_bad_file``); map
    emotions through ``cfg.label_map`` and keep those in ``cfg.emotions`` (the rest counted in ``excluded``); in
    sorted relative-path order, read each clip (``fedsered.data.audio.decode_clip``), with bad audio again stopping
    the run or being skipped. Every emotion of ``cfg.emotions`` must end up with at least one clip.

    ``digest`` is a hex BLAKE2b (32 bytes) over the emotion set, the sample rate and, for every kept clip in
    order, its path relative to the corpus root (the CSV's folder for a manifest), speaker, utterance id, label
    and raw file bytes: it changes whenever the clips, their labels or their selection change.

    Args:
        cfg: the ``data`` config section (``cfg.corpus`` must not be ``embedded``).
        sample_rate: rate every clip is resampled to.
        progress: called as ``progress(done, total)`` after each clip is read (and once with ``done=0``).

    Returns:
        The ``AudioCorpus``, clips in sorted relative-path order.
    """
    if cfg.corpus == "embedded":
        raise ValueError("load_corpus reads corpora from disk; the embedded corpus is generated elsewhere")
    if not cfg.path:
        raise DataError(f"corpus={cfg.corpus} needs data.path ({CONVENTIONS[cfg.corpus]})")
    source = Path(cfg.path).expanduser()
    base = source.parent if cfg.corpus == "manifest" else source
    scan = scan_corpus(cfg.corpus, source)
    if scan.bad and cfg.on_bad_file == "error":
        raise _bad_file_error(scan.bad[0].path, scan.bad[0].reason, more=len(scan.bad) - 1)
    label_map = resolve_label_map(cfg.label_map, corpus=cfg.corpus, emotions=cfg.emotions)
    kept, excluded_emotions = select_emotions(scan.entries, label_map=label_map, emotions=cfg.emotions)
    excluded = dict(sorted({**scan.excluded, **excluded_emotions}.items()))
    if not kept:
        found = sorted({e.emotion for e in scan.entries})
        raise DataError(
            f"{source}: no clip has an emotion in data.emotions ({', '.join(cfg.emotions)}); the corpus has "
            f"{', '.join(found) or 'no usable files'}; map them with data.label_map"
        )
    kept.sort(key=lambda item: _relative(item[0].path, base))
    kept, skipped = _drop_duplicates(kept, on_bad_file=cfg.on_bad_file)
    skipped = [*scan.bad, *skipped]

    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"fedsered-audio-v1\n{sample_rate}\n{'|'.join(cfg.emotions)}\n".encode())
    audio: list[np.ndarray] = []
    labels: list[int] = []
    speakers: list[str] = []
    utterances: list[str] = []
    splits: list[str] = []
    if progress is not None:
        progress(0, len(kept))
    for done, (entry, label) in enumerate(kept, start=1):
        try:
            data, clip = _read_entry(entry, sample_rate=sample_rate, min_duration_s=cfg.min_duration_s)
        except BadAudio as exc:
            if cfg.on_bad_file == "error":
                raise _bad_file_error(str(entry.path), exc.reason) from None
            skipped.append(SkippedFile(str(entry.path), exc.reason))
        else:
            meta = f"{_relative(entry.path, base)}\0{entry.speaker}\0{entry.utterance_id}\0{label}\0{len(data)}\0"
            digest.update(meta.encode())
            digest.update(data)
            audio.append(clip)
            labels.append(label)
            speakers.append(entry.speaker)
            utterances.append(entry.utterance_id)
            splits.append((entry.split or "").strip().lower())
        if progress is not None:
            progress(done, len(kept))

    if not audio:
        raise DataError(
            f"{source}: no usable clips: all {len(kept)} candidate file(s) were bad (e.g. {skipped[-1].path}: "
            f"{skipped[-1].reason})"
        )
    _check_every_emotion_present(labels, emotions=cfg.emotions, source=source)
    return AudioCorpus(
        audio=audio,
        sample_rate=sample_rate,
        labels=np.asarray(labels, dtype=np.int64),
        emotions=tuple(cfg.emotions),
        speaker=np.asarray(speakers, dtype=str),
        utterance_id=np.asarray(utterances, dtype=str),
        digest=digest.hexdigest(),
        skipped=tuple(skipped),
        excluded=excluded,
        split=np.asarray(splits, dtype=str) if any(splits) else None,
    )


# ---------------------------------------------------------------------------------------------------------------
# summary


def _reason_kind(reason: str) -> str:
    """The category of a skip reason: ``"too short: 0.12 s < 0.25 s"`` -> ``"too short"``."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()


def corpus_summary(corpus: AudioCorpus) -> dict[str, Any]:
    """Counts describing a loaded corpus, JSON-serialisable (the CLI prints them as a table).

    Args:
        corpus: a loaded ``AudioCorpus``.

    Returns:
        ``utterances``, ``speakers`` (count), ``per_emotion`` (name -> count, in label order), ``duration_s``
        (total), ``mean_duration_s``, ``per_speaker`` (id -> count), ``skipped`` (count), ``skipped_reasons``
        (kind -> count, e.g. ``{"too short": 3}``), ``skipped_files`` (``[{"path", "reason"}]``), ``excluded``
        (corpus emotion or kind -> count), ``sample_rate`` and ``digest``.
    """
    counts = np.bincount(corpus.labels, minlength=len(corpus.emotions))
    speakers, per_speaker = np.unique(corpus.speaker, return_counts=True)
    total_s = float(sum(len(a) for a in corpus.audio)) / corpus.sample_rate
    return {
        "utterances": len(corpus.audio),
        "speakers": len(speakers),
        "per_emotion": {name: int(c) for name, c in zip(corpus.emotions, counts, strict=True)},
        "duration_s": round(total_s, 3),
        "mean_duration_s": round(total_s / len(corpus.audio), 3),
        "per_speaker": {str(s): int(c) for s, c in zip(speakers, per_speaker, strict=True)},
        "skipped": len(corpus.skipped),
        "skipped_reasons": dict(Counter(_reason_kind(s.reason) for s in corpus.skipped)),
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in corpus.skipped],
        "excluded": dict(corpus.excluded),
        "sample_rate": corpus.sample_rate,
        "digest": corpus.digest,
    }
