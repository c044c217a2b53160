"""The audited targets: a target name → one run of a federated pipeline on given client data → what the adversary sees.

Names: ``raw_sharing``, ``random_subset``, ``pooled``, ``fedavg``, ``dp_fedavg`` (at ``privacy.target_epsilon``),
``dp_fedavg_eps<E>``, ``synthetic_<method>`` (e.g. ``synthetic_dm``) and ``synthetic_<method>_dp_eps<E>`` (DP
synthetic sharing at per-release ε = E; ``..._dp_eps<E>_reproducible`` derives the DP noise from the run seed, the
insecure mode the server-knowledge attack breaks). A run executes
``fedsered.federation.run_pipeline`` — the one federation loop that ``fedsered simulate`` runs over Flower, here
over the in-process transport — so the audit measures exactly the federated pipelines (ledgers included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fedsered.config import PIPELINES, Config, FederatedPipeline
from fedsered.data.dataset import Dataset
from fedsered.data.types import FeatureSet
from fedsered.distill import METHODS
from fedsered.errors import ConfigError
from fedsered.federation.records import ClientRecord

_PLAIN: tuple[FederatedPipeline, ...] = tuple(p for p in PIPELINES if p != "synthetic")
_EPS = r"(?P<eps>[0-9]+(?:\.[0-9]+)?)"
_SYNTHETIC = re.compile(rf"^synthetic_(?P<method>[a-z]+)(?:_dp_eps{_EPS}(?P<repro>_reproducible)?)?$")
_DP_FEDAVG = re.compile(rf"^dp_fedavg_eps{_EPS}$")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target name.

    Attributes:
        name: the name as configured.
        pipeline: the ``run_pipeline`` pipeline (``synthetic``, ``raw_sharing``, ...).
        method: the distillation method of ``synthetic`` targets, else ``None``.
        dp_epsilon: the per-release ε of DP synthetic targets, else ``None``.
    """

    name: str
    pipeline: FederatedPipeline
    method: str | None = None
    dp_epsilon: float | None = None
    reproducible_noise: bool = False

    @property
    def is_dp(self) -> bool:
        return self.dp_epsilon is not None or self.pipeline == "dp_fedavg"


def parse_target(name: str) -> TargetSpec:
    """Parse a target name; raises ``ConfigError`` naming ``audit.pipelines`` and the accepted forms."""
    plain = next((p for p in _PLAIN if p == name), None)
    if plain is not None:
        return TargetSpec(name=name, pipeline=plain)
    if fed := _DP_FEDAVG.match(name):
        return TargetSpec(name=name, pipeline="dp_fedavg", dp_epsilon=_positive(name, fed["eps"]))
    match = _SYNTHETIC.match(name)
    if match and match["method"] in METHODS:
        eps = _positive(name, match["eps"]) if match["eps"] else None
        return TargetSpec(name=name, pipeline="synthetic", method=match["method"], dp_epsilon=eps,
                          reproducible_noise=bool(match["repro"]))  # fmt: skip
    raise ConfigError(
        f"audit.pipelines: unknown target {name!r}; expected one of {', '.join(_PLAIN)}, synthetic_<method> or "
        f"synthetic_<method>_dp_eps<E>[_reproducible] with method in {', '.join(METHODS)}, or dp_fedavg_eps<E>"
    )


def _positive(name: str, text: str) -> float:
    eps = float(text)
    if eps <= 0:
        raise ConfigError(f"audit.pipelines: {name!r}: the DP epsilon must be > 0")
    return eps


def target_config(cfg: Config, spec: TargetSpec) -> Config:
    """The run config of a target: the distillation method and the privacy section set for it. Each target is a
    counterfactual federation whose clients' policy consents to that target's pipeline (``privacy.share``)."""
    update: dict[str, Any] = {}
    if spec.method is not None:
        update["federation"] = cfg.federation.model_copy(update={"method": spec.method})
    priv: dict[str, Any] = {"share": (spec.pipeline,)}
    if spec.pipeline in ("synthetic", "dp_fedavg"):
        priv["enabled"] = spec.is_dp
        if spec.dp_epsilon is not None:
            priv["target_epsilon"] = spec.dp_epsilon
        priv["reproducible_noise"] = spec.reproducible_noise
    update["privacy"] = cfg.privacy.model_copy(update=priv)
    return cfg.model_copy(update=update)


@dataclass(frozen=True)
class TargetRun:
    """What one run of a target leaves for the adversary and for the report.

    Attributes:
        model: the global model (what the server, or anyone it is given to, holds).
        shared_x: the aggregated shared set's features, or ``None`` where no examples are shared (fedavg, pooled).
        uar: the global model's UAR on the held-out test speakers.
        bytes_up_total: bytes all clients uploaded.
        epsilon_accounted: the largest ε any client's releases were accounted at (``None`` without DP).
        client_sets: client id → what the server received from it: the features of the set it uploaded (share
            pipelines), or its merf release (server synthesis: ``ClientStatistics.release()``).
    """

    model: nn.Module
    shared_x: np.ndarray | None
    uar: float
    bytes_up_total: int
    epsilon_accounted: float | None
    client_sets: dict[str, np.ndarray]


def _accounted_epsilon(records: list[ClientRecord]) -> float | None:
    eps = [float(r.privacy["epsilon"]) for r in records if r.privacy is not None]
    return max(eps) if eps else None


def run_target(
    cfg: Config, data: Dataset, *, spec: TargetSpec, clients: dict[str, FeatureSet], seed: int
) -> TargetRun:
    """Run target ``spec`` once on the given client data.

    Args:
        cfg: the whole config (the target's overrides are applied here).
        data: the prepared dataset (its test speakers give the UAR).
        spec: the parsed target.
        clients: client id → that client's private data in this run.
        seed: the run seed.

    Returns:
        The ``TargetRun``.
    """
    from fedsered.federation import run_pipeline

    res = run_pipeline(target_config(cfg, spec), data, pipeline=spec.pipeline, seed=seed, clients=clients)
    assert res.model is not None
    return TargetRun(
        model=res.model,
        shared_x=None if res.shared is None else np.asarray(res.shared.x),
        uar=res.uar,
        bytes_up_total=res.bytes_up_total,
        epsilon_accounted=_accounted_epsilon(res.clients),
        client_sets={cid: s.x for cid, s in res.sets.items()} | res.releases,
    )
