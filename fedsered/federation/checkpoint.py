"""The server's finished pipelines in a run folder, so that a comparison killed half-way resumes where it stopped.

``run_comparison(..., cache=PipelineCache(out, fingerprint))`` files every pipeline as soon as it finished —
``shared/<pipeline>.npz|json`` (the aggregated set), ``models/<pipeline>.npz`` (the global model), then
``pipelines/<pipeline>.json`` (``{"fingerprint", "result": PipelineResult.to_json()}``, the commit; each file
written atomically) — and on the next run takes a filed pipeline whose fingerprint is the run's instead of running
it again. ``fingerprint`` is ``run_fingerprint(cfg)``: the config digest without the settings no result depends on
(``RUN_EXCLUDE``: output folder, feature cache, Ray resources, sections a simulation never reads). A pipeline filed
under another fingerprint is run again and its files replaced (``fedsered simulate`` refuses such a folder before
that, ``fedsered.resume``).

The granularity is the pipeline on the server's side. Within a pipeline a resumed run re-sends every round's task:
the clients answer from their filed replies (``fedsered.federation.reply_store``) without new work or DP release,
and the server aggregates, trains and scores again — deterministic for a seed, so the result is the uninterrupted
run's.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.config import Config
from fedsered.distill.synthetic_set import save_set
from fedsered.federation.results import PipelineResult
from fedsered.federation.server import state_arrays
from fedsered.io import atomic_write, atomic_write_json
from fedsered.resume import config_digest

RUN_EXCLUDE: dict[str, Any] = {
    "output": True, "functionals": True, "sweep": True, "audit": True, "features": {"cache_dir"},
    "federation": {"cpus_per_client", "ray_num_cpus", "object_store_mb", "ray_address"},
}  # fmt: skip
"""What a simulation's results do not depend on (``Config.model_dump(exclude=...)`` form)."""


def run_fingerprint(cfg: Config) -> str:
    """The digest of everything a simulation's results depend on (the seed included)."""
    return config_digest(cfg, exclude=RUN_EXCLUDE)


class PipelineCache:
    """Finished pipelines of one run folder (``out``) under one ``fingerprint``."""

    def __init__(self, out: str | Path, fingerprint: str) -> None:
        self.out = Path(out)
        self.fingerprint = fingerprint

    def path(self, pipeline: str) -> Path:
        """The commit file of ``pipeline``."""
        return self.out / "pipelines" / f"{pipeline}.json"

    def get(self, pipeline: str) -> PipelineResult | None:
        """The filed result of ``pipeline`` (without model and sets), or ``None`` when there is none of this
        fingerprint, or it is unreadable or incomplete."""
        path = self.path(pipeline)
        if not path.exists():
            return None
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("fingerprint") != self.fingerprint:
                return None
            result = PipelineResult.from_json(obj["result"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if obj.get("model") and not (self.out / "models" / f"{pipeline}.npz").exists():
            return None
        if obj.get("shared") and not (self.out / "shared" / f"{pipeline}.npz").exists():
            return None
        return result

    def put(self, pipeline: str, result: PipelineResult) -> None:
        """File ``result``: its shared set and model first, then the commit file."""
        if result.shared is not None:
            save_set(self.out / "shared" / pipeline, result.shared)
        if result.model is not None:  # the global model of every pipeline, as named numpy arrays
            arrays: dict[str, Any] = state_arrays(result.model)
            atomic_write(self.out / "models" / f"{pipeline}.npz", partial(np.savez, **arrays))
        atomic_write_json(self.path(pipeline), {
            "fingerprint": self.fingerprint, "shared": result.shared is not None, "model": result.model is not None,
            "result": result.to_json(),
        })  # fmt: skip
