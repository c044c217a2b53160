"""IEMOCAP: ``SessionK/sentences/wav/<dialog>/<utt>.wav`` with labels read from the sessions'
``dialog/EmoEvaluation/<dialog>.txt`` files."""

from __future__ import annotations

import re
from pathlib import Path

from fedsered.data.corpora.scanning import BadNameError, Entry, Scan, scan_files, subdirs, wav_files

IEMOCAP_EMOTIONS = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated",
    "sur": "surprised", "fea": "fearful", "dis": "disgust", "oth": "other", "xxx": "unlabelled",
}  # fmt: skip

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


def _iemocap_wavs(root: Path) -> list[Path]:
    files: list[Path] = []
    for session in subdirs(root, _IEMOCAP_SESSION_DIR):
        wav_root = session / "sentences" / "wav"
        if wav_root.is_dir():
            files.extend(f for dialog in subdirs(wav_root) for f in wav_files(dialog))
    return files


def _parse_iemocap(path: Path, labels: _IemocapLabels) -> Entry:
    utt = path.stem
    match = _IEMOCAP_UTT.match(utt)
    if match is None or not utt.startswith(path.parent.name + "_"):
        raise BadNameError(f"file name does not match IEMOCAP <dialog>_[FM]NNN.wav in folder {path.parent.name}")
    txt = labels.file_for(path)
    table = labels.get(txt)
    if table is None:
        raise BadNameError(f"labels file missing or unreadable: {txt}")
    if utt not in table:
        raise BadNameError(f"no label for {utt} in {txt}")
    code = table[utt]
    if code not in IEMOCAP_EMOTIONS:
        raise BadNameError(f"unknown emotion label {code!r} in {txt} (expected one of {', '.join(IEMOCAP_EMOTIONS)})")
    session, gender = match.groups()
    return Entry(path=path, speaker=f"{session}_{gender}", emotion=IEMOCAP_EMOTIONS[code], utterance_id=utt)


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
    labels = _IemocapLabels()
    return scan_files(
        root,
        corpus="iemocap",
        find=_iemocap_wavs,
        parse=lambda p: _parse_iemocap(p, labels),
        looks_like_root=lambda d: bool(subdirs(d, _IEMOCAP_SESSION_DIR)),
    )
