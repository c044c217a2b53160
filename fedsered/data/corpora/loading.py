"""Loading a corpus: the scanner registry (``SCANNERS``), the mapping of corpus emotions onto ``data.emotions``,
and ``load_corpus``, which decodes the selected files into an ``AudioCorpus``."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from fedsered.config import DataConfig
from fedsered.data.audio import BadAudio, decode_clip
from fedsered.data.corpora.crema_d import CREMA_D_EMOTIONS, scan_crema_d
from fedsered.data.corpora.emodb import EMODB_EMOTIONS, scan_emodb
from fedsered.data.corpora.iemocap import IEMOCAP_EMOTIONS, scan_iemocap
from fedsered.data.corpora.manifest import scan_manifest
from fedsered.data.corpora.ravdess import RAVDESS_EMOTIONS, scan_ravdess
from fedsered.data.corpora.scanning import CONVENTIONS, Entry, Scan, relative
from fedsered.data.types import AudioCorpus, SkippedFile
from fedsered.errors import ConfigError, DataError

EMOTIONS: dict[str, tuple[str, ...]] = {
    "ravdess": tuple(RAVDESS_EMOTIONS.values()),
    "crema_d": tuple(CREMA_D_EMOTIONS.values()),
    "emodb": tuple(EMODB_EMOTIONS.values()),
    "iemocap": tuple(IEMOCAP_EMOTIONS.values()),
}
"""Every emotion name each fixed-vocabulary corpus can produce (the manifest's vocabulary is its CSV's)."""

SUGGESTED_LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "iemocap": {"excited": "happy"},
}
"""Common ``data.label_map`` choices; IEMOCAP's 4-class setup merges ``excited`` into ``happy``."""

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
    kept.sort(key=lambda item: relative(item[0].path, base))
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
            meta = f"{relative(entry.path, base)}\0{entry.speaker}\0{entry.utterance_id}\0{label}\0{len(data)}\0"
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
