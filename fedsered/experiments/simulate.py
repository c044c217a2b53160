"""The federated comparison (``fedsered simulate``): one Flower/Ray simulation, and the same over seeds.

``simulate_run`` is the single-seed command: the resolved config written where the ServerApp reads it, one
simulation of synthetic sharing and every ``federation.baselines`` pipeline (``simulations.runner.simulate``), and
the ServerApp's ``results.json`` read back as the typed ``ComparisonResult`` (the server ran in Flower's runtime).
A run folder is resumable: ``DIR/simulate-run.json`` holds ``run_fingerprint`` of the config (the seed included;
Ray resources and output paths excluded) and a re-run with another config is refused with one line; with the same
config the finished pipelines (``DIR/pipelines/``) are taken and the clients answer re-sent tasks from their filed
replies (``DIR/clients/<id>/replies/``), so nothing finished is computed, or released, again. A folder that holds
``clients/`` or ``pipelines/`` without that spec was not written by a resumable run and is refused, never cleared.

Over ``--seeds`` (``fedsered.experiments.seeds``) the simulations run one after another, each in its own run folder
``DIR/seeds/<seed>/`` (``config.yaml``, ``results.json``, ``clients/``, ``shared/``, ...), resumable:
``DIR/simulate.json`` holds the digest of the config without ``seed``, ``output``, ``features.cache_dir``, the Ray
resources (``federation.cpus_per_client``, ``ray_num_cpus``, ``object_store_mb``, ``ray_address``) and the
sections a simulation never reads (``functionals``, ``sweep``, ``audit``). ``summarise`` gives per pipeline the mean
± 95 % CI of the global model's UAR and WA and of the bytes uploaded, and the paired difference synthetic sharing −
each baseline, seed by seed (same seed ⇒ same speakers, split, partitions and θ₀). Where every seed of a pipeline
carries the server's linear reference (``federation.linear_reference``), its UAR is summarised too (``ref_uar``),
paired between pipelines like the CNN's, and the paired difference CNN − linear reference of each pipeline is in
``cnn_vs_reference``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsered.config import Config
from fedsered.errors import ConfigError
from fedsered.experiments.seeds import SeedStore, StageProgress, estimates, paired
from fedsered.federation.checkpoint import run_fingerprint
from fedsered.federation.results import ComparisonResult
from fedsered.io import atomic_write_text
from fedsered.resume import check_resume

MAIN = "synthetic"
"""The pipeline every baseline is compared with."""

METRICS: tuple[str, ...] = ("uar", "wa")
"""The global model's metrics summarised and paired over seeds."""

CSV_COLUMNS: tuple[str, ...] = (
    "seed", "pipeline", "uar", "wa", "ref_uar", "ref_wa", "bytes_up_total", "rounds", "seconds",
)  # fmt: skip

STORE = SeedStore(
    spec_name="simulate.json", what="multi-seed simulation", required=("fingerprint", "global_uar", "baselines"),
    exclude={
        "seed": True, "output": True, "functionals": True, "sweep": True, "audit": True, "features": {"cache_dir"},
        "federation": {"cpus_per_client", "ray_num_cpus", "object_store_mb", "ray_address"},
    },
)  # fmt: skip
"""``DIR/seeds/<seed>/`` (a ``fedsered simulate`` run folder each); the digest's exclusions (module docstring)."""

RUN_SPEC = "simulate-run.json"
"""A run folder's resume spec (``fedsered.resume.check_resume``)."""


def simulate_run(cfg: Config, out: Path, *, verbose: bool = False) -> dict[str, Any]:
    """One simulation into the run folder ``out``; its ``results.json`` contract with ``runtime`` added.

    A folder of an earlier run of the same config resumes it (module docstring); one of another config, or holding
    ``clients/`` or ``pipelines/`` of a run without a spec, is refused. An earlier ``out/results.json`` is removed
    first (a failed run leaves none); ``out/config.yaml`` is the resolved ``cfg``, which the ServerApp reads.

    Returns:
        ``ComparisonResult.to_json()`` of the ServerApp's result, plus ``runtime`` (``simulate``'s facts).

    Raises:
        ConfigError: the folder holds another run (one line naming the folder).
    """
    from simulations.runner import simulate  # Flower and Ray only where a simulation runs

    if not (out / RUN_SPEC).exists():
        own = [name for name in ("clients", "pipelines") if (out / name).exists()
               and not (name == "clients" and cfg.federation.ledger_dir is not None)]  # fmt: skip
        if own:
            raise ConfigError(
                f"{out}: holds {'/ and '.join(own)}/ but no {RUN_SPEC}: not a resumable fedsered simulate run (an "
                f"older version, or not fedsered's); choose a new --out (nothing in it is deleted)"
            )
    check_resume(out, spec_name=RUN_SPEC, digest=run_fingerprint(cfg), cfg=cfg, what="simulation",
                 may_change="Ray resources and output paths")  # fmt: skip
    (out / "results.json").unlink(missing_ok=True)
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    runtime = simulate(cfg, config_path=out / "config.yaml", out=out, verbose=verbose)
    result = ComparisonResult.from_json(json.loads((out / "results.json").read_text(encoding="utf-8")))
    return {**result.to_json(), "runtime": runtime}


def simulate_seed(
    cfg: Config, out_dir: Path, progress: StageProgress | None, *, verbose: bool = False
) -> dict[str, Any]:
    """The job of one seed (``seeds.SeedJob``): ``simulate_run`` in the seed's folder (progress: the ServerApp's
    own lines on the console)."""
    return simulate_run(cfg, out_dir, verbose=verbose)


def pipelines(record: dict[str, Any]) -> dict[str, Any]:
    """``{pipeline: PipelineResult}`` of a seed record: synthetic sharing first, then the baselines in order."""
    result = ComparisonResult.from_json(record)
    return {MAIN: result.main, **result.baselines}


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per seed and pipeline (``CSV_COLUMNS``): the global model's UAR and WA, the linear reference's (empty
    where there is none), bytes uploaded, rounds."""
    out = []
    for r in records:
        for name, p in pipelines(r).items():
            ref = p.reference or {}
            out.append({
                "seed": r["seed"], "pipeline": name, "uar": p.uar, "wa": p.wa, "ref_uar": ref.get("uar"),
                "ref_wa": ref.get("wa"), "bytes_up_total": p.bytes_up_total, "rounds": len(p.rounds),
                "seconds": p.seconds,
            })  # fmt: skip
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± 95 % CI per pipeline over the seeds, and the paired difference synthetic sharing − each baseline.

    Args:
        records: the seed records (``simulate_run`` results), one per seed, all of one configuration.

    Returns:
        ``seeds``; ``pipelines`` (``{pipeline: {"uar", "wa", "bytes_up_total": Estimate.to_json()}}``, synthetic
        first); ``per_seed`` (``{pipeline: {metric: [value per seed]}}``) and ``paired``
        (``{"synthetic - <baseline>": seeds.paired(...)}`` of UAR and WA, and of ``ref_uar`` where both have it);
        ``cnn_vs_reference`` (``{pipeline: seeds.paired(...)}``: the CNN's UAR − the linear reference's, per pipeline
        whose every seed has the reference).
    """
    runs = [pipelines(r) for r in records]
    per_seed: dict[str, dict[str, list[float]]] = {}
    for name in runs[0]:
        per_seed[name] = {
            "uar": [run[name].uar for run in runs], "wa": [run[name].wa for run in runs],
            "bytes_up_total": [float(run[name].bytes_up_total) for run in runs],
        }  # fmt: skip
        refs = [run[name].reference for run in runs]
        if all(refs):
            per_seed[name]["ref_uar"] = [float(ref["uar"]) for ref in refs if ref]
    paired_metrics = (*METRICS, "ref_uar")
    metrics = {name: {m: v[m] for m in paired_metrics if m in v} for name, v in per_seed.items()}

    def common(a: str, b: str) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        keys = [m for m in metrics[a] if m in metrics[b]]
        return {m: metrics[a][m] for m in keys}, {m: metrics[b][m] for m in keys}

    return {
        "seeds": [r["seed"] for r in records], "pipelines": {name: estimates(v) for name, v in per_seed.items()},
        "per_seed": per_seed,
        "paired": {f"{MAIN} - {name}": paired(*common(MAIN, name)) for name in per_seed if name != MAIN},
        "cnn_vs_reference": {
            name: paired({"uar": v["uar"]}, {"uar": v["ref_uar"]}) for name, v in per_seed.items() if "ref_uar" in v
        },
    }  # fmt: skip
