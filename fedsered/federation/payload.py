"""The wire form of a shared set: arrays plus JSON metadata, its byte count, and its checks on arrival.

A client's reply is the set's arrays in the run's ``federation.set_encoding`` (``fedsered.federation.encoding``:
``{"x": float32 [m, 1, mels, frames], "y": int64 [m]}`` under ``float32``; float16 ``x``, or uint8 ``x`` with
per-example ``scale`` and ``zero``, and uint8 ``y`` under ``float16``/``int8``) and the set's metadata as one JSON
string (recording any encoding but ``float32``). ``wire_form`` builds it; Flower serialises each array with
``numpy.save`` (``flwr.app.Array.data``); ``payload_bytes`` counts exactly those bytes plus the UTF-8 metadata, so the
direct path and the Flower path report the same ``bytes_up`` whatever the encoding. ``decode_set`` turns every defect
(missing or extra array, unreadable metadata, too large, an encoding other than the server's, wrong shape/dtype,
non-finite values or quantisation parameters, labels out of range) into one ``PayloadError`` naming the client; the
size cap is checked on the upload before anything is decoded, and the decoded set is float32 whatever travelled.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedsered.distill.synthetic_set import SyntheticSet, validate_set
from fedsered.errors import PayloadError
from fedsered.federation.encoding import (
    check_names,
    decode_arrays,
    encode_set,
    recorded_encoding,
    wire_keys,
    with_encoding,
)


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


def wire_form(s: SyntheticSet, *, encoding: str) -> tuple[dict[str, np.ndarray], str]:
    """What a client uploads to share ``s`` under ``encoding``: the encoded arrays and the metadata JSON (recording
    the encoding).

    Raises:
        PayloadError: the set cannot be encoded (``fedsered.federation.encoding.encode_set``) or its metadata is not
            JSON-ready.
    """
    meta = with_encoding(s.meta, encoding=encoding)
    arrays = encode_set(s.x, s.y, encoding=encoding, source=f"client {s.meta.get('client_id')}")
    return arrays, meta_json(SyntheticSet(x=s.x, y=s.y, meta=meta))


def payload_bytes(s: SyntheticSet, *, encoding: str | None = None) -> int:
    """Bytes a client uploads to share ``s``: every array of its wire form as ``.npy`` plus the metadata JSON.

    Args:
        s: the set (a client's, or one the server decoded: its metadata records how it travelled).
        encoding: the wire encoding; ``None``: the one ``s``'s metadata records (``float32`` when none).
    """
    enc = str(recorded_encoding(s.meta)) if encoding is None else encoding
    arrays, meta = wire_form(s, encoding=enc)
    return sum(npy_bytes(a) for a in arrays.values()) + len(meta.encode("utf-8"))


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
    encoding: str = "float32",
) -> SyntheticSet:
    """Check and decode a received set.

    Args:
        arrays: the reply's arrays by name (numpy arrays, or wire objects such as ``flwr.app.Array``).
        meta_text: the metadata JSON string.
        to_numpy: turns one wire object into a numpy array (identity for numpy input).
        nbytes: size of one wire object as transmitted, read without decoding it.
        n_classes: labels must lie in ``[0, n_classes)``.
        expected_shape: per-example shape ``(1, mels, frames)``.
        max_bytes: cap on the whole payload as uploaded (arrays plus metadata), checked before decoding.
        source: the sender, named in errors (e.g. ``"client-3"``).
        encoding: the run's ``federation.set_encoding``: the arrays, their dtypes and the encoding the metadata
            records must be that encoding's.

    Returns:
        The validated set, float32 ``x`` and int64 ``y`` whatever the encoding (its metadata as sent).

    Raises:
        PayloadError: one line naming ``source`` and what was expected.
    """
    check_names(arrays, encoding=encoding, source=source)
    keys = wire_keys(encoding)
    total = sum(int(nbytes(arrays[k])) for k in keys) + len(meta_text.encode("utf-8"))
    if total > max_bytes:
        raise PayloadError(f"{source}: payload of {total} bytes is above the cap of {max_bytes} bytes")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{source}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PayloadError(f"{source}: metadata must be a JSON object, got {type(meta).__name__}")
    sent = recorded_encoding(meta)
    if sent != encoding:
        raise PayloadError(
            f"{source}: set records encoding {str(sent)[:40]!r}, the server expects federation.set_encoding={encoding}"
        )
    try:
        received = {k: to_numpy(arrays[k]) for k in keys}
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise PayloadError(f"{source}: undecodable array ({exc.__class__.__name__}: {exc})") from None
    x, y = decode_arrays(received, encoding=encoding, source=source)
    s = SyntheticSet(x=x, y=y, meta=meta)
    # the cap bounds the upload (checked above); decoded, a compact encoding is up to 4x (x) and 8x (y) larger
    validate_set(s, n_classes=n_classes, expected_shape=expected_shape, max_bytes=None, source=source)
    return s


def decode_local(
    s: SyntheticSet,
    *,
    n_classes: int,
    expected_shape: tuple[int, ...],
    max_bytes: int,
    source: str,
    encoding: str = "float32",
) -> SyntheticSet:
    """``s`` as the server sees it after a trip under ``encoding`` that never left the process: ``wire_form`` then
    ``decode_set`` with the same checks."""
    arrays, meta = wire_form(s, encoding=encoding)
    return decode_set(
        arrays, meta, to_numpy=np.asarray, nbytes=npy_bytes, n_classes=n_classes, expected_shape=expected_shape,
        max_bytes=max_bytes, source=source, encoding=encoding,
    )  # fmt: skip
