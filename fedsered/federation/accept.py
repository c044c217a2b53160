"""The server's checks on what a client sent: nothing in a reply is used before it passed them.

``accept_set`` decodes a shared set from the run's ``federation.set_encoding`` to float32 (size cap before decoding,
then the encoding's arrays and dtypes, shape, finiteness, labels, the claimed client id); ``accept_statistics`` checks
merf statistics (names, float32 shapes, finiteness, the claimed client id); ``accept_update`` checks a
model update against θ₀'s names, shapes and dtypes, finiteness, and its metadata (an example count within
``federation.max_client_examples`` when FedAvg weights by it; the DP release of a DP-FedAvg round). ``release_privacy``
turns a reply's privacy object into the server's own: its releases parsed and ε recomputed by the accountant from them,
never the ε the client wrote. ``reply_metric`` reads a client's measurement (a finite, non-negative number, else
``None``). Every defect is one ``PayloadError`` naming the client.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.errors import PayloadError
from fedsered.federation.payload import decode_set
from fedsered.federation.protocol import Reply
from fedsered.privacy.accountant import privacy_object, releases_of
from fedsered.privacy.mechanism import reproducible_note


def reply_metric(metrics: Mapping[str, Any], key: str) -> float | None:
    """A client's measurement ``key``, or ``None`` when missing or not a finite, non-negative number."""
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _meta(reply: Reply) -> dict[str, Any]:
    try:
        meta = json.loads(reply.meta)
    except (json.JSONDecodeError, TypeError) as exc:
        raise PayloadError(f"{reply.client_id}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PayloadError(f"{reply.client_id}: metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def release_privacy(obj: Any, *, source: str) -> dict[str, Any] | None:
    """The server's privacy object for a reply's ``privacy`` entry (``None`` for none).

    Raises:
        PayloadError: not an object with ``releases`` (a non-empty list of valid releases), a ``delta`` in (0, 1)
            and an ``accountant`` of ``rdp``/``prv``.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("releases"), list) or not obj["releases"]:
        raise PayloadError(f"{source}: privacy must be an object with a non-empty 'releases' list")
    delta, accountant = obj.get("delta"), obj.get("accountant")
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.0 < float(delta) < 1.0:
        raise PayloadError(f"{source}: privacy.delta must be a number in (0, 1), got {str(delta)[:40]!r}")
    if accountant not in ("rdp", "prv"):
        raise PayloadError(f"{source}: privacy.accountant must be rdp or prv, got {str(accountant)[:40]!r}")
    out = privacy_object(releases_of(obj, source=f"{source}: privacy"), delta=float(delta), accountant=accountant)
    out.update(reproducible_note(obj.get("reproducible_noise") is True))  # the client's word that it is weaker
    return out


def compose_privacy(previous: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """A client's privacy object over all its releases so far: ``previous`` (or ``None``) composed with ``new``."""
    if new is None:
        return previous
    releases = (releases_of(previous) if previous is not None else []) + releases_of(new)
    out = privacy_object(releases, delta=float(new["delta"]), accountant=str(new["accountant"]))
    out.update(reproducible_note(any(p is not None and p.get("reproducible_noise") is True for p in (previous, new))))
    return out


def accept_set(
    reply: Reply,
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    max_bytes: int,
    max_per_class: int | None = None,
    max_examples: int | None = None,
    encoding: str = "float32",
) -> tuple[SyntheticSet, dict[str, Any] | None]:
    """A shared set and the server's privacy object for it.

    Args:
        reply: the client's reply.
        n_classes: classes of the task.
        input_shape: the shape every example must have.
        max_bytes: cap on the reply, checked before decoding.
        max_per_class: most examples of one class the task asked for (``federation.ipc`` for synthetic and
            selected sets); a set with more is not the set that was asked for (it would outweigh the others in
            the union).
        max_examples: most examples in all (``federation.max_client_examples`` for raw sharing).
        encoding: the run's ``federation.set_encoding`` (the set is decoded to float32 from it).

    Raises:
        PayloadError: see ``fedsered.federation.payload.decode_set``; a set claiming another client's id; more
            examples (of a class, or in all) than the task allows.
    """
    s = decode_set(
        reply.arrays, reply.meta, to_numpy=reply.to_numpy, nbytes=reply.size, n_classes=n_classes,
        expected_shape=input_shape, max_bytes=max_bytes, source=reply.client_id, encoding=encoding,
    )  # fmt: skip
    if s.meta.get("client_id") != reply.client_id:
        raise PayloadError(f"{reply.client_id}: set claims client_id {str(s.meta.get('client_id'))[:40]!r}")
    counts = np.bincount(np.asarray(s.y), minlength=n_classes)
    if max_per_class is not None and counts.max(initial=0) > max_per_class:
        k = int(counts.argmax())
        raise PayloadError(
            f"{reply.client_id}: set holds {int(counts[k])} examples of class {k}, the task asked for at most "
            f"federation.ipc={max_per_class} per class"
        )
    if max_examples is not None and len(s.y) > max_examples:
        raise PayloadError(
            f"{reply.client_id}: set holds {len(s.y)} examples, above federation.max_client_examples={max_examples}"
        )
    return s, release_privacy(s.meta.get("privacy"), source=reply.client_id)


def accept_update(
    reply: Reply,
    *,
    reference: Mapping[str, np.ndarray],
    max_bytes: int,
    max_examples: int | None,
    dp: bool,
) -> tuple[dict[str, np.ndarray], float, dict[str, Any] | None]:
    """A FedAvg update, its aggregation weight and the server's privacy object (DP-FedAvg).

    Args:
        reply: the client's reply.
        reference: θ₀ (names, shapes, dtypes the update must have).
        max_bytes: cap on the reply, checked before decoding.
        max_examples: FedAvg weights by the example count the client reports, which must be an integer in
            ``[1, max_examples]``; ``None``: equal weights (the reply carries no count).
        dp: the reply must carry the round's DP release.

    Raises:
        PayloadError: wrong names, shapes or dtypes, non-finite values, an oversized reply, a missing or out-of-range
            example count, a missing or malformed release.
    """
    cid = reply.client_id
    if reply.wire_bytes > max_bytes:
        raise PayloadError(f"{cid}: payload of {reply.wire_bytes} bytes is above the cap of {max_bytes} bytes")
    if set(reply.arrays) != set(reference):
        raise PayloadError(f"{cid}: update has parameters {sorted(reply.arrays)[:3]}..., expected those of the model")
    meta = _meta(reply)
    weight = 1.0
    if max_examples is not None:
        n = meta.get("num_examples")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_examples:
            raise PayloadError(
                f"{cid}: num_examples must be an integer in [1, federation.max_client_examples={max_examples}], "
                f"got {str(n)[:40]!r}"
            )
        weight = float(n)
    privacy = release_privacy(meta.get("privacy"), source=cid)
    if dp and privacy is None:
        raise PayloadError(f"{cid}: a DP-FedAvg update must carry its privacy release")
    arrays: dict[str, np.ndarray] = {}
    for name, ref in reference.items():
        try:
            arr = np.asarray(reply.to_numpy(reply.arrays[name]))
        except (ValueError, TypeError, OSError, EOFError) as exc:
            raise PayloadError(f"{cid}: undecodable parameter {name} ({exc.__class__.__name__})") from None
        if arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise PayloadError(
                f"{cid}: parameter {name} is {arr.dtype} {list(arr.shape)}, expected {ref.dtype} {list(ref.shape)}"
            )
        if not np.isfinite(arr).all():
            raise PayloadError(f"{cid}: parameter {name} holds non-finite values")
        arrays[name] = arr
    return arrays, weight, privacy


def accept_statistics(
    reply: Reply, *, n_classes: int, dim: int, max_bytes: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """A client's merf statistics (``federation.merf_synthesis: server``) and the server's privacy object for them.

    Args:
        reply: the client's reply: arrays ``sums`` (float32 ``[n_classes, dim]``) and ``counts`` (float32
            ``[n_classes]``), metadata naming the client and its release.
        n_classes: classes of the task.
        dim: the embedding width the server's networks give (K nets x the model's embedding).
        max_bytes: cap on the reply, checked before decoding.

    Raises:
        PayloadError: other arrays, shapes or dtypes, non-finite values, an oversized reply, metadata claiming
            another client, a malformed release.
    """
    cid = reply.client_id
    if reply.wire_bytes > max_bytes:
        raise PayloadError(f"{cid}: payload of {reply.wire_bytes} bytes is above the cap of {max_bytes} bytes")
    if set(reply.arrays) != {"sums", "counts"}:
        raise PayloadError(f"{cid}: statistics must be the arrays sums and counts, got {sorted(reply.arrays)[:4]}")
    meta = _meta(reply)
    if meta.get("client_id") != cid:
        raise PayloadError(f"{cid}: statistics claim client_id {str(meta.get('client_id'))[:40]!r}")
    out: dict[str, np.ndarray] = {}
    for name, shape in (("sums", (n_classes, dim)), ("counts", (n_classes,))):
        try:
            arr = np.asarray(reply.to_numpy(reply.arrays[name]))
        except (ValueError, TypeError, OSError, EOFError) as exc:
            raise PayloadError(f"{cid}: undecodable {name} ({exc.__class__.__name__})") from None
        if arr.shape != shape or arr.dtype != np.float32:
            raise PayloadError(f"{cid}: {name} is {arr.dtype} {list(arr.shape)}, expected float32 {list(shape)}")
        if not np.isfinite(arr).all():
            raise PayloadError(f"{cid}: {name} holds non-finite values")
        out[name] = arr
    return out["sums"], out["counts"], release_privacy(meta.get("privacy"), source=cid)
