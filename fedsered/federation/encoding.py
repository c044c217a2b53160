"""How a shared set's arrays travel under ``federation.set_encoding``, and how the server turns them back.

This module owns the wire arrays of a set in each encoding (names, dtypes, shapes) and the one encoder and decoder
of them; ``fedsered.federation.payload`` builds the upload from it (client) and checks arrivals with it (server), for
the in-process and the Flower transport alike. Every shared set of a run (synthetic, random subset, raw sharing)
goes in the run's one encoding, so byte counts compare like for like.

- ``float32``: ``x`` float32 ``[m, 1, mels, frames]`` and ``y`` int64 ``[m]`` — the wire form before this setting
  existed, byte for byte (its metadata records no encoding).
- ``float16``: ``x`` float16 (half the bytes; relative error at most 2⁻¹¹ for |x| ≥ 2⁻¹⁴, absolute at most 2⁻²⁵
  below). A value beyond float16's largest finite value (65504) is refused with a ``PayloadError``, not clipped:
  log-Mel features are O(1) once normalised and O(100) in dB, so such a value is a defect of the set, and clipping
  would ship a set other than the one the client made without anything on the wire saying so.
- ``int8``: per-example affine quantisation: ``scale = (max − min) / 255`` and ``zero = min`` per example, shipped
  as float32 arrays ``scale`` and ``zero`` ``[m]``, and ``x`` as uint8 ``round((x − zero) / scale)``; decoded
  ``zero + q · scale`` in float32 (error at most ``scale / 2`` per example, plus float32 rounding). A constant
  example (``scale == 0``) ships ``q = 0`` and decodes exactly to ``zero``.

Under ``float16`` and ``int8`` the labels ``y`` travel as uint8 ``[m]`` (8 bytes per example fewer; labels must lie
in 0..255, far above any SER task's class count; the server still checks them against its ``n_classes``). The
server's view after ``decode_arrays`` is always float32 ``x`` and int64 ``y``: aggregation and training never see
the encoding.

Privacy: the encoding is a deterministic function of the set a client releases, applied after any DP release — it is
post-processing and costs no privacy budget; the client's ledger records nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import numpy as np

from fedsered.config import SetEncoding
from fedsered.errors import PayloadError

ENCODINGS: tuple[str, ...] = get_args(SetEncoding)
"""Every value of ``federation.set_encoding``."""

ENCODING_KEY = "encoding"
"""The metadata key recording a set's wire encoding (absent: ``float32``)."""

FLOAT16_MAX = float(np.finfo(np.float16).max)
"""Largest finite float16 (65504): ``float16`` refuses a set reaching beyond it."""

WIRE_DTYPES: dict[str, dict[str, np.dtype[Any]]] = {
    "float32": {"x": np.dtype(np.float32), "y": np.dtype(np.int64)},
    "float16": {"x": np.dtype(np.float16), "y": np.dtype(np.uint8)},
    "int8": {"x": np.dtype(np.uint8), "y": np.dtype(np.uint8), "scale": np.dtype(np.float32),
             "zero": np.dtype(np.float32)},
}  # fmt: skip
"""The arrays of a shared set on the wire, by encoding: name → dtype (``x`` is ``[m, 1, mels, frames]``, the
others ``[m]``)."""

_LEVELS = 255  # uint8 steps between an example's min and max


def wire_keys(encoding: str) -> tuple[str, ...]:
    """Names of the arrays a set ships under ``encoding`` (``x``, ``y``, then ``scale``, ``zero`` for int8)."""
    return tuple(_dtypes(encoding))


def recorded_encoding(meta: Mapping[str, Any]) -> Any:
    """The encoding a set's metadata records (``float32`` when it records none); not checked."""
    return meta.get(ENCODING_KEY, "float32")


def with_encoding(meta: Mapping[str, Any], *, encoding: str) -> dict[str, Any]:
    """``meta`` recording ``encoding`` (``float32`` records nothing, keeping that wire form byte-identical)."""
    out = {k: v for k, v in meta.items() if k != ENCODING_KEY}
    if encoding != "float32":
        out[ENCODING_KEY] = encoding
    return out


def check_names(arrays: Mapping[str, Any], *, encoding: str, source: str) -> None:
    """``arrays`` hold exactly the arrays of ``encoding`` (``PayloadError`` naming ``source`` and them otherwise)."""
    expected = wire_keys(encoding)
    if set(arrays) != set(expected):
        raise PayloadError(
            f"{source}: reply must hold exactly the arrays {list(expected)} (federation.set_encoding={encoding}), "
            f"got {sorted(arrays)}"
        )


def _dtypes(encoding: str) -> dict[str, np.dtype[Any]]:
    if encoding not in WIRE_DTYPES:
        raise PayloadError(f"unknown set encoding {str(encoding)[:40]!r}; expected one of {', '.join(ENCODINGS)}")
    return WIRE_DTYPES[encoding]


def encode_set(x: np.ndarray, y: np.ndarray, *, encoding: str, source: str = "set") -> dict[str, np.ndarray]:
    """The arrays a client uploads for a set ``x`` (float32 ``[m, 1, mels, frames]``), ``y`` (int64 ``[m]``).

    Args:
        x, y: the set's examples and labels (validated: finite, labels in range).
        encoding: one of ``ENCODINGS`` (module docstring).
        source: who encodes, named in errors (e.g. ``"client client-3"``).

    Returns:
        Name → array, the names of ``wire_keys(encoding)`` in that order.

    Raises:
        PayloadError: an unknown encoding, non-finite ``x``, a value beyond float16's range under ``float16``,
            labels outside 0..255 under ``float16``/``int8``.
    """
    dtypes = _dtypes(encoding)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if encoding == "float32":
        return {"x": x, "y": np.ascontiguousarray(y, dtype=np.int64)}
    if not np.isfinite(x).all():
        raise PayloadError(f"{source}: x holds non-finite values; a set must be finite to be encoded")
    y = np.asarray(y)
    if y.size and (int(y.min()) < 0 or int(y.max()) > np.iinfo(np.uint8).max):
        raise PayloadError(f"{source}: labels must lie in 0..255 to ship as uint8 under set_encoding={encoding}")
    labels = y.astype(dtypes["y"])
    if encoding == "float16":
        peak = float(np.abs(x).max(initial=0.0))
        if peak > FLOAT16_MAX:
            raise PayloadError(
                f"{source}: |x| reaches {peak:.6g}, beyond float16's largest finite value {FLOAT16_MAX:g}; "
                "use federation.set_encoding=float32 or int8"
            )
        return {"x": x.astype(np.float16), "y": labels}
    q, scale, zero = quantise(x)
    return {"x": q, "y": labels, "scale": scale, "zero": zero}


def quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example affine uint8 quantisation of finite float32 ``x`` ``[m, ...]``: ``(q, scale, zero)``.

    ``scale`` and ``zero`` are float32 ``[m]``; ``q`` is computed with the float32 ``scale`` that ships, so that
    ``zero + q · scale`` is within ``scale / 2`` of ``x`` (in exact arithmetic).
    """
    flat = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
    lo, hi = flat.min(axis=1, initial=np.inf), flat.max(axis=1, initial=-np.inf)
    scale = ((hi - lo) / _LEVELS).astype(np.float32)
    zero = lo.astype(np.float32)  # exact: lo is a float32 value
    step = scale.astype(np.float64)[:, None]
    steps = np.divide(flat - lo[:, None], step, out=np.zeros_like(flat), where=step > 0)  # constant example: 0
    q = np.clip(np.rint(steps), 0, _LEVELS).astype(np.uint8).reshape(x.shape)
    return q, scale, zero


def decode_arrays(arrays: Mapping[str, Any], *, encoding: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The server's float32 ``x`` and int64 ``y`` from a set's arrays as received (numpy) under ``encoding``.

    Checks what the encoding fixes — names, dtypes, ``x`` 4-dimensional and every other array ``[m]``, finite,
    non-negative ``scale`` and finite ``zero`` — and leaves shape, finiteness and label range of the decoded set to
    ``fedsered.distill.synthetic_set.validate_set``.

    Raises:
        PayloadError: naming ``source``, the array, and the dtype and shape expected under ``encoding``.
    """
    dtypes = _dtypes(encoding)
    check_names(arrays, encoding=encoding, source=source)
    got = {name: arrays[name] for name in dtypes}
    m = _check_dtypes(got, dtypes=dtypes, encoding=encoding, source=source)
    x, y = got["x"], got["y"].astype(np.int64)
    if encoding == "float32":
        return x, y
    if encoding == "float16":
        return x.astype(np.float32), y
    scale, zero = got["scale"], got["zero"]
    if not (np.isfinite(scale).all() and np.isfinite(zero).all()) or (scale < 0).any():
        raise PayloadError(f"{source}: int8 scale must be finite and non-negative and zero finite (one per example)")
    out = x.astype(np.float32)
    shape = (m,) + (1,) * (x.ndim - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is non-finite x: validate_set names it
        out *= scale.reshape(shape)
        out += zero.reshape(shape)
    return out, y


def _check_dtypes(arrays: Mapping[str, Any], *, dtypes: Mapping[str, np.dtype[Any]], encoding: str,
                  source: str) -> int:  # fmt: skip
    """Every array a numpy array of its encoding's dtype, ``x`` 4-d, the others ``[m]``; returns ``m``."""
    x = arrays["x"]
    m = int(x.shape[0]) if isinstance(x, np.ndarray) and x.ndim == 4 else -1
    for name, dtype in dtypes.items():
        a = arrays[name]
        want = "[m, 1, mels, frames]" if name == "x" else f"[{m}] (one per example of x)"
        ok = isinstance(a, np.ndarray) and a.dtype == dtype and (a.ndim == 4 if name == "x" else a.shape == (m,))
        if not ok:
            got = f"{a.dtype} {list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            raise PayloadError(
                f"{source}: {name} must be {dtype} {want} under federation.set_encoding={encoding}, got {got}"
            )
    return m
