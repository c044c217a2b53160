"""Whole-pipeline shadow runs: the audit plan (who is IN which run) and the runs themselves, as Ray tasks.

Every run re-executes a target's whole pipeline — distillation included, not only a retraining on a fixed set
(Carlini et al. 2022 showed that shortcut underestimates leakage) — on client data where each audited utterance is
IN exactly half of the runs (``membership.balanced_membership``). Each run returns only its signals, so nothing
large crosses processes. Runs execute as Ray tasks (1 CPU each, ``RAY_TMPDIR`` under the run folder, Ray shut down
afterwards), or sequentially in-process with ``workers=0``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fedsered.config import Config
from fedsered.data.dataset import Dataset
from fedsered.data.types import FeatureSet
from fedsered.errors import ConfigError
from fedsered.federation.client import LocalClient, run_task
from fedsered.federation.protocol import Task
from fedsered.models import fixed_init_state
from fedsered.seeding import int_seed, rng
from privacy_audits.attacks.dcr import dcr_scores
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
        uar: the run's UAR on the test speakers.
        bytes_up_total: bytes uploaded by all clients.
        epsilon_accounted: the largest accounted ε of the run's clients, or ``None``.
        replay_index: rows of ``AuditPlan.audited`` the server-knowledge attack scored in this run (synthetic
            targets with ``audit.replay_examples``), else ``None``.
        replay: their server-knowledge scores (``privacy_audits.attacks.replay``).
        cpu_s: CPU seconds of the process while running it.
        wall_s: wall seconds.
    """

    target: str
    run: int
    log_p: np.ndarray
    phi: np.ndarray
    log_p_pop: np.ndarray
    dcr_feature: np.ndarray | None
    dcr_embedding: np.ndarray | None
    uar: float
    bytes_up_total: int
    epsilon_accounted: float | None
    replay_index: np.ndarray | None
    replay: np.ndarray | None
    cpu_s: float
    wall_s: float


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
    dcr_f = dcr_e = None
    if res.shared_x is not None:
        dcr_f = dcr_scores(plan.audited.x, res.shared_x)
        dcr_e = dcr_scores(embeddings(res.model, plan.audited.x), embeddings(res.model, res.shared_x))
    return ShadowOutput(
        target=target, run=run, log_p=sig["log_p"], phi=sig["phi"], log_p_pop=sig_pop["log_p"], dcr_feature=dcr_f,
        dcr_embedding=dcr_e, uar=res.uar, bytes_up_total=res.bytes_up_total, epsilon_accounted=res.epsilon_accounted,
        replay_index=replay_index, replay=replay, cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0,
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
    server (the task it sent: run seed, θ₀, config) on the client's data with the row IN and with it OUT — every other
    record as it was (the adversary of DP's definition) — scored against the set the client uploaded."""
    run_cfg = target_config(cfg, spec)
    theta0 = {k: v.numpy() for k, v in fixed_init_state(run_cfg.model, n_classes=data.n_classes).items()}
    task = Task(pipeline="synthetic", kind="share", round=1, seed=seed, state=theta0, cfg=run_cfg)
    scores = []
    for i in rows:
        cid = str(plan.owner[i])
        replays = []
        for member in (True, False):
            m = plan.member.copy()
            m[i, run] = member
            mine = run_clients(replace(plan, member=m), run)[cid]
            reply = run_task(task, LocalClient(cid, mine, data.n_classes, None, run_cfg.privacy))
            replays.append(np.asarray(reply.arrays["x"]) if reply.error is None else np.empty(0))
        scores.append(replay_score(observed[cid], replays[0], replays[1]))
    return np.asarray(scores, dtype=np.float64)


def _shadow_task(cfg: Config, data: Dataset, plan: AuditPlan, target: str, run: int) -> ShadowOutput:
    """``run_shadow`` with positional arguments (the form a Ray task takes)."""
    return run_shadow(cfg, data, plan, target=target, run=run)


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
) -> dict[str, list[ShadowOutput]]:
    """Every run of every target.

    Args:
        cfg: the whole config.
        data: the prepared dataset.
        plan: the audit plan.
        targets: target names.
        workers: parallel Ray tasks (1 CPU each); 0 runs them sequentially in this process.
        out_dir: the run folder (Ray's temporary folder goes below it when the path is short enough).
        progress: ``(stage, done, total)`` callback.

    Returns:
        Target name → its runs in run order.
    """
    for t in targets:
        parse_target(t)
    jobs = [(t, r) for t in targets for r in range(plan.runs)]
    done: dict[str, list[ShadowOutput]] = {t: [] for t in targets}
    if workers <= 0:
        for i, (t, r) in enumerate(jobs):
            done[t].append(run_shadow(cfg, data, plan, target=t, run=r))
            if progress:
                progress("shadow runs", i + 1, len(jobs))
        return done
    outs = _run_on_ray(cfg, data, plan, jobs=jobs, workers=workers, out_dir=out_dir, progress=progress)
    for o in sorted(outs, key=lambda o: o.run):
        done[o.target].append(o)
    return done


def _run_on_ray(
    cfg: Config,
    data: Dataset,
    plan: AuditPlan,
    *,
    jobs: list[tuple[str, int]],
    workers: int,
    out_dir: Path,
    progress: Progress | None,
) -> list[ShadowOutput]:
    import ray

    tmp, link = ray_tmpdir(out_dir)
    os.environ["RAY_TMPDIR"] = str(tmp)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(
        num_cpus=workers, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
        _temp_dir=str(tmp), configure_logging=False,
    )  # fmt: skip
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_shadow_task)
        cfg_ref, data_ref, plan_ref = ray.put(cfg), ray.put(data), ray.put(plan)
        pending = [remote.remote(cfg_ref, data_ref, plan_ref, t, r) for t, r in jobs]
        outs: list[ShadowOutput] = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            outs.extend(ray.get(ready))
            if progress:
                progress("shadow runs", len(outs), len(jobs))
        return outs
    finally:
        ray.shutdown()
        if link is not None:
            link.unlink(missing_ok=True)
            link.parent.rmdir()
