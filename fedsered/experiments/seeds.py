"""Multi-seed runs: the ``--seeds`` syntax, one job per seed run or resumed in a run folder, and the statistics.

``fedsered train``, ``simulate`` and ``distill`` share this machinery (DESIGN.md, "Comparisons"). For every seed the
command's config is re-validated with that ``seed`` (which redraws the corpus, the test-speaker split, the
partitions and every random stream) and the command's single-seed job runs on it. A seed is the unit of
resumption: its record (the job's result plus ``seed`` and ``fingerprint``) is written atomically to the file a
``SeedStore`` names — ``DIR/seeds/<seed>.json``, or ``DIR/seeds/<seed>/results.json`` for jobs that leave a whole run
folder per seed — and a finished record of the same configuration is reused, never recomputed. The folder's spec
file (``fedsered.resume``) holds the config digest, and a folder or a seed record of another configuration is
refused with one line.

The summaries are built from ``estimates`` (mean ± 95 % CI per metric) and ``paired`` (the per-seed difference of two
methods run on the same seeds, and its CI) of ``fedsered.stats``; ``to_csv`` writes the per-seed rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsered.config import Config, config_from_dict
from fedsered.errors import ConfigError
from fedsered.io import atomic_write_json
from fedsered.resume import Exclude, check_resume, config_digest
from fedsered.stats import mean_ci, paired_difference

StageProgress = Callable[[str, int, int], None]
SeedDone = Callable[[dict[str, Any], bool], None]
SeedJob = Callable[[Config, Path, StageProgress | None], dict[str, Any]]
"""A command's single-seed job: ``(config of the seed, the seed's folder, progress) -> result`` (JSON-ready)."""

MAX_SEEDS = 10_000
"""Most seeds one ``--seeds`` may list (guards against a typo such as ``0-40000000``)."""

RESULTS_FILE = "results.json"
"""A per-seed run folder's record (``SeedStore.folder_per_seed``)."""


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


@dataclass(frozen=True)
class SeedStore:
    """How a command keeps its finished seeds in its run folder.

    Attributes:
        spec_name: the folder's spec file (``fedsered.resume.check_resume``), e.g. ``train.json``.
        what: the kind of run, for the refusal message (``"multi-seed training"``).
        exclude: what the config digest leaves out (``fedsered.resume.config_digest``): at least ``seed`` and
            ``output``, and whatever a seed's result does not depend on.
        required: keys every finished record holds; a record without them is recomputed.
        folder_per_seed: the job leaves a run folder per seed, ``seeds/<seed>/`` with the record as its
            ``results.json``; otherwise the record is ``seeds/<seed>.json`` and the job gets ``seeds/``.
    """

    spec_name: str
    what: str
    exclude: Exclude
    required: tuple[str, ...]
    folder_per_seed: bool = True

    def fingerprint(self, cfg: Config) -> str:
        """Digest of everything one seed's result depends on."""
        return config_digest(cfg, exclude=self.exclude)

    def seed_dir(self, out_dir: Path, seed: int) -> Path:
        """The folder the job of ``seed`` writes in."""
        return out_dir / "seeds" / str(seed) if self.folder_per_seed else out_dir / "seeds"

    def record_path(self, out_dir: Path, seed: int) -> Path:
        """The record of ``seed``."""
        if self.folder_per_seed:
            return self.seed_dir(out_dir, seed) / RESULTS_FILE
        return out_dir / "seeds" / f"{seed}.json"

    def load(self, path: Path, digest: str) -> dict[str, Any] | None:
        """The finished record at ``path``, or ``None`` when there is none (missing, unreadable or unfinished).

        Raises:
            ConfigError: the record is finished but of another configuration.
        """
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing, or hand-edited (atomic writes leave no partial file): recomputed
        if not isinstance(record, dict) or any(k not in record for k in self.required):
            return None  # e.g. a simulation's own results.json, written before the seed was recorded
        if record.get("fingerprint") != digest:
            raise ConfigError(
                f"{path}: holds a seed of another configuration (fingerprint {record.get('fingerprint')} != "
                f"{digest}); delete it or choose a new --out"
            )
        return record


def run_seeds(
    cfg: Config,
    seeds: tuple[int, ...],
    *,
    store: SeedStore,
    job: SeedJob,
    out_dir: str | Path,
    progress: StageProgress | None = None,
    on_seed: SeedDone | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``job`` for every seed into ``out_dir``, one seed after another.

    Args:
        cfg: the whole config (its own ``seed`` is replaced by each of ``seeds``).
        seeds: the seeds, in order (non-empty, distinct).
        store: where the records go and what the digest covers.
        job: the command's single-seed job; its result, with ``seed`` and ``fingerprint`` put first, is the record.
        out_dir: the run folder (``store.spec_name``, ``seeds/``).
        progress: optional ``(stage, done, total)`` callback; stage ``"seeds"`` counts seeds, the others are a
            seed's own stages prefixed with ``"seed <s> "``.
        on_seed: called with ``(record, resumed)`` as each seed is finished or found finished.

    Returns:
        ``seeds``, ``records`` (one record per seed, in order), ``ran`` and ``resumed`` (counts).

    Raises:
        ConfigError: no seeds, repeated seeds, an invalid seed, or ``out_dir`` (or a seed record in it) holds
            another configuration — all before any seed runs, except a seed record found on the way.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be non-empty and distinct, got {list(seeds)}")
    per_seed = [config_for_seed(cfg, s) for s in seeds]  # every seed validated before any work
    digest = store.fingerprint(cfg)
    out_dir = Path(out_dir)
    check_resume(
        out_dir, spec_name=store.spec_name, digest=digest, cfg=cfg, what=store.what, may_change="seed and --seeds"
    )
    records: list[dict[str, Any]] = []
    ran = resumed = 0
    for i, seed_cfg in enumerate(per_seed):
        if progress is not None:
            progress("seeds", i, len(per_seed))
        seed = seed_cfg.seed
        path = store.record_path(out_dir, seed)
        record = store.load(path, digest)
        was_resumed = record is not None
        if record is None:
            cb = (lambda st, d, t, _s=seed: progress(f"seed {_s} {st}", d, t)) if progress else None
            result = job(seed_cfg, store.seed_dir(out_dir, seed), cb)
            record = {"seed": seed, "fingerprint": digest, **result}
            record.update(seed=seed, fingerprint=digest)  # first, whether or not the job's result has them
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


def estimates(values: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """``{metric: mean_ci(values).to_json()}`` for one method's per-seed values of each metric."""
    return {metric: mean_ci(v).to_json() for metric, v in values.items()}


def paired(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The paired difference ``a - b`` of two methods over the same seeds, for each metric of ``a``.

    Args:
        a: ``{metric: [value per seed]}`` of the first method.
        b: the same for the second, seeds in the same order.

    Returns:
        ``{metric: paired_difference(...).to_json(), "per_seed": {metric: [difference per seed]}}``.
    """
    out: dict[str, Any] = {"per_seed": {}}
    for metric, va in a.items():
        vb = b[metric]
        out[metric] = paired_difference(va, vb).to_json()
        out["per_seed"][metric] = [float(x) - float(y) for x, y in zip(va, vb, strict=True)]
    return out


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``results.csv``: one line per row with ``columns`` (other keys left out; ``seconds`` rounded to ms)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        seconds = row.get("seconds")
        w.writerow({**row, "seconds": round(float(seconds), 3)} if seconds is not None else row)
    return buf.getvalue()


def results_json(run: Mapping[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """The multi-seed ``results.json``: ``seeds``, ``rows``, ``summary``, ``ran`` and ``resumed``."""
    return {"seeds": run["seeds"], "rows": rows, "summary": summary, "ran": run["ran"], "resumed": run["resumed"]}


def outputs(
    run: Mapping[str, Any],
    *,
    rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    summarise: Callable[[list[dict[str, Any]]], dict[str, Any]],
    columns: Sequence[str],
) -> tuple[dict[str, Any], str]:
    """``results.json`` (``results_json``) and ``results.csv`` (``to_csv``) of a multi-seed run.

    Args:
        run: what ``run_seeds`` returned.
        rows: the command's per-seed rows of its records.
        summarise: the command's summary of its records.
        columns: the CSV columns.
    """
    table = rows(run["records"])
    return results_json(run, table, summarise(run["records"])), to_csv(table, columns)
