"""The centralised distillation experiment (``fedsered distill``): every method × IPC on the whole training split.

One table of the paper: for each method of ``distill.methods`` and each size of ``distill.ipc`` the whole training
split (all training speakers, no federation) is distilled once, the set is saved under ``<out>/sets/``, and fresh
models trained only on it are scored on the held-out test speakers — from θ₀ (the initialisation the set was distilled
for) and from ``distill.eval_random_inits`` random initialisations. The reference row, ``full_data_uar``, trains on the
whole real training split from the same θ₀. ``distill_run`` is the whole single-seed command (dataset, sets, scores,
the mean log-Mel figures).

Over ``--seeds`` (``fedsered.experiments.seeds``) each seed's run folder is ``DIR/seeds/<seed>/``, resumable
(``DIR/distill.json`` holds the digest of the config without ``seed``, ``output``, ``features.cache_dir`` and the
sections ``fedsered distill`` never reads: ``functionals``, ``sweep``, ``federation``, ``audit``). ``summarise``
gives per IPC and method the mean ± 95 % CI of ``uar_fixed_init`` (and of ``uar_random_init``), and its paired
difference to the ``random`` selection at the same IPC (when ``random`` is among the methods) and to the
full-data model, seed by seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsered.config import Config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.distill.api import distil
from fedsered.distill.dp import sample_rate_and_steps
from fedsered.distill.evaluate import eval_train_config, evaluate_set
from fedsered.distill.synthetic_set import load_set, save_set
from fedsered.experiments.seeds import SeedStore, estimates, paired
from fedsered.io import atomic_write_text
from fedsered.models.build import fixed_init_state
from fedsered.privacy.accountant import privacy_object, releases_of
from fedsered.privacy.client import client_privacy
from fedsered.seeding import int_seed
from fedsered.stats import mean_ci
from fedsered.training.train import evaluate, train_model

StageProgress = Callable[[str, int, int], None]

FULL_DATA = "full_data"
"""The method name of the full-data reference in multi-seed rows."""

REFERENCE = "random"
"""The selection every other method is compared with at the same IPC, when it is among the methods."""

CSV_COLUMNS: tuple[str, ...] = (
    "seed", "method", "ipc", "uar_fixed_init", "uar_random_init", "uar_random_init_std", "seconds",
)  # fmt: skip

STORE = SeedStore(
    spec_name="distill.json", what="multi-seed distillation", required=("fingerprint", "by_ipc", "full_data_uar"),
    exclude={
        "seed": True, "output": True, "functionals": True, "sweep": True, "federation": True, "audit": True,
        "features": {"cache_dir"},
    },
)  # fmt: skip
"""``DIR/seeds/<seed>/`` (a ``fedsered distill`` run folder each); the digest's exclusions (module docstring)."""


def set_stem(method: str, ipc: int) -> str:
    """Where a run folder keeps the set of ``method`` at ``ipc``, relative to the folder (no suffix)."""
    return f"sets/{method}_ipc{ipc}"


def _unique(items: tuple[Any, ...]) -> list[Any]:
    return list(dict.fromkeys(items))


def run_distill(
    cfg: Config, data: Dataset, *, out_dir: str | Path, progress: StageProgress | None = None
) -> dict[str, Any]:
    """Distil the whole training split with every configured method and IPC, save and score each set.

    Protocol:
        - θ₀ is ``fixed_init_state(cfg.model, ...)``; every set is distilled for it (``init_state=θ₀``).
        - ``full_data_uar``: a model trained from θ₀ on the whole real training split with the ``train`` section
          (seed role ``train/centralised``, so it equals the UAR of ``fedsered train`` on the same config), scored on
          ``data.test``.
        - each set: ``distil(data.train, client_id=None, seed=int_seed(cfg.seed, "distill/<method>/<ipc>"))``, saved
          atomically to ``<out_dir>/sets/<method>_ipc<ipc>.{npz,json}``, then scored by ``evaluate_set`` with the
          ``distill.eval_*`` training settings from θ₀ and from ``distill.eval_random_inits`` random initialisations.
          The evaluation seed (role ``distill/eval``) is the same for every set, so all methods meet the same random
          initialisations and the only difference between rows is the set.
        - ``seconds`` is the wall time of distillation alone (not saving or evaluation).

    Args:
        cfg: the whole config (``model``, ``train``, ``distill``, ``features``, ``seed``).
        data: the prepared dataset (``train`` is distilled, ``test`` scores).
        out_dir: the run folder; sets go to ``out_dir/sets/``.
        progress: optional ``(stage, done, total)`` callback.

    Returns:
        The ``results.json`` contract::

            {"full_data_uar": float,
             "methods": {METHOD: ROW},            # the row at the FIRST ipc listed in distill.ipc
             "by_ipc": {"<ipc>": {METHOD: ROW}},  # every ipc (keys are strings, in config order)
             "emotions": [str, ...], "n_train": int, "n_test": int, "seed": int}

        where ``ROW = {"ipc": int, "uar_fixed_init": float, "uar_random_init": float, "uar_random_init_std": float,
        "seconds": float, "set": "sets/<method>_ipc<ipc>"[, "privacy": P]}`` (``set`` is relative to
        ``out_dir``; the random-init mean and std are ``None`` when ``distill.eval_random_inits`` is 0). With
        ``privacy.enabled`` each row has ``privacy``, ``P`` being its set's privacy object (one release at
        ``privacy.target_epsilon``), and the top level gains ``"privacy"``: the accountant's composition of every
        row's release (all sets come from the same training split, so publishing them all costs that ε). Methods
        and IPCs keep config order; repeats are run once.
    """
    out_dir = Path(out_dir)
    n_classes = data.n_classes
    theta0 = fixed_init_state(cfg.model, n_classes=n_classes)
    methods: list[str] = _unique(cfg.distill.methods)
    ipcs: list[int] = _unique(cfg.distill.ipc)
    features = cfg.features.model_dump(mode="json")
    eval_cfg = eval_train_config(cfg.distill, cfg.train)
    eval_seed = int_seed(cfg.seed, "distill/eval")

    privacy = client_privacy(cfg.privacy, client_id=None, n_local=len(data.train))
    if privacy is not None:  # fail before any training: selection methods have no DP mechanism
        for method in methods:
            sample_rate_and_steps(method, cfg=cfg.distill, privacy=privacy)
    cb = (lambda done, total: progress("full-data training", done, total)) if progress else None
    model = train_model(
        data.train.x, data.train.y, model_cfg=cfg.model, train_cfg=cfg.train, n_classes=n_classes,
        init_state=theta0, seed=int_seed(cfg.seed, "train/centralised"), progress=cb,
    )  # fmt: skip
    full_data_uar = float(evaluate(model, data.test.x, data.test.y, n_classes=n_classes)["uar"])
    del model

    by_ipc: dict[str, dict[str, dict[str, Any]]] = {}
    jobs = [(ipc, method) for ipc in ipcs for method in methods]
    for done, (ipc, method) in enumerate(jobs):
        if progress is not None:
            progress("distilling", done, len(jobs))
        stage = f"{method} ipc {ipc}"
        step_cb = (lambda d, t, _s=stage: progress(_s, d, t)) if progress else None
        start = time.perf_counter()
        s = distil(
            data.train, method=method, ipc=ipc, cfg=cfg.distill, model_cfg=cfg.model, n_classes=n_classes,
            init_state=theta0, seed=int_seed(cfg.seed, f"distill/{method}/{ipc}"), progress=step_cb,
            features=features, client_id=None, privacy=privacy, threads=cfg.train.threads,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        stem = set_stem(method, ipc)
        save_set(out_dir / stem, s)
        scores = evaluate_set(
            s, data.test, model_cfg=cfg.model, train_cfg=eval_cfg, n_classes=n_classes, init_state=theta0,
            random_inits=cfg.distill.eval_random_inits, seed=eval_seed,
        )  # fmt: skip
        by_ipc.setdefault(str(ipc), {})[method] = {
            "ipc": int(ipc),
            "uar_fixed_init": float(scores["uar_fixed_init"]),
            "uar_random_init": scores["uar_random_init"],
            "uar_random_init_std": scores["uar_random_init_std"],
            "seconds": float(seconds),
            "set": stem,
        }
        if privacy is not None:
            by_ipc[str(ipc)][method]["privacy"] = s.meta["privacy"]
    if progress is not None:
        progress("distilling", len(jobs), len(jobs))

    result: dict[str, Any] = {
        "full_data_uar": full_data_uar,
        "methods": dict(by_ipc[str(ipcs[0])]),
        "by_ipc": by_ipc,
        "emotions": list(data.emotions),
        "n_train": len(data.train),
        "n_test": len(data.test),
        "seed": int(cfg.seed),
    }
    if privacy is not None:  # every set is a release on the same training split: publishing all composes them
        releases = [r for rows in by_ipc.values() for row in rows.values() for r in releases_of(row["privacy"])]
        result["privacy"] = privacy_object(releases, delta=privacy.delta, accountant=privacy.accountant)
    return result


def distill_run(cfg: Config, *, out_dir: str | Path, progress: StageProgress | None = None) -> dict[str, Any]:
    """``fedsered distill`` on one seed: build the dataset, ``run_distill``, draw each set's mean log-Mel figure.

    Args:
        cfg: the whole config.
        out_dir: the run folder (``sets/``, ``figures/mean_logmel_<method>_ipc<ipc>.png``).
        progress: optional ``(stage, done, total)`` callback.

    Returns:
        ``run_distill``'s result with ``data`` (``{"summary": corpus summary}``) added.
    """
    from fedsered.distill.figures import plot_mean_logmel  # matplotlib only where figures are drawn

    out_dir = Path(out_dir)
    data = build_dataset(cfg, progress=progress)
    result = run_distill(cfg, data, out_dir=out_dir, progress=progress)
    for rows in result["by_ipc"].values():
        for method, row in rows.items():
            s = load_set(out_dir / row["set"], n_classes=data.n_classes, expected_shape=data.input_shape)
            figure = out_dir / "figures" / f"mean_logmel_{method}_ipc{row['ipc']}.png"
            plot_mean_logmel(data.train, s, emotions=data.emotions, path=figure)
    result["data"] = {"summary": data.summary}
    return result


def distill_seed(cfg: Config, out_dir: Path, progress: StageProgress | None) -> dict[str, Any]:
    """The job of one seed (``seeds.SeedJob``): its resolved ``config.yaml``, then ``distill_run``."""
    atomic_write_text(out_dir / "config.yaml", cfg.to_yaml())
    return distill_run(cfg, out_dir=out_dir, progress=progress)


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per seed and set (``CSV_COLUMNS``, IPCs then methods in config order), then the seed's full-data
    row (``method`` ``"full_data"``, ``ipc`` ``None``, only ``uar_fixed_init``)."""
    out: list[dict[str, Any]] = []
    for r in records:
        for by_method in r["by_ipc"].values():
            for method, row in by_method.items():
                out.append({"seed": r["seed"], "method": method, **{k: row.get(k) for k in CSV_COLUMNS[2:]}})
        out.append({"seed": r["seed"], "method": FULL_DATA, "ipc": None, "uar_fixed_init": r["full_data_uar"]})
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± 95 % CI per IPC and method over the seeds, and paired differences to ``random`` and to full data.

    Args:
        records: the seed records (``distill_run`` results), one per seed, all of one configuration.

    Returns:
        ``seeds``; ``full_data`` (``{"uar_fixed_init": Estimate}``); ``by_ipc`` (``{"<ipc>": {METHOD: ENTRY}}``,
        config order) where ``ENTRY`` holds ``uar_fixed_init`` (an ``Estimate.to_json()``), ``uar_random_init``
        (one, or ``None`` without random-init evaluation), ``per_seed`` (``{"uar_fixed_init": [value per seed]}``),
        ``minus_full_data`` (``seeds.paired``: this set minus the full-data model, seed by seed) and
        ``minus_random`` (this set minus ``random`` at the same IPC; ``None`` for ``random`` itself or when
        ``random`` is not among the methods).
    """
    key = "uar_fixed_init"
    full = {key: [float(r["full_data_uar"]) for r in records]}
    by_ipc: dict[str, dict[str, Any]] = {}
    for ipc, by_method in records[0]["by_ipc"].items():
        values = {m: {key: [float(r["by_ipc"][ipc][m][key]) for r in records]} for m in by_method}
        by_ipc[ipc] = {}
        for method, v in values.items():
            randoms = [r["by_ipc"][ipc][method]["uar_random_init"] for r in records]
            ref = values.get(REFERENCE) if method != REFERENCE else None
            by_ipc[ipc][method] = {
                **estimates(v), "uar_random_init": None if None in randoms else mean_ci(randoms).to_json(),
                "per_seed": v, "minus_full_data": paired(v, full),
                "minus_random": None if ref is None else paired(v, ref),
            }  # fmt: skip
    return {"seeds": [r["seed"] for r in records], "full_data": estimates(full), "by_ipc": by_ipc}
