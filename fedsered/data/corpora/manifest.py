"""A CSV manifest for any other corpus: one clip per row with ``path, speaker, emotion`` (and optionally
``split``)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from fedsered.data.corpora.scanning import CONVENTIONS, Entry, Scan, relative
from fedsered.errors import DataError

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
        utterance_id=relative(path.with_suffix(""), base),
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
