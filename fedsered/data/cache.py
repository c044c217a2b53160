"""On-disk cache of log-Mel features: one ``features-<key>.npz`` per corpus and feature settings.

The key is a blake2b hash of the corpus digest, every ``FeaturesConfig`` setting that changes the output (all but
``backend`` and ``cache_dir``), ``FEATURE_VERSION`` and the utterance ids in order. Files are written atomically,
so a reader sees a whole file or none. A file that does not load or validate is deleted with a warning and the
caller recomputes: the cache can never make a run fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np

from fedsered.config import FeaturesConfig
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError
from fedsered.io import atomic_write

FEATURE_VERSION = 1
"""Bump when the feature computation changes in a way the settings do not capture (invalidates every cache)."""

_EXCLUDED_SETTINGS = frozenset({"backend", "cache_dir", "normalise", "db_offset", "db_scale"})  # applied after
_ARRAYS = ("x", "y", "speaker", "utterance_id")


def cache_key(corpus_digest: str, cfg: FeaturesConfig, utterance_ids: Iterable[str] | np.ndarray) -> str:
    """The cache key of a corpus under feature settings.

    Args:
        corpus_digest: ``AudioCorpus.digest``.
        cfg: feature settings (``backend`` and ``cache_dir`` do not enter the key).
        utterance_ids: the utterance ids in corpus order.

    Returns:
        32 hex characters (blake2b, 16-byte digest).
    """
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _EXCLUDED_SETTINGS}
    head = {"corpus": corpus_digest, "settings": settings, "version": FEATURE_VERSION}
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(head, sort_keys=True).encode("utf-8"))
    for uid in utterance_ids:
        raw = str(uid).encode("utf-8")
        h.update(len(raw).to_bytes(8, "little") + raw)  # length-prefixed: no two id lists hash alike
    return h.hexdigest()


def save_cached(path: str | Path, fs: FeatureSet) -> Path:
    """Write ``fs`` atomically as an uncompressed ``.npz`` (x, y, speaker and utterance_id as str arrays).

    Args:
        path: destination file; parent folders are created.
        fs: the features to store.

    Returns:
        The path written.
    """
    arrays = {
        "x": fs.x,
        "y": fs.y,
        "speaker": np.asarray(fs.speaker, dtype=str),
        "utterance_id": np.asarray(fs.utterance_id, dtype=str),
    }

    def write(fh: IO[bytes]) -> None:
        np.savez(fh, **arrays)  # type: ignore[arg-type]

    return atomic_write(path, write)


def _read(path: Path, expected_shape: tuple[int, ...] | None) -> FeatureSet:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _ARRAYS if k not in data.files]
        if missing:
            raise DataError(f"missing arrays {missing}")
        x, y, speaker, uid = (data[k] for k in _ARRAYS)
    if expected_shape is not None and x.shape != tuple(expected_shape):
        raise DataError(f"x has shape {x.shape}, expected {tuple(expected_shape)}")
    if speaker.dtype.kind != "U" or uid.dtype.kind != "U":
        raise DataError("speaker and utterance_id must be str arrays")
    if x.dtype == np.float32 and not np.isfinite(x).all():
        raise DataError("x holds NaN or infinite values")
    return FeatureSet(x, y, speaker, uid)  # validates ndim, dtypes and lengths


def load_cached(path: str | Path, *, expected_shape: tuple[int, ...] | None = None) -> FeatureSet | None:
    """Load a cached ``FeatureSet``.

    Args:
        path: the ``.npz`` file.
        expected_shape: when given, ``x`` must have exactly this shape.

    Returns:
        The features; ``None`` when the file does not exist, or when it is corrupt or invalid — then it is deleted
        and a ``UserWarning`` says so.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return _read(path, expected_shape)
    except Exception as exc:  # any unreadable or invalid file is a cache miss, never a crash
        warnings.warn(f"feature cache {path} is corrupt ({exc.__class__.__name__}: {exc}); deleting it", stacklevel=2)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None


def store_or_warn(path: Path, save: Callable[[Path], object], *, what: str) -> None:
    """Write a cache entry with ``save(path)``; an unwritable cache is a warning, not a failure (the run goes on)."""
    try:
        save(path)
    except OSError as exc:
        warnings.warn(f"{what} {path} not written ({exc}); continuing without it", stacklevel=3)
