"""The multi-seed centralised experiment (``fedsered train``): the CNN and the functionals reference per seed.

For every seed the run's config is re-validated with that ``seed`` (which redraws the embedded corpus, the
test-speaker split and every random stream), the dataset is built once with functionals, and both centralised
models (``fedsered.centralised``) are fitted on its training speakers and scored on its test speakers. The summary
(``summarise``) holds per model the mean ± 95 % CI of UAR and WA over the seeds, and the paired difference CNN −
functionals with its CI (``fedsered.stats``): same seed, same split, so the split's large seed-to-seed spread
cancels in the difference.

A seed is the unit of resumption (DESIGN.md; the loop is ``fedsered.experiments.seeds``). Each finished seed is
written atomically to ``DIR/seeds/<seed>.json`` and reused when the command runs again; ``DIR/train.json`` records
the config digest (``fedsered.resume``), and a folder of another configuration is refused. The digest leaves out
what a seed's result does not depend on: the ``seed`` itself (the list of seeds may grow), ``output``,
``features.cache_dir`` and the sections ``fedsered train`` never reads (``distill``, ``privacy``, ``sweep``,
``federation``, ``audit``) and ``train.default_model``.

``train.default_model`` names the corpus's model of record (the one measured better on it; RESULTS.md): it is listed
first, a one-seed run's top-level result, and the summary says whether the run's own paired verdict agrees with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsered.centralised import run_centralised, run_functionals_baseline
from fedsered.config import Config
from fedsered.data.dataset import build_dataset
from fedsered.experiments import seeds as multi
from fedsered.experiments.seeds import SeedStore, StageProgress, estimates, paired
from fedsered.experiments.seeds import parse_seeds as parse_seeds  # re-exported: ``--seeds`` predates seeds.py

METHODS: tuple[str, ...] = ("cnn", "functionals")
"""The models of every seed, in table order."""

METRICS: tuple[str, ...] = ("uar", "wa")
"""The metrics summarised over seeds."""

PAIRED: tuple[str, str] = ("cnn", "functionals")
"""The paired comparison reported: first minus second."""

SPEC_FILE = "train.json"
"""The run folder's record of the config digest."""

CSV_COLUMNS: tuple[str, ...] = ("seed", "method", "model", "uar", "wa", "n_train", "n_test", "seconds")

STORE = SeedStore(
    spec_name=SPEC_FILE, what="multi-seed training", required=METHODS, folder_per_seed=False,
    exclude={
        "seed": True, "output": True, "distill": True, "privacy": True, "sweep": True, "federation": True,
        "audit": True, "features": {"cache_dir"}, "train": {"default_model"},
    },
)  # fmt: skip
"""``DIR/seeds/<seed>.json``; the digest leaves out what a seed does not depend on (module docstring)."""


def fingerprint(cfg: Config) -> str:
    """Digest of everything one seed's result depends on (module docstring)."""
    return STORE.fingerprint(cfg)


def run_seed(cfg: Config, *, progress: StageProgress | None = None) -> dict[str, Any]:
    """Build the dataset of ``cfg.seed`` and fit and score both models on it.

    Args:
        cfg: the whole config, with the seed to run.
        progress: optional ``(stage, done, total)`` callback.

    Returns:
        The seed record: ``seed``, ``fingerprint``, ``cnn`` (``run_centralised``), ``functionals``
        (``run_functionals_baseline``) and ``data`` (the corpus summary).
    """
    data = build_dataset(cfg, progress=progress, functionals=True)
    cnn = run_centralised(cfg, data, progress=progress)
    ref = run_functionals_baseline(cfg, data)
    return {
        "seed": cfg.seed, "fingerprint": fingerprint(cfg), "cnn": cnn, "functionals": ref,
        "data": {"summary": data.summary},
    }  # fmt: skip


def train_seed(cfg: Config, out_dir: Path, progress: StageProgress | None) -> dict[str, Any]:
    """The job of one seed (``seeds.SeedJob``): ``run_seed`` (it writes nothing itself; the record is the file)."""
    return run_seed(cfg, progress=progress)


def summarise(records: list[dict[str, Any]], *, default_model: str) -> dict[str, Any]:
    """Mean ± 95 % CI per model and metric over the seeds, and the paired difference ``PAIRED``.

    Args:
        records: seed records (``run_seed``), one per seed.
        default_model: the config's model of record (``train.default_model``), listed first.

    Returns:
        ``seeds``, ``models`` (``{method: {"name", metric: Estimate.to_json()}}``), ``per_seed``
        (``{method: {metric: [value per seed]}}``) and ``paired``
        (``{"cnn - functionals": {metric: Estimate.to_json(), "per_seed": {metric: [difference per seed]}}}``) and
        ``verdict`` (``verdict`` of the UAR difference, with ``default_model`` and ``agrees``: false when the
        seeds show the other model better).
    """
    order = (default_model, *(m for m in METHODS if m != default_model))
    per_seed = {m: {k: [float(r[m][k]) for r in records] for k in METRICS} for m in order}
    models = {m: {"name": records[0][m]["model"]["name"], **estimates(per_seed[m])} for m in order}
    a, b = PAIRED
    diff = paired(per_seed[a], per_seed[b])
    said = verdict(diff["uar"], first=a, second=b)
    agrees = said["better"] in (None, default_model)
    if not agrees:
        said["text"] += f"; this config's train.default_model is {default_model}: the seeds say otherwise"
    return {
        "seeds": [r["seed"] for r in records], "models": models, "per_seed": per_seed,
        "paired": {f"{a} - {b}": diff}, "verdict": {**said, "default_model": default_model, "agrees": agrees},
    }  # fmt: skip


def verdict(diff: dict[str, Any], *, first: str, second: str) -> dict[str, Any]:
    """Which model the seeds show better in UAR: the paired difference's 95 % CI decides, never the mean alone.

    Args:
        diff: ``Estimate.to_json()`` of ``first − second``.
        first, second: the two models' names.

    Returns:
        ``better`` (``first``, ``second``, or ``None`` when the interval contains 0 or is undefined), ``ahead_on_mean``
        and ``text``, the sentence ``fedsered train`` prints under its table.
    """
    ahead = first if diff["mean"] > 0 else second if diff["mean"] < 0 else None
    lo, hi = diff["lo"], diff["hi"]
    if lo is None or hi is None:
        better, text = None, "one seed: no interval, so no model is shown better (run --seeds 0-4)"
    elif lo > 0 or hi < 0:
        better = first if lo > 0 else second
        text = f"{better} is better in UAR: the paired 95 % CI of {first} − {second} excludes 0"
    else:
        better = None
        text = (f"neither model is better in UAR at 95 %: the paired CI of {first} − {second} contains 0"
                + (f" ({ahead} ahead on the mean)" if ahead else ""))  # fmt: skip
    return {"better": better, "ahead_on_mean": ahead, "text": text}


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per seed and model: ``CSV_COLUMNS`` plus the confusion matrix."""
    out = []
    for r in records:
        for method in METHODS:
            m = r[method]
            out.append({
                "seed": r["seed"], "method": method, "model": m["model"]["name"], "uar": m["uar"], "wa": m["wa"],
                "n_train": m["n_train"], "n_test": m["n_test"], "seconds": m["seconds"], "confusion": m["confusion"],
            })  # fmt: skip
    return out


def to_csv(records: list[dict[str, Any]]) -> str:
    """``results.csv``: one row per seed and model (``CSV_COLUMNS``)."""
    return multi.to_csv(rows(records), CSV_COLUMNS)


def results_json(run: dict[str, Any], *, default_model: str) -> dict[str, Any]:
    """``results.json`` of ``fedsered train``.

    Args:
        run: what ``seeds.run_seeds`` returned with ``STORE`` and ``train_seed``.
        default_model: the config's model of record (``train.default_model``).

    Returns:
        ``seeds``, ``rows`` (per seed and model), ``summary`` (``summarise``), ``ran`` and ``resumed``. With a
        single seed, the top level also carries that seed's result of ``default_model`` and ``data`` as
        ``fedsered train`` wrote them before ``--seeds`` existed (``uar``, ``wa``, ``confusion``, ``n_train``, ...).
    """
    records = run["records"]
    doc: dict[str, Any] = {}
    if len(records) == 1:
        doc.update({**records[0][default_model], "data": records[0]["data"]})
    doc.update(multi.results_json(run, rows(records), summarise(records, default_model=default_model)))
    return doc
