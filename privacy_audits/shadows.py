"""The runs an audit executes: whole-pipeline shadow runs and one-run experiments, their plans, as Ray tasks.

Every run re-executes a target's whole pipeline — distillation included, not only a retraining on a fixed set
(Carlini et al. 2022 showed that shortcut underestimates leakage). Shadow runs use client data where each audited
utterance is IN exactly half of the runs (``membership.balanced_membership``); one-run experiments (Steinke et al.
2023, ``privacy_audits.one_run``) insert canaries each IN with probability ½. Each run returns only its signals, so
nothing large crosses processes. Runs execute as Ray tasks (1 CPU each, ``RAY_TMPDIR`` under the run folder, Ray shut
down afterwards) — on an existing cluster with ``federation.ray_address`` (then only disconnected afterwards) —, or
sequentially in-process with ``workers=0``. Each run records the Ray node it ran on. Each finished run is saved at once
(``DIR/runs/<target>/<kind>-<run>.npz``, atomically), so an audit killed at any point and run again with the same
config reuses every finished run.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.data.types import FeatureSet
from fedsered.errors import ConfigError
from fedsered.federation.accept import accept_statistics
from fedsered.federation.aggregate import ClientStatistics, merf_centre, public_pool
from fedsered.federation.client import LocalClient, run_task
from fedsered.federation.encoding import decode_arrays
from fedsered.federation.loop import statistics_width, task_kind
from fedsered.federation.protocol import Reply, Task
from fedsered.io import atomic_write_bytes
from fedsered.models import fixed_init_state
from fedsered.processes import children, forget, record_children, stop_recorded
from fedsered.seeding import int_seed, rng
from privacy_audits.attacks.dcr import dcr_scores
from privacy_audits.attacks.domias import domias_scores
from privacy_audits.attacks.replay import replay_score
from privacy_audits.canaries import make_canaries, repeat
from privacy_audits.membership import balanced_membership
from privacy_audits.signals import embeddings, model_signals
from privacy_audits.targets import TargetSpec, parse_target, run_target, target_config

Progress = Callable[[str, int, int], None]


def client_name(k: int) -> str:
    """The id of the client holding partition ``k`` (the federation's ``client-<k>``)."""
    return f"client-{k}"


@dataclass(frozen=True)
class AuditPlan:
    """What every run of every target shares: the audited examples and their membership.

    Attributes:
        fixed: client id → the client's data that is IN every run.
        audited: the audited examples (real utterances, then canaries), one row each.
        owner: ``[n]`` the client id holding each audited example.
        is_canary: ``[n]`` bool.
        member: ``[n, runs]`` bool, whether example ``i`` is IN run ``r``.
        population: utterances of speakers in no run (RMIA's z samples).
        canary_copies: copies of a canary inserted when it is IN.
    """

    fixed: dict[str, FeatureSet]
    audited: FeatureSet
    owner: np.ndarray
    is_canary: np.ndarray
    member: np.ndarray
    population: FeatureSet
    canary_copies: int

    @property
    def runs(self) -> int:
        return int(self.member.shape[1])


def make_plan(cfg: Config, data: Dataset) -> AuditPlan:
    """Choose the participating clients, audited utterances, canaries, population and membership.

    Raises:
        ConfigError: too few clients for a population, or too few utterances to audit.
    """
    a = cfg.audit
    if a.clients >= len(data.clients):
        raise ConfigError(
            f"audit.clients: {a.clients} of {len(data.clients)} partitions leaves no population speakers; "
            f"use at most {len(data.clients) - 1}"
        )
    g = rng(cfg.seed, "audit/plan")
    fixed, audited, owner = {}, [], []
    for k in range(a.clients):
        part, cid = data.client(k), client_name(k)
        if a.audited_per_client >= len(part):
            raise ConfigError(
                f"audit.audited_per_client: {a.audited_per_client} must be below {cid}'s {len(part)} utterances"
            )
        pick = np.zeros(len(part), dtype=bool)
        pick[g.choice(len(part), size=a.audited_per_client, replace=False)] = True
        fixed[cid] = part.subset(~pick)
        audited.append(part.subset(pick))
        owner += [cid] * a.audited_per_client
    pop_idx = np.concatenate([data.clients[k] for k in range(a.clients, len(data.clients))])
    pop_all = data.train.subset(np.sort(pop_idx))
    canaries = make_canaries(pop_all, n=a.canaries, kind=a.canary_kind, n_classes=data.n_classes, seed=cfg.seed)
    rest = ~np.isin(np.asarray([f"canary/{a.canary_kind}/{u}" for u in pop_all.utterance_id]), canaries.utterance_id)
    rest_idx = np.flatnonzero(rest)
    if len(rest_idx) > a.population:
        rest_idx = np.sort(g.choice(rest_idx, size=a.population, replace=False))
    canary_owner = [client_name(int(i) % a.clients) for i in range(a.canaries)]
    all_audited = FeatureSet.concat([*audited, canaries])
    n_real = len(all_audited) - a.canaries
    return AuditPlan(
        fixed=fixed,
        audited=all_audited,
        owner=np.asarray(owner + canary_owner),
        is_canary=np.arange(len(all_audited)) >= n_real,
        member=balanced_membership(len(all_audited), a.shadows, seed=cfg.seed),
        population=pop_all.subset(rest_idx),
        canary_copies=a.canary_copies,
    )


def run_clients(plan: AuditPlan, run: int) -> dict[str, FeatureSet]:
    """Client id → that client's data in run ``run``: its fixed part plus its audited examples IN the run."""
    out = {}
    for cid, part in plan.fixed.items():
        mine = (plan.owner == cid) & plan.member[:, run]
        real = plan.audited.subset(mine & ~plan.is_canary)
        canary = repeat(plan.audited.subset(mine & plan.is_canary), plan.canary_copies)
        out[cid] = FeatureSet.concat([part, real, canary])
    return out


@dataclass(frozen=True)
class ShadowOutput:
    """The signals of one run of one target.

    Attributes:
        target: the target name.
        run: the run index (column of ``AuditPlan.member``).
        log_p: ``[n]`` log p_y of the audited examples on the run's global model.
        phi: ``[n]`` their logit-scaled confidence.
        log_p_pop: ``[n_pop]`` log p_y of the population examples.
        dcr_feature: ``[n]`` −distance to the closest shared record in log-Mel space (``None``: nothing shared).
        dcr_embedding: the same in the global model's embedding space.
        domias: DOMIAS scores of the audited examples against the shared set (``None``: nothing shared).
        uar: the run's UAR on the test speakers.
        bytes_up_total: bytes uploaded by all clients.
        epsilon_accounted: the largest accounted ε of the run's clients, or ``None``.
        replay_index: rows of ``AuditPlan.audited`` the server-knowledge attack scored in this run (synthetic
            targets with ``audit.replay_examples``), else ``None``.
        replay: their server-knowledge scores (``privacy_audits.attacks.replay``).
        cpu_s: CPU seconds of the process while running it.
        wall_s: wall seconds.
        node: the Ray node id the run ran on (``""`` in-process) — infrastructure telemetry, not private data.
    """

    target: str
    run: int
    log_p: np.ndarray
    phi: np.ndarray
    log_p_pop: np.ndarray
    dcr_feature: np.ndarray | None
    dcr_embedding: np.ndarray | None
    domias: np.ndarray | None
    uar: float
    bytes_up_total: int
    epsilon_accounted: float | None
    replay_index: np.ndarray | None
    replay: np.ndarray | None
    cpu_s: float
    wall_s: float
    node: str = ""


def run_shadow(cfg: Config, data: Dataset, plan: AuditPlan, *, target: str, run: int) -> ShadowOutput:
    """Run ``target``'s whole pipeline once, as run ``run`` of the plan, and extract its signals."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    spec = parse_target(target)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one run = one core, in-process as in a Ray task (Ray sets the same)
    seed = int_seed(cfg.seed, f"audit/{target}/run/{run}")
    try:
        res = run_target(cfg, data, spec=spec, clients=run_clients(plan, run), seed=seed)
        replay_index = replay = None
        if spec.pipeline == "synthetic" and cfg.federation.mode == "one_shot" and cfg.audit.replay_examples:
            replay_index = replay_choice(plan, cfg.audit.replay_examples)
            replay = server_replay(cfg, data, plan, spec=spec, run=run, seed=seed, rows=replay_index,
                                   observed=res.client_sets)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    sig, sig_pop = model_signals(res.model, plan.audited.x, plan.audited.y), model_signals(
        res.model, plan.population.x, plan.population.y
    )
    dcr_f = dcr_e = dom = None
    if res.shared_x is not None:
        dcr_f = dcr_scores(plan.audited.x, res.shared_x)
        dcr_e = dcr_scores(embeddings(res.model, plan.audited.x), embeddings(res.model, res.shared_x))
        dom = domias_scores(plan.audited.x, res.shared_x, plan.population.x, dim=cfg.audit.domias_dim)
    return ShadowOutput(
        target=target, run=run, log_p=sig["log_p"], phi=sig["phi"], log_p_pop=sig_pop["log_p"], dcr_feature=dcr_f,
        dcr_embedding=dcr_e, domias=dom, uar=res.uar, bytes_up_total=res.bytes_up_total,
        epsilon_accounted=res.epsilon_accounted, replay_index=replay_index, replay=replay,
        cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0,
    )  # fmt: skip


def replay_choice(plan: AuditPlan, k: int) -> np.ndarray:
    """The real audited examples the server-knowledge attack replays: the first ``k`` of the first client."""
    first = plan.owner[0]
    return np.flatnonzero((plan.owner == first) & ~plan.is_canary)[:k]


def server_replay(
    cfg: Config, data: Dataset, plan: AuditPlan, *, spec: TargetSpec, run: int, seed: int, rows: np.ndarray,
    observed: dict[str, np.ndarray],
) -> np.ndarray:
    """The server-knowledge attack on run ``run``: for each audited row, the owner's computation replayed by the
    server (the task it sent: run seed, θ₀, config, and under server synthesis the merf centre) on the client's data
    with the row IN and with it OUT — every other record as it was (the adversary of DP's definition) — scored
    against what the client uploaded: its set, or under ``federation.merf_synthesis: server`` its merf release."""
    run_cfg = target_config(cfg, spec)
    init = fixed_init_state(run_cfg.model, n_classes=data.n_classes)
    theta0 = {k: v.numpy() for k, v in init.items()}
    kind = task_kind(run_cfg, "synthetic")
    shape = tuple(plan.audited.x.shape[1:])
    centre = None
    if kind == "statistics":  # the server computes the centre as the run did: from public inputs only
        public = public_pool(run_cfg, n_classes=data.n_classes, input_shape=shape) \
            if "public" in (run_cfg.federation.server_start, run_cfg.federation.merf_centre) else None  # fmt: skip
        centre = merf_centre(run_cfg, n_classes=data.n_classes, input_shape=shape, run_seed=seed, init_state=init,
                             public=public)  # fmt: skip
    task = Task(pipeline="synthetic", kind=kind, round=1, seed=seed, state=theta0, cfg=run_cfg, centre=centre)
    scores = []
    for i in rows:
        cid = str(plan.owner[i])
        replays = []
        for member in (True, False):
            m = plan.member.copy()
            m[i, run] = member
            mine = run_clients(replace(plan, member=m), run)[cid]
            reply = run_task(task, LocalClient(cid, mine, data.n_classes, None, run_cfg.privacy))
            replays.append(np.empty(0) if reply.error is not None else _as_received(reply, run_cfg, kind, data, shape))
        scores.append(replay_score(observed[cid], replays[0], replays[1]))
    return np.asarray(scores, dtype=np.float64)


def _as_received(reply: Reply, cfg: Config, kind: str, data: Dataset, shape: tuple[int, ...]) -> np.ndarray:
    """A replayed upload as the server saw the real one: the set decoded from the run's encoding, or the merf release
    through the server's own acceptance checks."""
    if kind == "share":
        return decode_arrays(reply.arrays, encoding=cfg.federation.set_encoding, source=reply.client_id)[0]
    width = statistics_width(cfg, n_classes=data.n_classes, input_shape=shape)
    sums, counts, privacy = accept_statistics(reply, n_classes=data.n_classes, dim=width, max_bytes=2**62)
    return ClientStatistics(client_id=reply.client_id, sums=sums, counts=counts, privacy=privacy).release()


@dataclass(frozen=True)
class OneRunPlan:
    """The one-run experiments of the DP targets: canaries, their owners and their secret coins.

    Attributes:
        canaries: ``[m]`` canaries built from population utterances (never in any client's own data).
        owner: ``[m]`` the client id each canary is inserted into.
        member: ``[m, runs]`` bool, independent fair coins: canary ``i`` IN run ``r``.
        reference: population utterances that are not canary sources (DOMIAS's reference data).
    """

    canaries: FeatureSet
    owner: np.ndarray
    member: np.ndarray
    reference: FeatureSet

    @property
    def runs(self) -> int:
        return int(self.member.shape[1])


def make_one_run_plan(cfg: Config, data: Dataset, plan: AuditPlan) -> OneRunPlan:
    """``audit.one_run_canaries`` canaries (``audit.canary_kind``) from the plan's population, dealt round-robin to
    the participating clients, each IN each of ``audit.one_run_runs`` runs by its own fair coin.

    Raises:
        ConfigError: more canaries than population utterances.
    """
    a = cfg.audit
    if a.one_run_canaries > len(plan.population) - 2:
        raise ConfigError(
            f"audit.one_run_canaries: {a.one_run_canaries} canaries are built from the {len(plan.population)} "
            f"population utterances (audit.population) and must leave at least 2 as reference data; use at most "
            f"{len(plan.population) - 2} or 0 to switch the one-run audit off"
        )
    seed = int_seed(cfg.seed, "audit/one_run")
    canaries = make_canaries(plan.population, n=a.one_run_canaries, kind=a.canary_kind, n_classes=data.n_classes,
                             seed=seed)  # fmt: skip
    sources = {u.split("/", 2)[2] for u in canaries.utterance_id}
    reference = plan.population.subset(np.asarray([u not in sources for u in plan.population.utterance_id], bool))
    clients = sorted(plan.fixed, key=lambda c: int(c.rsplit("-", 1)[1]))
    owner = np.asarray([clients[i % len(clients)] for i in range(len(canaries))])
    member = rng(seed, "coins").random((len(canaries), a.one_run_runs)) < 0.5
    return OneRunPlan(canaries=canaries, owner=owner, member=member, reference=reference)


@dataclass(frozen=True)
class OneRunOutput:
    """The signals of one one-run experiment of one target.

    Attributes:
        target: the target name.
        run: the run index (column of ``OneRunPlan.member``).
        log_p: ``[m]`` log p_y of every canary (its canary label) on the run's global model.
        dcr_feature: ``[m]`` −distance of every canary to the closest shared record (``None``: nothing shared).
        domias: ``[m]`` DOMIAS scores against the shared set (``None``: nothing shared).
        uar: the run's UAR on the test speakers.
        epsilon_accounted: the largest accounted ε of the run's clients, or ``None``.
        cpu_s: CPU seconds of the process while running it.
        wall_s: wall seconds.
        node: the Ray node id the run ran on (``""`` in-process) — infrastructure telemetry, not private data.
    """

    target: str
    run: int
    log_p: np.ndarray
    dcr_feature: np.ndarray | None
    domias: np.ndarray | None
    uar: float
    epsilon_accounted: float | None
    cpu_s: float
    wall_s: float
    node: str = ""


def one_run_clients(plan: AuditPlan, one: OneRunPlan, run: int) -> dict[str, FeatureSet]:
    """Client id → its data in one-run experiment ``run``: its fixed part plus its canaries whose coin is IN."""
    out = {}
    for cid, part in plan.fixed.items():
        mine = (one.owner == cid) & one.member[:, run]
        out[cid] = FeatureSet.concat([part, repeat(one.canaries.subset(mine), plan.canary_copies)])
    return out


def run_one_run(
    cfg: Config, data: Dataset, plan: AuditPlan, one: OneRunPlan, *, target: str, run: int
) -> OneRunOutput:
    """Run ``target``'s whole pipeline once as one-run experiment ``run`` and score every canary."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed = int_seed(cfg.seed, f"audit/{target}/one_run/{run}")
        res = run_target(cfg, data, spec=parse_target(target), clients=one_run_clients(plan, one, run), seed=seed)
    finally:
        torch.set_num_threads(threads)
    x = one.canaries.x
    dcr_f = dom = None
    if res.shared_x is not None:
        dcr_f = dcr_scores(x, res.shared_x)
        dom = domias_scores(x, res.shared_x, one.reference.x, dim=cfg.audit.domias_dim)
    return OneRunOutput(
        target=target, run=run, log_p=model_signals(res.model, x, one.canaries.y)["log_p"], dcr_feature=dcr_f,
        domias=dom, uar=res.uar, epsilon_accounted=res.epsilon_accounted, cpu_s=time.process_time() - cpu0,
        wall_s=time.perf_counter() - wall0,
    )  # fmt: skip


Output = TypeVar("Output", ShadowOutput, OneRunOutput)


def ray_node() -> str:
    """The id of the Ray node this process runs on, ``""`` outside Ray (``ray`` is not imported to find out)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id() or "")


def _job(
    cfg: Config, data: Dataset, plan: AuditPlan, one: OneRunPlan | None, kind: str, target: str, run: int
) -> ShadowOutput | OneRunOutput:
    """One run of the audit (the form a Ray task takes): ``kind`` ``"shadow"`` or ``"one_run"``."""
    out: ShadowOutput | OneRunOutput
    if kind == "shadow":
        out = run_shadow(cfg, data, plan, target=target, run=run)
    else:
        assert one is not None
        out = run_one_run(cfg, data, plan, one, target=target, run=run)
    return replace(out, node=ray_node())


def save_output(path: Path, out: ShadowOutput | OneRunOutput) -> None:
    """One finished run as ``.npz`` (fields that are ``None`` left out), written atomically."""
    arrays = {f.name: np.asarray(getattr(out, f.name)) for f in fields(out) if getattr(out, f.name) is not None}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def load_output(path: Path, cls: type[Output]) -> Output | None:
    """A run saved by ``save_output``, or ``None`` when the file is missing or unreadable (then it is re-run)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            values: dict[str, Any] = {}
            for f in fields(cls):
                if f.name not in z.files:
                    values[f.name] = None
                    continue
                v = z[f.name]
                values[f.name] = v.item() if v.ndim == 0 else v
    except (OSError, ValueError, KeyError, EOFError):
        return None
    values["run"] = int(values["run"])
    values["node"] = str(values["node"] or "")  # runs saved before nodes were recorded have none
    return cls(**values)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def ray_tmpdir(out_dir: Path) -> tuple[Path, Path | None]:
    """``RAY_TMPDIR`` for a run: ``out_dir/ray``. Ray's socket paths add ~60 characters below it and Unix caps them
    at 107 bytes, so a long ``out_dir`` is reached through a short symbolic link in the system temporary folder
    (the files still live under the run folder). Returns the path to give Ray and the link to remove afterwards."""
    target = (out_dir / "ray").resolve()
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) <= 40:
        return target, None
    link = Path(tempfile.mkdtemp(prefix="fsa-")) / "r"
    link.symlink_to(target, target_is_directory=True)
    return link, link


def run_shadows(
    cfg: Config,
    data: Dataset,
    plan: AuditPlan,
    *,
    targets: list[str],
    workers: int,
    out_dir: Path,
    progress: Progress | None = None,
    one_run: OneRunPlan | None = None,
    one_run_targets: tuple[str, ...] = (),
) -> tuple[dict[str, list[ShadowOutput]], dict[str, list[OneRunOutput]]]:
    """Every shadow run of every target, and every one-run experiment of ``one_run_targets``; runs already saved
    under ``out_dir/runs`` (an interrupted audit of the same config) are loaded, not re-run.

    Args:
        cfg: the whole config.
        data: the prepared dataset.
        plan: the audit plan.
        targets: target names.
        workers: parallel Ray tasks (1 CPU each); 0 runs them sequentially in this process. On a cluster
            (``federation.ray_address``) at most the cluster's CPUs.
        out_dir: the run folder (finished runs and Ray's temporary folder go below it).
        progress: ``(stage, done, total)`` callback.
        one_run: the one-run plan (with ``one_run_targets``).
        one_run_targets: targets that also get the one-run experiments.

    Returns:
        Target name → its shadow runs in run order; target name → its one-run experiments in run order.
    """
    for t in targets:
        parse_target(t)
    jobs = [("shadow", t, r) for t in targets for r in range(plan.runs)]
    if one_run is not None:
        jobs += [("one_run", t, r) for t in one_run_targets for r in range(one_run.runs)]
    cls: dict[str, type[ShadowOutput] | type[OneRunOutput]] = {"shadow": ShadowOutput, "one_run": OneRunOutput}

    def path(kind: str, t: str, r: int) -> Path:
        return out_dir / "runs" / t / f"{kind}-{r}.npz"

    finished: dict[tuple[str, str, int], ShadowOutput | OneRunOutput] = {}
    for kind, t, r in jobs:
        loaded = load_output(path(kind, t, r), cls[kind])  # type: ignore[type-var]
        if loaded is not None:
            finished[(kind, t, r)] = loaded
    todo = [j for j in jobs if j not in finished]

    def done(job: tuple[str, str, int], out: ShadowOutput | OneRunOutput) -> None:
        save_output(path(*job), out)
        finished[job] = out
        if progress:
            progress("audit runs", len(finished), len(jobs))

    if progress:
        progress("audit runs", len(finished), len(jobs))
    if workers <= 0:
        for job in todo:
            done(job, _job(cfg, data, plan, one_run, *job))
    elif todo:
        _run_on_ray(cfg, data, plan, one_run, jobs=todo, workers=workers, out_dir=out_dir, on_done=done)
    shadows = {t: [finished[("shadow", t, r)] for r in range(plan.runs)] for t in targets}
    ones = {t: [finished[("one_run", t, r)] for r in range(one_run.runs)] for t in one_run_targets} if one_run else {}
    return shadows, ones  # type: ignore[return-value]


def _run_on_ray(
    cfg: Config,
    data: Dataset,
    plan: AuditPlan,
    one_run: OneRunPlan | None,
    *,
    jobs: list[tuple[str, str, int]],
    workers: int,
    out_dir: Path,
    on_done: Callable[[tuple[str, str, int], ShadowOutput | OneRunOutput], None],
) -> None:
    import ray

    address = cfg.federation.ray_address
    tmp, link = (None, None) if address else ray_tmpdir(out_dir)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    caller = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if _main_thread() else {}
    stop_recorded(out_dir)  # Ray processes a SIGKILLed audit of this folder left behind
    before = children()
    if address:  # an existing cluster: its own CPUs, object store and temp dir; shutdown only disconnects
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        os.environ["RAY_TMPDIR"] = str(tmp)
        ray.init(
            num_cpus=workers, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
            _temp_dir=str(tmp), configure_logging=False,
        )  # fmt: skip
    for sig, handler in caller.items():  # ray.init installs its own SIGTERM handlers (Python's and its C++
        signal.signal(sig, handler)  # core's abort); the caller's come back, so a signal unwinds to the finally below
    try:
        record_children(out_dir, exclude=before)  # for the next run of this folder, should this one be SIGKILLed
        if address:
            workers = max(1, min(workers, int(ray.cluster_resources().get("CPU", 0))))
        remote = ray.remote(num_cpus=1, max_retries=0)(_job)
        c, d, p, o = ray.put(cfg), ray.put(data), ray.put(plan), ray.put(one_run)
        queue = list(jobs)
        pending: dict[Any, tuple[str, str, int]] = {}
        while queue or pending:
            while queue and len(pending) < workers:  # at most `workers` runs in flight
                kind, t, r = queue.pop(0)
                pending[remote.remote(c, d, p, o, kind, t, r)] = (kind, t, r)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                on_done(pending.pop(ref), ray.get(ref))
    finally:
        ray.shutdown()
        forget(out_dir)
        if link is not None:
            link.unlink(missing_ok=True)
            link.parent.rmdir()
