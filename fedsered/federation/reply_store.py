"""A client's store of the replies it made: the same task again gets the same reply — no new work, no new release.

A crash (of the client, of the server, of the whole simulation) must never make a DP client release twice. So a
client that keeps a store (``LocalClient.keep_replies``: every Flower ``ClientApp``, simulated or deployed; not
the audit's throw-away in-process clients) files every reply it computes under the task's key, next to its
ledgers (``<ledger dir>/<client>/replies/<key>.npz|json``), and answers a task whose key it has filed with the
filed reply. The key (``task_key``) is a digest of what the work depends on: the client, the pipeline and its kind,
the round, the run seed, the config under the client's own policy (minus settings no client result depends on:
output folders, caches, Ray resources, timeouts) and the model state it starts from.

The order of the writes makes every crash safe (``fedsered.federation.client.run_task``):

1. the work runs; a DP release is checked against the ledger (``DeferredLedger``), not yet recorded;
2. the reply is filed: ``<key>.npz`` (the arrays), then ``<key>.json`` (metadata, metrics, the release and the
   arrays' SHA-256) — the JSON is the commit;
3. the release is recorded in the ledger under the task key (``PrivacyLedger.record(..., task=key)``);
4. the reply is sent.

Dying before 2: nothing was filed, recorded or shared; the task is computed afresh (the lost result never left the
process). Between 2 and 3: the filed reply is found, its release recorded then, and the reply sent. After 3 (the
upload lost): the filed reply is sent again, nothing recorded. A ledger that records a task whose filed reply is
gone (deleted, corrupt) refuses it: it will not release for that task again.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import Config
from fedsered.errors import PayloadError
from fedsered.io import atomic_write, atomic_write_json
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.release import PrivacyRelease

STORE_VERSION = 1

KEY_EXCLUDE: dict[str, Any] = {
    "output": True, "sweep": True, "audit": True, "functionals": True, "features": {"cache_dir"},
    "federation": {"cpus_per_client", "ray_num_cpus", "object_store_mb", "ray_address", "round_timeout_s",
                   "node_wait_s", "discover_timeout_s", "ledger_dir"},
}  # fmt: skip
"""Settings that no client's reply depends on (``Config.model_dump(exclude=...)`` form)."""


def task_key(
    *,
    client_id: str,
    pipeline: str,
    kind: str,
    round_: int,
    seed: int,
    cfg: Config,
    state: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
) -> str:
    """The key a client files a task's reply under (32 hex characters of a SHA-256).

    Args:
        client_id: the client.
        pipeline, kind, round_, seed: the task's.
        cfg: the config the client works under (the task's, tightened by its own policy).
        state: the model state the task starts from (numpy arrays by name).
        data: the client's own data the work reads (numpy arrays by name): a client whose recordings changed
            computes (and releases) afresh rather than answering with a reply about other data. The key never
            leaves the client.
    """
    fed_fields = {f for f in KEY_EXCLUDE["federation"] if f in type(cfg.federation).model_fields}
    exclude = {**KEY_EXCLUDE, "federation": fed_fields}
    head = {"client": client_id, "pipeline": pipeline, "kind": kind, "round": round_, "seed": seed,
            "cfg": cfg.model_dump(mode="json", exclude=exclude)}  # fmt: skip
    h = hashlib.sha256(json.dumps(head, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    arrays = {**{f"state/{k}": v for k, v in state.items()}, **{f"data/{k}": v for k, v in (data or {}).items()}}
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind in "OU":  # utterance ids: text, hashed as UTF-8
            a = np.frombuffer("\x00".join(map(str, a.ravel())).encode("utf-8"), dtype=np.uint8)
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class FiledReply:
    """A reply as filed: its arrays, metadata JSON, metrics and the DP release it cost (``None`` without DP)."""

    arrays: dict[str, np.ndarray]
    meta: str
    metrics: dict[str, float]
    release: PrivacyRelease | None


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ReplyStore:
    """The filed replies of one client, in ``folder`` (``<key>.npz`` and ``<key>.json`` each)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npz", self.folder / f"{key}.json"

    def get(self, key: str) -> FiledReply | None:
        """The reply filed under ``key``; ``None`` when there is none or it is incomplete or corrupt."""
        npz, meta = self._paths(key)
        if not meta.exists():
            return None
        try:
            obj = json.loads(meta.read_text(encoding="utf-8"))
            with np.load(npz, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            if obj.get("version") != STORE_VERSION or obj.get("key") != key or obj["arrays_sha256"] != _digest(arrays):
                return None
            release = None if obj["release"] is None else PrivacyRelease.from_json(obj["release"], source=str(meta))
            return FiledReply(arrays=arrays, meta=str(obj["meta"]), metrics=dict(obj["metrics"]), release=release)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, PayloadError):
            return None

    def put(self, key: str, reply: FiledReply, *, about: Mapping[str, Any] | None = None) -> None:
        """File ``reply`` under ``key``: the arrays first, then the JSON that commits them (``about``: the task, for
        a reader, e.g. ``{"pipeline", "round"}``)."""
        npz, meta = self._paths(key)
        arrays = {k: np.ascontiguousarray(v) for k, v in reply.arrays.items()}
        atomic_write(npz, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
        atomic_write_json(meta, {
            "version": STORE_VERSION, "key": key, "task": dict(about or {}), "meta": reply.meta,
            "metrics": dict(reply.metrics),
            "release": None if reply.release is None else reply.release.to_json(), "arrays_sha256": _digest(arrays),
        })  # fmt: skip


class DeferredLedger(PrivacyLedger):
    """A ledger whose ``record`` checks the budget and keeps the release; ``commit`` records it under the task key,
    once the reply is filed (the order in the module docstring). The DP code records as usual."""

    pending: PrivacyRelease | None = None

    def record(self, release: PrivacyRelease, *, task: str | None = None) -> float:
        after = self.check(release)
        self.pending = release
        return after

    def commit(self, task: str | None) -> None:
        """Record the pending release (if any) under ``task`` (``None``: a client that files no replies)."""
        if self.pending is not None:
            super().record(self.pending, task=task)
            self.pending = None
