"""``distil``: one entry point for every method, turning a client's features into a validated ``SyntheticSet``.

Methods: ``random`` and ``herding`` select real examples (``baselines``); ``gm``, ``dm``, ``mtt`` and ``merf`` learn
synthetic features from a real (or noise) start (``gm``, ``dm``, ``mtt``, ``merf``). Small and missing classes follow
``init``'s fallbacks; the metadata records them (``ipc_effective``, ``missing_classes``, ``repeated_classes``)
together with the method's ``loss_history`` and settings. The client's seed and exact per-class counts stay out of
the metadata: the set is what gets shared.

Multi-formation (``distill.formation`` f > 1, ``formation``): ``random`` packs ``ipc·f`` random real examples per class
into ``ipc`` stored ones; ``dm`` starts from such a packed set (or noise) and matches the decoded examples; the set
records ``meta["formation"]`` and the server decodes it. Other methods refuse f > 1.

DP (``privacy``, a ``fedsered.privacy.ClientPrivacy``): gm, dm, mtt and merf run their DP mechanism (the method's q
and steps from ``fedsered.distill.dp`` — merf's is one release at q = 1 —, σ from
``fedsered.privacy.mechanism.calibrate``, the one crossing); the synthetic set starts from data-independent Gaussian
noise with ``ipc`` rows for every class (real starts, and which classes a client holds, would leak outside the
accounting), and ``meta["privacy"]`` holds the release's privacy object. With a ``ledger`` the release is checked
against the client's budget before any work (refused: ``PrivacyBudgetError``, nothing produced) and recorded after.

``release_statistics`` is merf's release alone (per-class sums and counts of clipped embeddings under networks every
client shares), for a server that adds the clients' releases and synthesises one set (``federation.merf_synthesis``).

Every method runs at ``threads`` torch threads (``fedsered.training.threads``): a set is bit-identical across
machines and callers only at a fixed count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch

from fedsered.config import DistillConfig, DistillMethod, ModelConfig
from fedsered.data.types import FeatureSet
from fedsered.distill.baselines import select_herding, select_random
from fedsered.distill.dm import distil_dm
from fedsered.distill.dp import plan_dp
from fedsered.distill.formation import pack
from fedsered.distill.gm import distil_gm
from fedsered.distill.init import LearnTask, initial_synthetic, plan_classes
from fedsered.distill.merf import distil_merf, embedding_nets, release_sums
from fedsered.distill.mtt import distil_mtt
from fedsered.distill.synthetic_set import SyntheticSet, make_meta, validate_set
from fedsered.errors import ConfigError, DataError
from fedsered.models.build import fixed_init_state
from fedsered.privacy.accountant import privacy_object
from fedsered.privacy.client import ClientPrivacy
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.mechanism import DPSpec, reproducible_note
from fedsered.seeding import rng
from fedsered.training.threads import torch_threads
from fedsered.training.train import Progress

METHODS: tuple[str, ...] = get_args(DistillMethod)
"""Every method ``distil`` knows."""

SELECTION_METHODS: tuple[str, ...] = ("random", "herding")
"""Methods that return real examples unchanged."""

_LEARNED = {"gm": distil_gm, "dm": distil_dm, "mtt": distil_mtt, "merf": distil_merf}

FORMATION_METHODS: tuple[str, ...] = ("random", "dm")
"""Methods that implement ``distill.formation`` above 1."""


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A short content digest of a state dict (names, shapes and values)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:12]


def init_id(init_state: dict[str, torch.Tensor] | None, *, model_cfg: ModelConfig, n_classes: int) -> str:
    """``"theta0:<init_seed>"`` when ``init_state`` is the config's θ₀, ``"custom:<digest>"`` for another fixed
    state, ``"random"`` without one."""
    if init_state is None:
        return "random"
    theta0 = fixed_init_state(model_cfg, n_classes=n_classes)
    same = set(theta0) == set(init_state) and all(
        theta0[k].shape == init_state[k].shape and torch.equal(theta0[k], init_state[k].detach().cpu()) for k in theta0
    )
    return f"theta0:{model_cfg.init_seed}" if same else f"custom:{state_digest(init_state)}"


def distil(
    data: FeatureSet,
    *,
    method: str,
    ipc: int,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    seed: int,
    progress: Progress | None = None,
    features: dict[str, Any] | None = None,
    client_id: str | None = None,
    privacy: ClientPrivacy | None = None,
    ledger: PrivacyLedger | None = None,
    threads: int = 1,
) -> SyntheticSet:
    """Distil (or select) ``ipc`` examples per class from a client's features.

    Args:
        data: the client's real features (``x`` as the models see them, already normalised).
        method: one of ``METHODS``.
        ipc: synthetic examples per class.
        cfg: the ``distill`` section (every method hyperparameter).
        model_cfg: the network the method matches / embeds with.
        n_classes: number of classes of the task (classes absent on the client are absent from the set).
        init_state: θ₀ (fixed-initialisation setting: mtt experts start there, gm/dm use it as their first network,
            herding's quick model starts there), or ``None`` (random-init mode).
        seed: the client's seed; every random stream is derived from it by role.
        progress: called with ``(step, steps)`` by the learned methods.
        features: the feature settings to record in the metadata.
        client_id: the producing client, recorded in the metadata.
        privacy: the client's DP settings (``fedsered.privacy.client_privacy``), or ``None`` for no DP.
        ledger: the client's privacy ledger (DP only): checked before, recorded after the release.
        threads: torch threads the method runs at (``train.threads``; 0: the caller's count), restored afterwards.

    Returns:
        The validated set; ``meta`` holds the required keys plus ``ipc_effective``, ``missing_classes``,
        ``repeated_classes``, ``loss_history`` (learned methods), ``model``,
        and ``settings`` — no timings, so the set (arrays and metadata) is a pure function of inputs and seed.
        Under DP ``privacy`` is ``privacy_object([release])`` plus ``max_grad_norm`` and ``target_epsilon``.

    Raises:
        ConfigError: unknown method or ``ipc < 1``; under ``privacy``, a method without DP mechanism or a target ε
            too small for the method's steps.
        PrivacyBudgetError: the ledger refuses the release (it would exceed the client's budget).
        DataError: the client holds no example, or labels outside ``[0, n_classes)``.
        PayloadError: the result is not a valid set (e.g. diverged to non-finite values).
    """
    if method not in METHODS:
        raise ConfigError(f"distill.methods: unknown method {method!r}; known: {', '.join(METHODS)}")
    if ipc < 1:
        raise ConfigError(f"distill.ipc: must be >= 1, got {ipc}")
    if len(data) == 0:
        raise DataError(f"client {client_id or '(centralised)'}: no examples to distil")
    f = cfg.formation
    if f > 1 and method not in FORMATION_METHODS:
        raise ConfigError(
            f"distill.formation: {f} is implemented for {' and '.join(FORMATION_METHODS)} only, not {method!r}"
        )
    job = _Job(method=method, ipc=ipc, cfg=cfg, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state,
               features=features, client_id=client_id)  # fmt: skip
    with torch_threads(threads):
        if privacy is not None:
            return _distil_dp(data, job, seed=seed, progress=progress, privacy=privacy, ledger=ledger)
        return _distil_plain(data, job, seed=seed, progress=progress)


def _distil_plain(data: FeatureSet, job: _Job, *, seed: int, progress: Progress | None) -> SyntheticSet:
    """``distil`` without DP."""
    method, ipc, cfg, f = job.method, job.ipc, job.cfg, job.cfg.formation
    model_cfg, n_classes, init_state = job.model_cfg, job.n_classes, job.init_state
    selection = method in SELECTION_METHODS
    plan = plan_classes(data.y, n_classes=n_classes, ipc=ipc * f, cap_at_available=selection)
    extra: dict[str, Any]
    if method == "random":
        x_syn, y_syn, extra = select_random(data.x, data.y, plan=plan, seed=seed)
        x_syn, y_syn = pack(x_syn, y_syn, f)
    elif method == "herding":
        x_syn, y_syn, extra = select_herding(
            data.x, data.y, plan=plan, cfg=cfg, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state,
            seed=seed,
        )  # fmt: skip
    else:
        x0, y0 = initial_synthetic(
            data.x, data.y, plan=plan, mode=cfg.init, init_noise=cfg.init_noise, rng=rng(seed, "distil/init")
        )
        x0, y0 = pack(x0, y0, f)  # f·ipc starting examples per class in ipc stored ones
        task = LearnTask(
            data.x, data.y, x0, y0, model_cfg=model_cfg, n_classes=n_classes, init_state=init_state, seed=seed
        )
        x_syn, y_syn, extra = _LEARNED[method](task, cfg, progress=progress)
        extra["init_mode"] = cfg.init
    meta = {**plan.meta(), **extra}
    if f > 1:  # stored rows per class, and the factor the server decodes by
        meta.update(ipc_effective=[-(-r // f) for r in plan.rows], formation=f)
    return _finish(x_syn, y_syn, meta, job, input_shape=tuple(data.x.shape[1:]), privacy=None)


@dataclass(frozen=True)
class _Job:
    """What one ``distil`` call makes, as its steps need it (the arguments that travel together)."""

    method: str
    ipc: int
    cfg: DistillConfig
    model_cfg: ModelConfig
    n_classes: int
    init_state: dict[str, torch.Tensor] | None
    features: dict[str, Any] | None
    client_id: str | None


def _finish(
    x_syn: np.ndarray,
    y_syn: np.ndarray,
    extra: dict[str, Any],
    job: _Job,
    *,
    input_shape: tuple[int, ...],
    privacy: dict[str, Any] | None,
) -> SyntheticSet:
    """Wrap the arrays with their metadata into a validated ``SyntheticSet``."""
    details: dict[str, Any] = {
        **extra,
        "model": {"name": job.model_cfg.name, "width": job.model_cfg.width},
        "settings": job.cfg.model_dump(mode="json", exclude={"methods", "ipc"}),
    }
    meta = make_meta(
        method=job.method, ipc=job.ipc, n_classes=job.n_classes, features=job.features,
        init=init_id(job.init_state, model_cfg=job.model_cfg, n_classes=job.n_classes), client_id=job.client_id,
        privacy=privacy, **details,
    )  # fmt: skip
    s = SyntheticSet(x=x_syn, y=y_syn, meta=meta)
    validate_set(s, n_classes=job.n_classes, expected_shape=input_shape, max_bytes=None,
                 source=f"distil(method={job.method}, client={job.client_id})")  # fmt: skip
    return s


def _distil_dp(
    data: FeatureSet,
    job: _Job,
    *,
    seed: int,
    progress: Progress | None,
    privacy: ClientPrivacy,
    ledger: PrivacyLedger | None,
) -> SyntheticSet:
    """``distil`` under DP (see the module docstring)."""
    n_classes = job.n_classes
    spec: DPSpec = plan_dp(job.method, cfg=job.cfg, privacy=privacy, seed=seed)
    release = spec.release()
    if ledger is not None:
        ledger.check(release)
    y0 = np.repeat(np.arange(n_classes, dtype=np.int64), job.ipc)
    x0 = rng(seed, "distil/dp-init").standard_normal((len(y0), *data.x.shape[1:])).astype(np.float32)
    task = LearnTask(data.x, data.y, x0, y0, model_cfg=job.model_cfg, n_classes=n_classes, init_state=job.init_state,
                     seed=seed)  # fmt: skip
    x_syn, y_syn, extra = _LEARNED[job.method](task, job.cfg, progress=progress, dp=spec)
    extra["init_mode"] = "noise-dp"
    obj = _privacy_of(spec, privacy)
    plan: dict[str, Any] = {"ipc_effective": [job.ipc] * n_classes, "missing_classes": [], "repeated_classes": []}
    if job.cfg.formation > 1:
        plan["formation"] = job.cfg.formation
    s = _finish(x_syn, y_syn, {**plan, **extra}, job, input_shape=tuple(data.x.shape[1:]), privacy=obj)
    if ledger is not None:
        ledger.record(release)
    return s


def _privacy_of(spec: DPSpec, privacy: ClientPrivacy) -> dict[str, Any]:
    """The privacy object of one release of ``spec`` (what the shared set or statistics carry)."""
    obj = privacy_object([spec.release()], delta=privacy.delta, accountant=privacy.accountant)
    obj.update({"max_grad_norm": spec.max_grad_norm, "target_epsilon": privacy.target_epsilon,
                **reproducible_note(spec.reproducible)})  # fmt: skip
    return obj


@dataclass(frozen=True)
class MerfStatistics:
    """A client's one-shot merf release for server-side synthesis: what it uploads instead of a set.

    Attributes:
        sums: ``[n_classes, K·d]`` float32 per-class sums of the clipped embeddings (noisy under DP).
        counts: ``[n_classes]`` float32 per-class counts (noisy under DP).
        privacy: the release's privacy object (as ``distil``'s ``meta["privacy"]``), or ``None`` without DP.
    """

    sums: np.ndarray
    counts: np.ndarray
    privacy: dict[str, Any] | None


def release_statistics(
    data: FeatureSet,
    *,
    cfg: DistillConfig,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    nets_seed: int,
    seed: int,
    client_id: str | None = None,
    privacy: ClientPrivacy | None = None,
    ledger: PrivacyLedger | None = None,
    threads: int = 1,
    centre: np.ndarray | None = None,
) -> MerfStatistics:
    """merf's release alone (``merf.release_sums``), for a server that adds every client's release and synthesises
    one set from the totals (``federation.merf_synthesis: server``): nothing is synthesised here.

    Args:
        data: the client's real features.
        cfg: the ``distill`` section (``merf_networks``).
        model_cfg: the embedding networks' architecture.
        n_classes: classes of the task (every class is released, held or not).
        init_state: θ₀ (network 0), or ``None``.
        nets_seed: the seed of the networks, the same for every client of the run (public, data-independent).
        seed: the client's seed (the DP noise comes from its secret seed, ``calibrate``).
        client_id: named in errors.
        privacy: the client's DP settings, or ``None`` for exact sums and counts.
        ledger: the client's privacy ledger: checked before, recorded after the release.
        threads: torch threads of the embedding passes.
        centre: the data-independent point the embeddings are centred on before clipping (``[K·d]``), or ``None``.

    Returns:
        The statistics and their privacy object.

    Raises:
        DataError: the client holds no example, or labels outside ``[0, n_classes)``.
        ConfigError: a target ε the one release cannot meet, or a centre of another width than the embeddings.
        PrivacyBudgetError: the ledger refuses the release.
    """
    if len(data) == 0:
        raise DataError(f"client {client_id or '(centralised)'}: no examples to release statistics of")
    if data.y.min() < 0 or data.y.max() >= n_classes:
        raise DataError(f"client {client_id or '(centralised)'}: labels outside [0, {n_classes})")
    spec = plan_dp("merf", cfg=cfg, privacy=privacy, seed=seed) if privacy is not None else None
    if ledger is not None and spec is not None:
        ledger.check(spec.release())
    with torch_threads(threads):
        nets = embedding_nets(model_cfg, n_classes=n_classes, init_state=init_state, seed=nets_seed,
                              k=cfg.merf_networks)  # fmt: skip
        if centre is not None:
            with torch.no_grad():
                width = int(nets.raw(torch.from_numpy(data.x[:1])).shape[1])
            if centre.shape != (width,):
                raise ConfigError(f"client {client_id or '(centralised)'}: a centre of shape {centre.shape}, the "
                                  f"embeddings have width {width}")  # fmt: skip
            nets = nets.centred(torch.from_numpy(centre.astype(np.float32)))
        sums, counts = release_sums(nets, data.x, data.y, n_classes=n_classes, dp=spec)
    obj = _privacy_of(spec, privacy) if spec is not None and privacy is not None else None
    if ledger is not None and spec is not None:
        ledger.record(spec.release())
    return MerfStatistics(sums=sums.numpy().astype(np.float32), counts=counts.numpy().astype(np.float32),
                          privacy=obj)  # fmt: skip
