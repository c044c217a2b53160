"""The synthetic set: the only thing a client shares. Its file format, and its validation on every load and arrival.

On disk a set is two files with one stem: ``<stem>.npz`` (arrays ``x`` and ``y``, no pickles, and the metadata as its
member ``meta.json``) and ``<stem>.json`` (the same metadata, readable). They are one unit: ``save_set`` serialises the
metadata before touching either file, removes the old ``.json``, then writes the ``.npz`` and the ``.json`` atomically,
so an interruption leaves a set without its ``.json`` (an error on load), never an ``.npz`` beside the metadata of
another set; ``load_set`` refuses a ``.json`` that differs from the copy inside the ``.npz`` (sets written before the
copy existed are read from their ``.json`` alone). ``load_set`` and ``validate_set`` turn every defect (missing or
corrupt file, wrong dtype or shape, non-finite values, labels out of range, missing metadata, too large) into one
``PayloadError`` that names the file and what was expected — never a traceback.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsered import __version__
from fedsered.errors import PayloadError
from fedsered.io import atomic_write_bytes

REQUIRED_META: tuple[str, ...] = ("method", "ipc", "n_classes", "features", "init", "client_id", "privacy", "version")
"""Metadata keys every synthetic set carries (see ``make_meta``)."""

META_MEMBER = "meta.json"
"""The member of a set's ``.npz`` that holds its metadata (UTF-8 JSON, byte for byte the ``.json`` beside it)."""

MAX_META_BYTES = 16 * 2**20
"""Size cap of the metadata inside a set's ``.npz`` (loss histories included it is kilobytes)."""

DEFAULT_MAX_BYTES = 256 * 2**20
"""Size cap of ``x`` plus ``y`` when the caller gives none (256 MiB: far above any sensible synthetic set)."""


@dataclass(frozen=True)
class SyntheticSet:
    """A distilled (or selected) set of labelled log-Mel examples and where it came from.

    Attributes:
        x: ``[m, 1, mels, frames]`` float32.
        y: ``[m]`` int64 labels.
        meta: JSON-ready metadata: at least ``REQUIRED_META`` — method, ipc, n_classes, features (feature settings),
            init (``"theta0:<init_seed>"``, ``"custom:<digest>"`` or ``"random"``), client_id (or ``None``),
            privacy (``None`` unless a DP release covers the set), version (``"fedsered <version>"``).
    """

    x: np.ndarray
    y: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(1, mels, frames)``."""
        return tuple(int(d) for d in self.x.shape[1:])


def make_meta(
    *,
    method: str,
    ipc: int,
    n_classes: int,
    features: dict[str, Any] | None,
    init: str,
    client_id: str | None,
    privacy: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Metadata with every required key (``extra`` keys follow them).

    Args:
        method: distillation method name.
        ipc: requested examples per class.
        n_classes: number of classes of the task (not only those present).
        features: the feature settings the set lives in (e.g. the ``features`` config section as a dict).
        init: initialisation id (``"theta0:<init_seed>"``, ``"custom:<digest>"`` or ``"random"``).
        client_id: the producing client, or ``None`` (centralised).
        privacy: the DP release covering the set, or ``None``.
        **extra: further JSON-ready entries (loss history, per-class counts, timings).

    Returns:
        The metadata dict.
    """
    meta: dict[str, Any] = {
        "method": method,
        "ipc": int(ipc),
        "n_classes": int(n_classes),
        "features": dict(features or {}),
        "init": init,
        "client_id": client_id,
        "privacy": privacy,
        "version": f"fedsered {__version__}",
    }
    meta.update(extra)
    return meta


def save_set(path_stem: str | Path, s: SyntheticSet) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` (x, y, meta) and ``<stem>.json`` (meta) as one unit (module docstring).

    The set is validated and its metadata serialised first: a set that cannot be saved leaves the files of the
    previous one at ``path_stem`` untouched.

    Args:
        path_stem: destination without suffix (parent folders are created).
        s: the set.

    Returns:
        The two paths written (npz, json).

    Raises:
        PayloadError: the set is invalid or its metadata is not JSON (NaN and infinity included).
    """
    stem = Path(path_stem)
    npz_path, json_path = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
    validate_set(s, n_classes=None, expected_shape=None, max_bytes=None, source=str(stem))
    try:
        meta = (json.dumps(s.meta, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{json_path}: metadata is not JSON-serialisable ({exc}); nothing was written") from None
    buf = io.BytesIO()
    np.savez(buf, x=np.ascontiguousarray(s.x), y=np.ascontiguousarray(s.y))
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(META_MEMBER, meta)
    json_path.unlink(missing_ok=True)  # never beside an .npz it does not describe, even for a moment
    atomic_write_bytes(npz_path, buf.getvalue())
    atomic_write_bytes(json_path, meta)
    return npz_path, json_path


def _npy_header(zf: zipfile.ZipFile, name: str, source: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of one array in an npz, read from its header without loading the data."""
    try:
        with zf.open(name) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PayloadError(f"{source}: array {name!r} has an unreadable header ({exc})") from None
    return tuple(int(d) for d in shape), np.dtype(dtype)


def _read_arrays(npz_path: Path, *, max_bytes: int) -> tuple[np.ndarray, np.ndarray, bytes | None]:
    """``x``, ``y`` and the metadata copy (``None`` in sets written before it) from an npz, after checking names,
    header dtypes and sizes (no pickles, no zip bombs)."""
    if not npz_path.is_file():
        raise PayloadError(f"{npz_path}: file not found (a synthetic set needs <stem>.npz and <stem>.json)")
    try:
        zf = zipfile.ZipFile(npz_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PayloadError(f"{npz_path}: not a readable .npz archive ({exc})") from None
    with zf:
        names = set(zf.namelist())
        meta: bytes | None = None
        if META_MEMBER in names:
            names.discard(META_MEMBER)
            if zf.getinfo(META_MEMBER).file_size > MAX_META_BYTES:
                raise PayloadError(f"{npz_path}: its {META_MEMBER} is over {MAX_META_BYTES} bytes")
            try:
                meta = zf.read(META_MEMBER)
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise PayloadError(f"{npz_path}: corrupt {META_MEMBER} ({exc.__class__.__name__}: {exc})") from None
        if names != {"x.npy", "y.npy"}:
            raise PayloadError(f"{npz_path}: expected exactly the arrays x and y, found {sorted(names)}")
        total = 0
        for name in ("x.npy", "y.npy"):
            shape, dtype = _npy_header(zf, name, npz_path)
            if dtype.hasobject:
                raise PayloadError(f"{npz_path}: array {name[:-4]!r} holds Python objects; expected numbers")
            total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if total > max_bytes:
            raise PayloadError(f"{npz_path}: arrays take {total} bytes, above the cap of {max_bytes}")
        try:
            arrays = {name[:-4]: np.load(io.BytesIO(zf.read(name)), allow_pickle=False) for name in ("x.npy", "y.npy")}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise PayloadError(f"{npz_path}: corrupt array data ({exc.__class__.__name__}: {exc})") from None
    return arrays["x"], arrays["y"], meta


def _parse_meta(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _read_meta(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise PayloadError(f"{json_path}: file not found (a synthetic set needs <stem>.npz and <stem>.json)")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{json_path}: metadata is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PayloadError(f"{json_path}: metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def load_set(
    path_stem: str | Path,
    *,
    n_classes: int | None = None,
    expected_shape: tuple[int, ...] | None = None,
    max_bytes: int | None = None,
) -> SyntheticSet:
    """Read and validate a set written by ``save_set``.

    Args:
        path_stem: the path without ``.npz``/``.json``.
        n_classes: when given, labels must lie in ``[0, n_classes)`` and ``meta["n_classes"]`` must equal it.
        expected_shape: when given, each example must have this shape (``(1, mels, frames)``).
        max_bytes: cap on the size of ``x`` plus ``y`` (default ``DEFAULT_MAX_BYTES``), checked before loading.

    Returns:
        The validated set.

    Raises:
        PayloadError: naming the file and what was expected.
    """
    stem = Path(path_stem)
    npz_path, json_path = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
    cap = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    x, y, inner = _read_arrays(npz_path, max_bytes=cap)
    meta = _read_meta(json_path)
    s = SyntheticSet(x=x, y=y, meta=meta)
    _check_meta(meta, n_classes=n_classes, source=str(json_path))
    if inner is not None and _parse_meta(inner) != meta:
        raise PayloadError(
            f"{json_path}: metadata differs from the copy inside {npz_path.name} (a file left by another run?); "
            "save the set again"
        )
    _check_arrays(s, n_classes=n_classes, expected_shape=expected_shape, max_bytes=cap, source=str(npz_path))
    return s


def _check_meta(meta: dict[str, Any], *, n_classes: int | None, source: str) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise PayloadError(f"{source}: metadata lacks required keys {missing} (required: {list(REQUIRED_META)})")
    if not isinstance(meta["method"], str) or not isinstance(meta["init"], str):
        raise PayloadError(f"{source}: metadata 'method' and 'init' must be strings")
    for key in ("ipc", "n_classes"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 1:
            raise PayloadError(f"{source}: metadata {key!r} must be a positive integer, got {meta[key]!r}")
    if n_classes is not None and meta["n_classes"] != n_classes:
        raise PayloadError(f"{source}: metadata says n_classes={meta['n_classes']}, expected {n_classes}")
    if not isinstance(meta["features"], dict):
        raise PayloadError(f"{source}: metadata 'features' must be an object (the feature settings)")
    from fedsered.distill.formation import factor  # formation imports torch; a set file alone does not need it

    factor(meta, source=source)


def validate_set(
    s: SyntheticSet,
    *,
    n_classes: int | None,
    expected_shape: tuple[int, ...] | None,
    max_bytes: int | None,
    source: str,
) -> None:
    """Check a set's arrays and metadata (on load, and by the server on arrival).

    Args:
        s: the set.
        n_classes: labels must lie in ``[0, n_classes)`` and ``meta["n_classes"]`` must equal it (``None``: labels
            must lie in ``[0, meta["n_classes"])``).
        expected_shape: required per-example shape ``(1, mels, frames)``, or ``None``.
        max_bytes: cap on ``x.nbytes + y.nbytes``, or ``None`` for no cap.
        source: where the set came from (a file, a client id), named in errors.

    Raises:
        PayloadError: one line naming ``source`` and what was expected.
    """
    if not isinstance(s.meta, dict):
        raise PayloadError(f"{source}: meta must be a dict")
    _check_meta(s.meta, n_classes=n_classes, source=source)
    _check_arrays(s, n_classes=n_classes, expected_shape=expected_shape, max_bytes=max_bytes, source=source)


def _check_arrays(
    s: SyntheticSet,
    *,
    n_classes: int | None,
    expected_shape: tuple[int, ...] | None,
    max_bytes: int | None,
    source: str,
) -> None:
    x, y = s.x, s.y
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise PayloadError(f"{source}: x and y must be numpy arrays")
    if x.dtype != np.float32 or x.ndim != 4 or x.shape[1] != 1:
        raise PayloadError(f"{source}: x must be float32 [m, 1, mels, frames], got {x.dtype} {list(x.shape)}")
    if y.dtype != np.int64 or y.ndim != 1:
        raise PayloadError(f"{source}: y must be int64 [m], got {y.dtype} {list(y.shape)}")
    if len(x) != len(y):
        raise PayloadError(f"{source}: x has {len(x)} examples but y has {len(y)} labels")
    if len(x) == 0:
        raise PayloadError(f"{source}: the set is empty")
    if max_bytes is not None and x.nbytes + y.nbytes > max_bytes:
        raise PayloadError(f"{source}: arrays take {x.nbytes + y.nbytes} bytes, above the cap of {max_bytes}")
    if expected_shape is not None and tuple(x.shape[1:]) != tuple(expected_shape):
        raise PayloadError(f"{source}: examples have shape {list(x.shape[1:])}, expected {list(expected_shape)}")
    if not np.isfinite(x).all():
        raise PayloadError(f"{source}: x holds {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf)")
    bound = n_classes if n_classes is not None else s.meta.get("n_classes")
    if isinstance(bound, int) and not isinstance(bound, bool):
        bad = (y < 0) | (y >= bound)
        if bad.any():
            raise PayloadError(f"{source}: {int(bad.sum())} labels outside [0, {bound}) (e.g. {int(y[bad][0])})")
    elif (y < 0).any():
        raise PayloadError(f"{source}: negative labels")
