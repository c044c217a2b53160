"""Resuming a run folder: a digest of the configuration a run's results depend on, and the guard against mixing.

A resumable command (``fedsered sweep``, ``fedsered train --seeds``) keeps its finished units (cells, seeds) in its
``--out`` folder and reuses them when run again. That is only sound while every unit came from the same
configuration, so the command records ``config_digest`` of its config, minus what may change between resumptions
(the list of seeds or the grid, the output folder, sections the command never reads), in a small spec file, and
``check_resume`` refuses a folder whose spec holds another digest — one line naming the folder and both digests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

from fedsered.config import Config
from fedsered.errors import ConfigError
from fedsered.io import atomic_write_json

Exclude = Set[str] | Mapping[str, Any]
"""What ``config_digest`` leaves out: top-level keys, or pydantic's nested form ``{"features": {"cache_dir"}}``."""


def config_digest(cfg: Config, *, exclude: Exclude) -> str:
    """A 16-hex-character digest of the config without ``exclude``.

    Args:
        cfg: the resolved config.
        exclude: keys the digest ignores, as ``Config.model_dump(exclude=...)`` takes them.

    Returns:
        The first 16 hex characters of the SHA-256 of the config's sorted-key JSON.
    """
    tree = cfg.model_dump(mode="json", exclude=exclude)  # type: ignore[arg-type]
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def check_resume(out_dir: str | Path, *, spec_name: str, digest: str, cfg: Config, what: str, may_change: str) -> None:
    """Refuse to resume ``out_dir`` under another configuration; record this one otherwise.

    Args:
        out_dir: the run folder.
        spec_name: the spec file in it (e.g. ``sweep.json``), holding ``{"fingerprint": ..., "config": ...}``.
        digest: ``config_digest`` of the config now asked for.
        cfg: that config (stored in the spec, for a reader).
        what: the kind of run, for the message (``"sweep"``, ``"multi-seed training"``).
        may_change: what may differ between resumptions, for the message (``"the sweep section"``).

    Raises:
        ConfigError: the folder's spec records another digest (an unreadable spec counts as another).
    """
    out_dir = Path(out_dir)
    spec_path = out_dir / spec_name
    if spec_path.exists():
        try:
            old = json.loads(spec_path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != digest:
            raise ConfigError(
                f"{out_dir}: holds a {what} of another configuration (fingerprint {old} != {digest}); resume only "
                f"with the same config ({may_change} may change), or choose a new --out"
            )
    atomic_write_json(spec_path, {"fingerprint": digest, "config": cfg.model_dump(mode="json")})
