"""The audited targets: a target name → one run of a federated pipeline on given client data → what the adversary sees.

Names: ``raw_sharing``, ``random_subset``, ``pooled``, ``fedavg``, ``dp_fedavg`` (at ``privacy.target_epsilon``),
``dp_fedavg_eps<E>``, ``synthetic_<method>`` (e.g. ``synthetic_dm``) and ``synthetic_<method>_dp_eps<E>`` (DP
synthetic sharing at per-release ε = E). A run executes
``fedsered.federation.run_pipeline`` — the same client and server functions as the Flower App, so the audit measures
exactly the federated pipelines. Where that module is absent (a build without the federation stream) a thin adapter
calls ``distil`` / ``train_model`` / ``evaluate`` directly for the set-sharing pipelines; ``TargetRun.backend`` says
which one ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.data.types import FeatureSet
from fedsered.errors import ConfigError

METHODS = ("random", "herding", "gm", "dm", "mtt")
_PLAIN = ("raw_sharing", "random_subset", "pooled", "fedavg", "dp_fedavg")
_EPS = r"(?P<eps>[0-9]+(?:\.[0-9]+)?)"
_SYNTHETIC = re.compile(rf"^synthetic_(?P<method>[a-z]+)(?:_dp_eps{_EPS})?$")
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
    pipeline: str
    method: str | None = None
    dp_epsilon: float | None = None

    @property
    def is_dp(self) -> bool:
        return self.dp_epsilon is not None or self.pipeline == "dp_fedavg"


def parse_target(name: str) -> TargetSpec:
    """Parse a target name; raises ``ConfigError`` naming ``audit.pipelines`` and the accepted forms."""
    if name in _PLAIN:
        return TargetSpec(name=name, pipeline=name)
    if fed := _DP_FEDAVG.match(name):
        return TargetSpec(name=name, pipeline="dp_fedavg", dp_epsilon=_positive(name, fed["eps"]))
    match = _SYNTHETIC.match(name)
    if match and match["method"] in METHODS:
        eps = _positive(name, match["eps"]) if match["eps"] else None
        return TargetSpec(name=name, pipeline="synthetic", method=match["method"], dp_epsilon=eps)
    raise ConfigError(
        f"audit.pipelines: unknown target {name!r}; expected one of {', '.join(_PLAIN)}, synthetic_<method> or "
        f"synthetic_<method>_dp_eps<E> with method in {', '.join(METHODS)}, or dp_fedavg_eps<E>"
    )


def _positive(name: str, text: str) -> float:
    eps = float(text)
    if eps <= 0:
        raise ConfigError(f"audit.pipelines: {name!r}: the DP epsilon must be > 0")
    return eps


def target_config(cfg: Config, spec: TargetSpec) -> Config:
    """The run config of a target: the distillation method and the privacy section set for it."""
    update: dict[str, Any] = {}
    if spec.method is not None:
        update["federation"] = cfg.federation.model_copy(update={"method": spec.method})
    if spec.pipeline in ("synthetic", "dp_fedavg"):
        priv: dict[str, Any] = {"enabled": spec.is_dp}
        if spec.dp_epsilon is not None:
            priv["target_epsilon"] = spec.dp_epsilon
        update["privacy"] = cfg.privacy.model_copy(update=priv)
    return cfg.model_copy(update=update) if update else cfg


@dataclass(frozen=True)
class TargetRun:
    """What one run of a target leaves for the adversary and for the report.

    Attributes:
        model: the global model (what the server, or anyone it is given to, holds).
        shared_x: the aggregated shared set's features, or ``None`` where no examples are shared (fedavg, pooled).
        uar: the global model's UAR on the held-out test speakers.
        bytes_up_total: bytes all clients uploaded.
        epsilon_accounted: the largest ε any client's releases were accounted at (``None`` without DP).
        backend: ``"run_pipeline"`` or ``"adapter"``.
    """

    model: nn.Module
    shared_x: np.ndarray | None
    uar: float
    bytes_up_total: int
    epsilon_accounted: float | None
    backend: str


def _accounted_epsilon(records: list[dict[str, Any]]) -> float | None:
    eps = [float(r["privacy"]["epsilon"]) for r in records if isinstance(r.get("privacy"), dict)]
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
    run_cfg = target_config(cfg, spec)
    try:
        from fedsered.federation import run_pipeline
    except ImportError:  # a build without the federation stream: the direct adapter below
        return _adapter(run_cfg, data, spec=spec, clients=clients, seed=seed)
    res = run_pipeline(run_cfg, data, pipeline=spec.pipeline, seed=seed, clients=clients)
    shared = res.get("shared")
    return TargetRun(
        model=res["model"],
        shared_x=None if shared is None or spec.pipeline == "pooled" else np.asarray(shared.x),
        uar=float(res["global_uar"]),
        bytes_up_total=int(res["bytes_up_total"]),
        epsilon_accounted=_accounted_epsilon(res.get("clients", [])),
        backend="run_pipeline",
    )


def _adapter(cfg: Config, data: Dataset, *, spec: TargetSpec, clients: dict[str, FeatureSet], seed: int) -> TargetRun:
    """Set-sharing pipelines through ``distil``/``train_model`` directly (no FedAvg, no DP)."""
    from fedsered.distill.api import distil
    from fedsered.models.build import fixed_init_state
    from fedsered.seeding import int_seed
    from fedsered.training.train import evaluate, train_model

    if spec.pipeline in ("fedavg", "dp_fedavg") or spec.is_dp:
        raise ConfigError(f"audit.pipelines: {spec.name} needs fedsered.federation.run_pipeline, absent in this build")
    theta0 = fixed_init_state(cfg.model, n_classes=data.n_classes)
    xs, ys = [], []
    for cid, part in clients.items():
        if spec.pipeline in ("raw_sharing", "pooled"):
            xs.append(part.x)
            ys.append(part.y)
            continue
        method = "random" if spec.pipeline == "random_subset" else str(spec.method)
        s = distil(
            part, method=method, ipc=cfg.federation.ipc, cfg=cfg.distill, model_cfg=cfg.model,
            n_classes=data.n_classes, init_state=theta0, seed=int_seed(seed, f"client/{cid}"), client_id=cid,
        )  # fmt: skip
        xs.append(s.x)
        ys.append(s.y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    model = train_model(
        x, y, model_cfg=cfg.model, train_cfg=cfg.train, n_classes=data.n_classes, init_state=theta0,
        seed=int_seed(seed, "server/train"),
    )  # fmt: skip
    uar = float(evaluate(model, data.test.x, data.test.y, n_classes=data.n_classes)["uar"])
    return TargetRun(
        model=model, shared_x=None if spec.pipeline == "pooled" else x, uar=uar,
        bytes_up_total=0 if spec.pipeline == "pooled" else int(x.nbytes + y.nbytes), epsilon_accounted=None,
        backend="adapter",
    )  # fmt: skip
