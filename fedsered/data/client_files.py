"""The clients' partitions of a simulated federation as files: ``client-<k>.npz`` per client plus ``manifest.json``.

In a simulation the experimenter plays every device. ``write_client_files`` runs once, on the experimenter's side
(``fedsered simulate``, before any client starts): it builds the run's dataset and files each client's private
features in a file of its own; ``read_client_file`` is what virtual client ``k`` then loads — its own file, nothing
else, and nothing the server sends decides what it holds. Without this, every Ray actor built the whole corpus itself
(audio synthesis, the feature pipeline with librosa/numba, every client's data in memory) to keep one partition.

The manifest records the data fingerprint (``data_fingerprint``: seed, data, features and partition settings) so
that a folder written for other settings is rewritten, never read by mistake.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from fedsered.config import Config
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError
from fedsered.io import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"


def data_fingerprint(cfg: Config) -> str:
    """What the clients' data depends on: the seed, ``data``, ``features`` and the partition settings."""
    fed = cfg.federation
    text = json.dumps({
        "seed": cfg.seed, "data": cfg.data.model_dump(mode="json"),
        "features": cfg.features.model_dump(mode="json", exclude={"cache_dir", "backend"}),
        "partition": [fed.num_clients, fed.partition, fed.dirichlet_alpha],
    }, sort_keys=True)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def client_file(folder: Path, k: int) -> Path:
    return folder / f"client-{k}.npz"


def write_client_files(cfg: Config, folder: Path) -> Path:
    """File every client's partition under ``folder`` (kept as is when it already holds this config's partitions).

    Returns:
        ``folder``.
    """
    fingerprint = data_fingerprint(cfg)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
                return folder
        except (OSError, ValueError):
            pass  # unreadable: written again below
        manifest.unlink()
    from fedsered.data.dataset import build_dataset  # the experimenter's side only: the whole corpus pipeline

    data = build_dataset(cfg)
    for k in range(len(data.clients)):
        part = data.client(k)
        buf = io.BytesIO()
        np.savez(buf, x=part.x, y=part.y, speaker=part.speaker, utterance_id=part.utterance_id)
        atomic_write_bytes(client_file(folder, k), buf.getvalue())
    atomic_write_json(manifest, {"fingerprint": fingerprint, "clients": len(data.clients)})  # last: marks it whole
    return folder


def read_client_file(folder: Path, k: int, *, cfg: Config) -> FeatureSet:
    """Client ``k``'s private features from ``folder``.

    Raises:
        DataError: no complete folder, one written for other data settings than ``cfg``'s, or no partition ``k``.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"client data {folder}: no readable {MANIFEST} ({exc})") from exc
    if manifest.get("fingerprint") != data_fingerprint(cfg):
        raise DataError(f"client data {folder}: written for other data settings than the task's (seed, data, "
                        "features, partition)")  # fmt: skip
    if not 0 <= k < int(manifest.get("clients", 0)):
        raise DataError(f"partition-id {k} outside the run's {manifest.get('clients')} client partitions")
    try:
        with np.load(client_file(folder, k), allow_pickle=False) as z:
            return FeatureSet(z["x"], z["y"], z["speaker"], z["utterance_id"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"client data {client_file(folder, k)}: unreadable ({exc})") from exc
