"""What the corpus scanners share: the ``Entry`` and ``Scan`` records, each corpus' expected layout
(``CONVENTIONS``), file discovery, and the bookkeeping of bad and excluded files."""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fedsered.data.types import SkippedFile
from fedsered.errors import DataError

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


class BadNameError(Exception):
    """A file breaking the corpus convention (raised by the parsers, collected by ``_collect``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Excluded:
    """A well-formed file that the corpus loader leaves out on purpose (a parser result); ``key`` names the kind."""

    key: str


# ---------------------------------------------------------------------------------------------------------------
# file discovery


def _is_wav(path: Path) -> bool:
    return path.suffix.lower() == ".wav" and not path.name.startswith(".")


def wav_files(folder: Path) -> list[Path]:
    """The ``.wav`` names directly in ``folder`` (any case, hidden ones ignored), sorted by name — folders, broken
    links and other non-files among them too: ``_collect`` reports those as bad files instead of losing them."""
    return sorted(p for p in folder.iterdir() if _is_wav(p))


def shown(path: Path | str) -> str:
    """``path`` as printable text: bytes of a name that is not UTF-8 appear as ``\\xNN`` escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read as audio, or ``None`` when it is one."""
    try:
        st = path.stat()
    except OSError as exc:
        if path.is_symlink():
            return f"a symbolic link that cannot be followed ({exc.strerror or exc})"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an audio file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def subdirs(folder: Path, pattern: re.Pattern[str] | None = None) -> list[Path]:
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
    for child in subdirs(root):
        for candidate in (child, *subdirs(child)):
            if looks_like_root(candidate):
                return f" (found a matching layout in {candidate}; set data.path to it)"
    return ""


def _no_files(root: Path, corpus: str, looks_like_root: Callable[[Path], bool]) -> DataError:
    hint = _nested_hint(root, looks_like_root)
    return DataError(f"{root}: no {corpus} audio files found; expected {CONVENTIONS[corpus]}{hint}")


def _collect(files: Iterable[Path], parse: Callable[[Path], Entry | Excluded]) -> Scan:
    """Parse every file: entries, bad files with their reason, and exclusion counts."""
    entries: list[Entry] = []
    bad: list[SkippedFile] = []
    excluded: Counter[str] = Counter()
    for path in files:
        try:
            parsed = parse(path)
            problem = None if isinstance(parsed, Excluded) else not_a_file(path)
            if problem is not None:
                raise BadNameError(problem)
        except BadNameError as exc:
            bad.append(SkippedFile(shown(path), exc.reason))
            continue
        if isinstance(parsed, Excluded):
            excluded[parsed.key] += 1
        else:
            entries.append(parsed)
    return Scan(tuple(entries), tuple(bad), dict(sorted(excluded.items())))


def _is_empty(scan: Scan) -> bool:
    return not (scan.entries or scan.bad or scan.excluded)


def scan_files(
    root: Path,
    *,
    corpus: str,
    find: Callable[[Path], Iterable[Path]],
    parse: Callable[[Path], Entry | Excluded],
    looks_like_root: Callable[[Path], bool],
) -> Scan:
    """Scan the corpus folder ``root``: parse every file ``find(root)`` lists; a folder with nothing recognisable in
    it is an error (naming a sub-folder that ``looks_like_root``, if any)."""
    root = _require_dir(root, corpus)
    scan = _collect(find(root), parse)
    if _is_empty(scan):
        raise _no_files(root, corpus, looks_like_root)
    return scan


def scan_flat(root: Path, *, corpus: str, subfolder: str, parse: Callable[[Path], Entry]) -> Scan:
    """Scan ``root/<subfolder>/*.wav`` (or the wavs directly in ``root``), each file parsed by its name."""
    return scan_files(
        root,
        corpus=corpus,
        find=lambda folder: wav_files(folder / subfolder if (folder / subfolder).is_dir() else folder),
        parse=parse,
        looks_like_root=lambda d: (d / subfolder).is_dir(),
    )


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form (with ``..`` when outside it), independent of where both live."""
    return Path(os.path.relpath(path, base)).as_posix()
