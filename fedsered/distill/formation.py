"""Multi-formation along the time axis: ``f`` training examples decoded from every stored example (same bytes).

IDC (Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization", ICML 2022; their speech
experiments included) stores a synthetic set at the full resolution but trains on ``f`` lower-resolution pieces of
each stored example, each resized back: the bytes of ``m`` examples buy ``m·f`` training examples, each with less
detail. fedsered splits along time only (the frequency axis carries formants and pitch, which a stretch would move):

* ``decode``: a stored ``[1, mels, T]`` example → ``f`` examples, segment ``i`` being frames
  ``[i·T//f, (i+1)·T//f)`` stretched back to ``T`` frames by linear interpolation (differentiable; what the matching
  loss, the server and every evaluation train on);
* ``pack``: ``f`` real examples of a class → one stored example, each shrunk to ``T//f`` frames by averaging
  (``adaptive_avg_pool1d``) and laid side by side (zero frames after them when ``f`` does not divide ``T``) — the
  real start of a multi-formation set and the ``random`` method's packed selection.

The factor travels in the set's metadata (``meta["formation"]``, absent = 1); ``factor`` reads and checks it, since a
client's set is untrusted (``validate_set`` calls it), and ``training_examples`` is the one place a set becomes the
examples a model is trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fedsered.errors import PayloadError

MAX_FORMATION = 4
"""Largest factor accepted (a segment of a 3 s, 94-frame input is then 23 frames, ~0.7 s)."""


def decode(x: torch.Tensor, f: int) -> torch.Tensor:
    """``[m, 1, mels, T]`` stored examples → ``[m·f, 1, mels, T]`` (stored example ``j`` gives rows ``j·f`` to
    ``j·f + f - 1``, in time order)."""
    if f == 1:
        return x
    m, _, mels, t = x.shape
    seg = t // f
    parts = x[..., : seg * f].reshape(m, mels, f, seg).permute(0, 2, 1, 3).reshape(m * f, mels, seg)
    return F.interpolate(parts, size=t, mode="linear", align_corners=False).reshape(m * f, 1, mels, t)


def decode_labels(y: np.ndarray, f: int) -> np.ndarray:
    """The labels of ``decode``'s rows."""
    return np.repeat(y, f)


def pack(x: np.ndarray, y: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack every ``f`` consecutive examples of a class into one stored example (module docstring).

    Args:
        x: ``[n, 1, mels, T]`` float32, grouped as wanted (consecutive rows of a class are packed together).
        y: ``[n]`` int64 labels.
        f: the factor.

    Returns:
        ``(x_stored [Σ_c ⌈n_c/f⌉, 1, mels, T] float32, y_stored)``, class by class in label order; a class's last
        group short of ``f`` examples is filled by cycling that class's examples from its first.
    """
    if f == 1:
        return x, y
    _, _, mels, t = x.shape
    seg = t // f
    xs, ys = [], []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        groups = -(-len(rows) // f)
        take = rows[np.arange(groups * f) % len(rows)]
        small = F.adaptive_avg_pool1d(torch.from_numpy(np.ascontiguousarray(x[take, 0])), seg)  # [g·f, mels, seg]
        stored = small.reshape(groups, f, mels, seg).permute(0, 2, 1, 3).reshape(groups, mels, f * seg)
        xs.append(F.pad(stored, (0, t - f * seg)).unsqueeze(1).numpy().astype(np.float32))
        ys.append(np.full(groups, c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def factor(meta: dict[str, Any], *, source: str = "set") -> int:
    """The set's formation factor (``meta["formation"]``, default 1).

    Raises:
        PayloadError: not an integer in ``[1, MAX_FORMATION]`` (one line naming ``source``).
    """
    f = meta.get("formation", 1)
    if not isinstance(f, int) or isinstance(f, bool) or not 1 <= f <= MAX_FORMATION:
        raise PayloadError(f"{source}: metadata 'formation' must be an integer in [1, {MAX_FORMATION}], got {f!r}")
    return f


def training_examples(x: np.ndarray, y: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The examples a model trains on from a stored set: decoded when its ``formation`` is above 1."""
    f = factor(meta)
    if f == 1:
        return x, y
    with torch.no_grad():
        decoded = decode(torch.from_numpy(np.ascontiguousarray(x)), f).numpy().astype(np.float32)
    return decoded, decode_labels(y, f)
