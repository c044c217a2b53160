"""The multi-seed centralised experiment (``fedsered train``): the CNN and the functionals reference per seed.

For every seed the run's config is re-validated with that ``seed`` (which redraws the embedded corpus, the
test-speaker split and every random stream), the dataset is built once with functionals, and both centralised
models (``fedsered.centralised``) are fitted on its training speakers and scored on its test speakers. The summary
(``summarise``) holds per model the mean ± 95 % CI of UAR and WA over the seeds, and the paired difference CNN −
functionals with its CI (``fedsered.stats``): same seed, same split, so the split's large seed-to-seed spread
cancels in the difference.

A seed is the unit of resumption (DESIGN.md). Each finished seed is written atomically to ``DIR/seeds/<seed>.json``
and reused when the command runs again; ``DIR/train.json`` records the config digest (``fedsered.resume``), and a
folder of another configuration is refused. The digest leaves out what a seed's result does not depend on: the
``seed`` itself (the list of seeds may grow), ``output``, ``features.cache_dir`` and the sections ``fedsered
train`` never reads (``distill``, ``privacy``, ``sweep``, ``federation``, ``audit``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsered.centralised import run_centralised, run_functionals_baseline
from fedsered.config import Config, config_from_dict
from fedsered.data.dataset import build_dataset
from fedsered.errors import ConfigError
from fedsered.io import atomic_write_json
from fedsered.resume import check_resume, config_digest
from fedsered.stats import mean_ci, paired_difference

StageProgress = Callable[[str, int, int], None]
SeedDone = Callable[[dict[str, Any], bool], None]

METHODS: tuple[str, ...] = ("cnn", "functionals")
"""The models of every seed, in table order."""

METRICS: tuple[str, ...] = ("uar", "wa")
"""The metrics summarised over seeds."""

PAIRED: tuple[str, str] = ("cnn", "functionals")
"""The paired comparison reported: first minus second."""

MAX_SEEDS = 10_000
"""Most seeds one ``--seeds`` may list (guards against a typo such as ``0-40000000``)."""

SPEC_FILE = "train.json"
"""The run folder's record of the config digest."""

CSV_COLUMNS: tuple[str, ...] = ("seed", "method", "model", "uar", "wa", "n_train", "n_test", "seconds")

_NOT_IN_FINGERPRINT: dict[str, Any] = {
    "seed": True, "output": True, "distill": True, "privacy": True, "sweep": True, "federation": True,
    "audit": True, "features": {"cache_dir"},
}  # fmt: skip


def parse_seeds(spec: str) -> tuple[int, ...]:
    """The seeds of a ``--seeds`` value: comma-separated seeds and inclusive ascending ranges.

    Examples: ``"0-4"`` → (0, 1, 2, 3, 4); ``"0,2,5"`` → (0, 2, 5); ``"0-2,7"`` → (0, 1, 2, 7).

    Args:
        spec: the text given to ``--seeds``.

    Returns:
        The seeds in the order given.

    Raises:
        ConfigError: one line naming the value and what is expected (not an integer, a negative seed, a
            descending range, a repeated seed, or more than ``MAX_SEEDS``).
    """
    expected = "expected seeds and ranges such as 0-4 or 0,2,5"
    seeds: list[int] = []
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise ConfigError(f"--seeds {spec!r}: empty item; {expected}")
    for item in items:
        lo_text, sep, hi_text = item.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ConfigError(f"--seeds {spec!r}: {item!r} is not a seed or a range; {expected}") from None
        if hi < lo:
            raise ConfigError(f"--seeds {spec!r}: range {item!r} is descending; write it as {hi}-{lo}")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {spec!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(lo, hi + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--seeds {spec!r}: seed {repeated[0]} is listed twice")
    return tuple(seeds)


def config_for_seed(cfg: Config, seed: int) -> Config:
    """``cfg`` with ``seed`` replaced, validated (an out-of-range seed raises one ``ConfigError`` line)."""
    return config_from_dict({**cfg.model_dump(mode="json"), "seed": seed}, source=f"--seeds (seed {seed})")


def fingerprint(cfg: Config) -> str:
    """Digest of everything one seed's result depends on (module docstring)."""
    return config_digest(cfg, exclude=_NOT_IN_FINGERPRINT)


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


def _load_record(path: Path, digest: str) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # cannot happen with atomic writes; a hand-edited file is recomputed
    if not isinstance(record, dict) or any(m not in record for m in METHODS):
        return None
    if record.get("fingerprint") != digest:
        raise ConfigError(
            f"{path}: holds a seed of another configuration (fingerprint {record.get('fingerprint')} != {digest}); "
            "delete it or choose a new --out"
        )
    return record


def run_seeds(
    cfg: Config,
    seeds: tuple[int, ...],
    *,
    out_dir: str | Path,
    progress: StageProgress | None = None,
    on_seed: SeedDone | None = None,
) -> dict[str, Any]:
    """Run (or resume) every seed into ``out_dir``.

    Args:
        cfg: the whole config (its own ``seed`` is replaced by each of ``seeds``).
        seeds: the seeds, in order (non-empty, distinct).
        out_dir: the run folder (``train.json``, ``seeds/<seed>.json``).
        progress: optional ``(stage, done, total)`` callback; stage ``"seeds"`` counts seeds, the others are a
            seed's own stages prefixed with ``"seed <s> "``.
        on_seed: called with ``(record, resumed)`` as each seed is finished or found finished.

    Returns:
        ``seeds``, ``records`` (one seed record per seed, in order), ``ran`` and ``resumed`` (counts).

    Raises:
        ConfigError: no seeds, repeated seeds, an invalid seed, or ``out_dir`` holds another configuration.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be non-empty and distinct, got {list(seeds)}")
    per_seed = [config_for_seed(cfg, s) for s in seeds]  # every seed validated before any work
    digest = fingerprint(cfg)
    out_dir = Path(out_dir)
    check_resume(
        out_dir, spec_name=SPEC_FILE, digest=digest, cfg=cfg, what="multi-seed training", may_change="seed and --seeds"
    )
    records: list[dict[str, Any]] = []
    ran = resumed = 0
    for i, seed_cfg in enumerate(per_seed):
        if progress is not None:
            progress("seeds", i, len(per_seed))
        path = out_dir / "seeds" / f"{seed_cfg.seed}.json"
        record = _load_record(path, digest) if path.exists() else None
        was_resumed = record is not None
        if record is None:
            cb = (lambda st, d, t, _s=seed_cfg.seed: progress(f"seed {_s} {st}", d, t)) if progress else None
            record = run_seed(seed_cfg, progress=cb)
            atomic_write_json(path, record)
            ran += 1
        else:
            resumed += 1
        records.append(record)
        if on_seed is not None:
            on_seed(record, was_resumed)
    if progress is not None:
        progress("seeds", len(per_seed), len(per_seed))
    return {"seeds": list(seeds), "records": records, "ran": ran, "resumed": resumed}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± 95 % CI per model and metric over the seeds, and the paired difference ``PAIRED``.

    Args:
        records: seed records (``run_seed``), one per seed.

    Returns:
        ``seeds``, ``models`` (``{method: {"name", metric: Estimate.to_json()}}``), ``per_seed``
        (``{method: {metric: [value per seed]}}``) and ``paired``
        (``{"cnn - functionals": {metric: Estimate.to_json(), "per_seed": {metric: [difference per seed]}}}``).
    """
    models: dict[str, Any] = {}
    for method in METHODS:
        entry: dict[str, Any] = {"name": records[0][method]["model"]["name"]}
        for metric in METRICS:
            entry[metric] = mean_ci([float(r[method][metric]) for r in records]).to_json()
        models[method] = entry
    a, b = PAIRED
    paired: dict[str, Any] = {"per_seed": {}}
    for metric in METRICS:
        va = [float(r[a][metric]) for r in records]
        vb = [float(r[b][metric]) for r in records]
        paired[metric] = paired_difference(va, vb).to_json()
        paired["per_seed"][metric] = [x - y for x, y in zip(va, vb, strict=True)]
    per_seed = {m: {k: [float(r[m][k]) for r in records] for k in METRICS} for m in METHODS}
    return {
        "seeds": [r["seed"] for r in records], "models": models, "per_seed": per_seed,
        "paired": {f"{a} - {b}": paired},
    }  # fmt: skip


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
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows(records):
        w.writerow({**row, "seconds": round(float(row["seconds"]), 3)})
    return buf.getvalue()


def results_json(run: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` of ``fedsered train``.

    Args:
        run: what ``run_seeds`` returned.

    Returns:
        ``seeds``, ``rows`` (per seed and model), ``summary`` (``summarise``), ``ran`` and ``resumed``. With a
        single seed, the top level also carries that seed's CNN result and ``data`` as ``fedsered train`` wrote
        them before ``--seeds`` existed (``uar``, ``wa``, ``confusion``, ``n_train``, ...).
    """
    records = run["records"]
    doc: dict[str, Any] = {}
    if len(records) == 1:
        doc.update({**records[0]["cnn"], "data": records[0]["data"]})
    doc.update({
        "seeds": run["seeds"], "rows": rows(records), "summary": summarise(records), "ran": run["ran"],
        "resumed": run["resumed"],
    })  # fmt: skip
    return doc
