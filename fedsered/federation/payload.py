"""The wire form of a shared set: arrays plus JSON metadata, its byte count, and its checks on arrival.

A client's reply is ``{"x": float32 [m, 1, mels, frames], "y": int64 [m]}`` and the set's metadata as one JSON string.
Flower serialises each array with ``numpy.save`` (``flwr.app.Array.data``); ``payload_bytes`` counts exactly those
bytes plus the UTF-8 metadata, so the direct path and the Flower path report the same ``bytes_up``. ``decode_set``
turns every defect (missing array, unreadable metadata, too large, wrong shape/dtype, non-finite values, labels out
of range) into one ``PayloadError`` naming the client; the size cap is checked before anything is decoded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedsered.distill.synthetic_set import SyntheticSet, validate_set
from fedsered.errors import PayloadError

ARRAY_KEYS: tuple[str, ...] = ("x", "y")
"""Names of the arrays of a shared set on the wire."""


def npy_bytes(a: np.ndarray) -> int:
    """Length of ``a`` serialised by ``numpy.save`` (what Flower puts on the wire for one array)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getbuffer().nbytes


def meta_json(s: SyntheticSet) -> str:
    """The set's metadata as compact JSON (raises ``PayloadError`` when it is not JSON-ready)."""
    try:
        return json.dumps(s.meta, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"client {s.meta.get('client_id')}: metadata is not JSON-serialisable ({exc})") from None


def payload_bytes(s: SyntheticSet) -> int:
    """Bytes a client uploads to share ``s``: both arrays as ``.npy`` plus the metadata JSON."""
    return npy_bytes(s.x) + npy_bytes(s.y) + len(meta_json(s).encode("utf-8"))


def state_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of a model update (every array as ``.npy``), as FedAvg uploads it."""
    return sum(npy_bytes(a) for a in arrays.values())


def decode_set(
    arrays: Mapping[str, Any],
    meta_text: str,
    *,
    to_numpy: Callable[[Any], np.ndarray],
    nbytes: Callable[[Any], int],
    n_classes: int,
    expected_shape: tuple[int, ...],
    max_bytes: int,
    source: str,
) -> SyntheticSet:
    """Check and decode a received set.

    Args:
        arrays: the reply's arrays by name (numpy arrays, or wire objects such as ``flwr.app.Array``).
        meta_text: the metadata JSON string.
        to_numpy: turns one wire object into a numpy array (identity for numpy input).
        nbytes: size of one wire object as transmitted, read without decoding it.
        n_classes: labels must lie in ``[0, n_classes)``.
        expected_shape: per-example shape ``(1, mels, frames)``.
        max_bytes: cap on the whole payload (arrays plus metadata), checked before decoding.
        source: the sender, named in errors (e.g. ``"client-3"``).

    Returns:
        The validated set.

    Raises:
        PayloadError: one line naming ``source`` and what was expected.
    """
    names = set(arrays)
    if names != set(ARRAY_KEYS):
        raise PayloadError(f"{source}: reply must hold exactly the arrays {list(ARRAY_KEYS)}, got {sorted(names)}")
    total = sum(int(nbytes(arrays[k])) for k in ARRAY_KEYS) + len(meta_text.encode("utf-8"))
    if total > max_bytes:
        raise PayloadError(f"{source}: payload of {total} bytes is above the cap of {max_bytes} bytes")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{source}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PayloadError(f"{source}: metadata must be a JSON object, got {type(meta).__name__}")
    try:
        x, y = (to_numpy(arrays[k]) for k in ARRAY_KEYS)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise PayloadError(f"{source}: undecodable array ({exc.__class__.__name__}: {exc})") from None
    s = SyntheticSet(x=x, y=y, meta=meta)
    validate_set(s, n_classes=n_classes, expected_shape=expected_shape, max_bytes=max_bytes, source=source)
    return s


def decode_local(
    s: SyntheticSet, *, n_classes: int, expected_shape: tuple[int, ...], max_bytes: int, source: str
) -> SyntheticSet:
    """``decode_set`` for a set that never left the process (the direct path applies the same checks)."""
    return decode_set(
        {"x": s.x, "y": s.y}, meta_json(s), to_numpy=np.asarray, nbytes=npy_bytes, n_classes=n_classes,
        expected_shape=expected_shape, max_bytes=max_bytes, source=source,
    )  # fmt: skip
