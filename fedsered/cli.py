"""The ``fedsered`` command line: one entry point, one subcommand per job.

Every subcommand takes ``CONFIG``, repeatable ``--set a.b=value`` overrides (values parsed as YAML) and ``--out DIR``;
it writes ``DIR/config.yaml`` (resolved) and ``DIR/results.json`` atomically, and holds ``DIR`` while it runs
(``fedsered.runfolder``: checked before any work, locked, no stale ``results.json``, no hand-written file replaced).
A ``FedseredError`` becomes one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
``train``, ``distill`` and ``simulate`` also take ``--seeds`` (``fedsered.experiments.seeds``): one resumable run per
seed under ``DIR/seeds/``, a summary table over the seeds, and ``DIR/results.csv``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fedsered.config import Config, load_config
from fedsered.errors import ConfigError, FedseredError
from fedsered.io import atomic_write_json, atomic_write_text
from fedsered.runfolder import claim

if TYPE_CHECKING:
    from fedsered.experiments.seeds import SeedJob, SeedStore
    from fedsered.federation.results import ComparisonResult

LOG_WIDTH = 160
"""Columns of the tables when output goes to a file or pipe (``make run > log``) and ``COLUMNS`` is not set: rich
would otherwise lay them out at 80 columns and cut the pipeline names and figures to ``…``."""


def _width(stream: Any) -> int | None:
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return None if os.environ.get("COLUMNS") or tty else LOG_WIDTH


out_console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

StageProgress = Callable[[str, int, int], None]


class _LogLines:
    """Progress as plain one-line updates (stderr is a log, not a terminal): a line when a stage starts, at every
    10 % of it or every 15 s, and when it ends — done/total, elapsed and the remaining time at the rate so far (work
    found finished when the stage started, a resumed run's, does not count towards the rate)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stages: dict[str, tuple[float, int]] = {}  # stage -> (start time, done at start)
        self.last: dict[str, tuple[float, int]] = {}  # stage -> (time, tenth of the last line)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        if stage not in self.stages:
            self.stages[stage] = (now, done)
            self.last[stage] = (now, -1)
        start, done0 = self.stages[stage]
        t_last, tenth_last = self.last[stage]
        tenth = 10 * done // max(total, 1)
        if not (done >= total or tenth > tenth_last or now - t_last >= 15):
            return
        self.last[stage] = (now, tenth)
        elapsed = now - start
        left = ""
        if done > done0 and done < total:
            left = f", ~{_duration(elapsed / (done - done0) * (total - done))} left"
        err_console.print(f"{stage}: {done}/{total}, {_duration(elapsed)} elapsed{left}", highlight=False)


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@contextmanager
def _progress() -> Iterator[StageProgress]:
    """Progress on stderr; yields a ``(stage, done, total)`` callback. On a terminal one rich bar per stage (done,
    elapsed, remaining); in a log plain one-line updates (``_LogLines``)."""
    if not err_console.is_terminal:
        yield _LogLines()
        return
    bars = Progress(
        TextColumn("[bold]{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("left"), TimeRemainingColumn(), console=err_console, transient=False,
    )  # fmt: skip
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield update


def _out_dir(args: argparse.Namespace, cfg: Config) -> Path:
    return Path(args.out or cfg.output.dir)


def _write_run(out: Path, cfg: Config, results: dict[str, Any]) -> None:
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    atomic_write_json(out / "results.json", results)
    err_console.print(f"[dim]wrote {out / 'results.json'}[/dim]")


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="corpus", show_header=True)
    table.add_column("emotion")
    table.add_column("utterances", justify="right")
    for name, count in summary["per_emotion"].items():
        table.add_row(name, str(count))
    table.add_section()
    table.add_row("speakers", str(summary["speakers"]))
    table.add_row("utterances", str(summary["utterances"]))
    table.add_row("duration", f"{summary['duration_s'] / 60:.1f} min")
    table.add_row("skipped files", str(summary["skipped"]))
    table.add_row("excluded (label set)", str(sum(summary["excluded"].values())))
    return table


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    out_console.print(cfg.to_yaml(), end="", markup=False, highlight=False)
    if args.out:
        _write_run(Path(args.out), cfg, {"valid": True})
    return 0


def cmd_data(args: argparse.Namespace, cfg: Config) -> int:
    from fedsered.data.dataset import build_dataset

    with _progress() as progress:
        data = build_dataset(cfg, progress=progress)
    out_console.print(_summary_table(data.summary))
    for s in data.summary["skipped_files"]:
        err_console.print(f"[yellow]skipped[/yellow] {s['path']}: {s['reason']}")
    clients = Table(title=f"{len(data.clients)} clients ({cfg.federation.partition})")
    for col in ("client", "utterances", "speakers", *data.emotions):
        clients.add_column(col, justify="right")
    rows = data.client_table()
    for row in rows:
        clients.add_row(str(row["client"]), str(row["n"]), ",".join(row["speakers"]), *map(str, row["per_class"]))
    out_console.print(clients)
    out_console.print(
        f"train {len(data.train)} / test {len(data.test)} utterances; "
        f"test speakers: {', '.join(data.summary['test_speakers'])}"
    )
    _write_run(
        _out_dir(args, cfg),
        cfg,
        {"summary": data.summary, "clients": rows, "n_train": len(data.train), "n_test": len(data.test)},
    )
    return 0


def _train_line(record: dict[str, Any], resumed: bool) -> str:
    cnn, ref = record["cnn"], record["functionals"]
    how = "resumed" if resumed else f"{cnn['seconds'] + ref['seconds']:.1f} s"
    return (
        f"seed {record['seed']}: centralised {cnn['model']['name']}: UAR {cnn['uar']:.3f}  WA {cnn['wa']:.3f}; "
        f"functionals: UAR {ref['uar']:.3f}  WA {ref['wa']:.3f}  (train {cnn['n_train']}, test {cnn['n_test']}, {how})"
    )


def _est(obj: dict[str, Any] | None, *, signed: bool = False) -> str:
    """An ``Estimate.to_json()`` as ``mean ± half width`` (``-`` for none)."""
    from fedsered.stats import Estimate

    if obj is None:
        return "-"
    return Estimate(obj["mean"], obj["lo"], obj["hi"], obj["n"], obj["level"]).fmt(signed=signed)


def _seeds_table(what: str, seeds: list[int], columns: tuple[str, ...], *, paired: str = "Δ paired by seed") -> Table:
    """A summary table over seeds: the first column left-aligned, the others right; the caption says what it is."""
    table = Table(
        title=f"{what}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})",
        caption=f"mean ± 95 % CI over seeds (Student t); {paired}",
    )
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i else "left")
    return table


def _train_table(summary: dict[str, Any]) -> Table:
    table = _seeds_table("centralised models", summary["seeds"], ("model", "UAR", "WA"))
    table.caption = f"{table.caption}\n{summary['verdict']['text']}"
    default = summary["verdict"]["default_model"]
    for method, entry in summary["models"].items():
        label = f"{entry['name']} (CNN)" if method == "cnn" else f"{entry['name']} (logreg)"
        label += " (default)" if method == default else ""
        table.add_row(label, _est(entry["uar"]), _est(entry["wa"]))
    table.add_section()
    for pair, diff in summary["paired"].items():
        a, b = pair.split(" - ")
        table.add_row(f"Δ {a} − {b}", _est(diff["uar"], signed=True), _est(diff["wa"], signed=True))
    return table


def _seeded(
    args: argparse.Namespace,
    cfg: Config,
    *,
    store: SeedStore,
    job: SeedJob,
    line: Callable[[dict[str, Any], bool], str],
    table: Callable[[dict[str, Any]], Table],
    outputs: Callable[[dict[str, Any]], tuple[dict[str, Any], str]],
) -> int:
    """A command over ``--seeds`` (default: the config's seed): run or resume each seed, print one line per seed
    and the summary table, write ``results.csv``, ``results.json`` and ``config.yaml``."""
    from fedsered.experiments.seeds import parse_seeds, run_seeds

    seeds = parse_seeds(args.seeds) if args.seeds is not None else (cfg.seed,)
    out = _out_dir(args, cfg)

    def on_seed(record: dict[str, Any], resumed: bool) -> None:
        out_console.print(line(record, resumed), markup=False, highlight=False, soft_wrap=True)

    with _progress() as progress:
        run = run_seeds(cfg, seeds, store=store, job=job, out_dir=out, progress=progress, on_seed=on_seed)
    results, csv_text = outputs(run)
    out_console.print(table(results["summary"]))
    out_console.print(f"seeds: {run['ran']} run, {run['resumed']} resumed")
    atomic_write_text(out / "results.csv", csv_text)
    _write_run(out, cfg, results)
    return 0


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from fedsered.experiments.train import STORE, results_json, to_csv, train_seed

    return _seeded(
        args, cfg, store=STORE, job=train_seed, line=_train_line, table=_train_table,
        outputs=lambda run: (results_json(run, default_model=cfg.train.default_model), to_csv(run["records"])),
    )  # fmt: skip


def _fmt_uar(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if std is None else f"{value:.3f} ± {std:.3f}"


def _distill_line(record: dict[str, Any], resumed: bool) -> str:
    sets = "; ".join(
        f"ipc {ipc}: " + ", ".join(f"{m} {row['uar_fixed_init']:.3f}" for m, row in rows.items())
        for ipc, rows in record["by_ipc"].items()
    )
    seconds = sum(row["seconds"] for rows in record["by_ipc"].values() for row in rows.values())
    how = "resumed" if resumed else f"distilled in {seconds:.1f} s"
    return f"seed {record['seed']}: UAR θ₀ full data {record['full_data_uar']:.3f}; {sets}  ({how})"


def _distill_seeds_table(summary: dict[str, Any]) -> Table:
    columns = ("method", "ipc", "UAR θ₀", "UAR random init", "Δ − random", "Δ − full data", "seeds")
    table = _seeds_table("distillation on the training split (θ₀ fixed)", summary["seeds"], columns)
    for ipc, entries in summary["by_ipc"].items():
        for method, e in entries.items():
            table.add_row(
                method, ipc, _est(e["uar_fixed_init"]), _est(e["uar_random_init"]),
                "" if e["minus_random"] is None else _est(e["minus_random"]["uar_fixed_init"], signed=True),
                _est(e["minus_full_data"]["uar_fixed_init"], signed=True), str(e["uar_fixed_init"]["n"]),
            )  # fmt: skip
    table.add_section()
    full = summary["full_data"]["uar_fixed_init"]
    table.add_row("full data", "all", _est(full), "", "", "", str(full["n"]))
    return table


def cmd_distill(args: argparse.Namespace, cfg: Config) -> int:
    from fedsered.experiments import distill
    from fedsered.experiments import seeds as multi

    if args.seeds is not None:
        return _seeded(
            args, cfg, store=distill.STORE, job=distill.distill_seed, line=_distill_line, table=_distill_seeds_table,
            outputs=partial(multi.outputs, rows=distill.rows, summarise=distill.summarise, columns=distill.CSV_COLUMNS),
        )  # fmt: skip
    out = _out_dir(args, cfg)
    with _progress() as progress:
        result = distill.distill_run(cfg, out_dir=out, progress=progress)
    table = Table(title=f"distillation on {result['n_train']} training utterances ({cfg.model.name}, θ₀ fixed)")
    for col in ("method", "ipc", "UAR θ₀", f"UAR random init (K={cfg.distill.eval_random_inits})", "seconds"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for rows in result["by_ipc"].values():
        for method, row in rows.items():
            table.add_row(
                method, str(row["ipc"]), _fmt_uar(row["uar_fixed_init"]),
                _fmt_uar(row["uar_random_init"], row["uar_random_init_std"]), f"{row['seconds']:.2f}",
            )  # fmt: skip
    table.add_section()
    table.add_row("full data", f"all ({result['n_train']})", _fmt_uar(result["full_data_uar"]), "", "")
    out_console.print(table)
    out_console.print(f"full-data UAR (θ₀, {cfg.train.epochs} epochs): {result['full_data_uar']:.3f}")
    _write_run(out, cfg, result)
    return 0


def _simulate_tables(result: ComparisonResult) -> tuple[Table, Table]:
    facts = result.facts
    method = f"{facts.get('method')}{', server synthesis' if facts.get('merf_synthesis') == 'server' else ''}"
    clients = Table(title=f"clients ({method}, ipc {facts.get('ipc')}, {facts.get('mode')})")
    for col in ("client", "round", "status", "bytes up", "seconds", "peak RSS MB", "ε", "note"):
        clients.add_column(col, justify="left" if col in ("client", "status", "note") else "right")
    for c in result.main.clients:
        eps = (c.privacy or {}).get("epsilon")
        clients.add_row(
            c.id, str(c.round), c.status, f"{c.bytes_up:,}", "-" if c.seconds is None else f"{c.seconds:.1f}",
            "-" if c.peak_rss_mb is None else f"{c.peak_rss_mb:.0f}", "-" if eps is None else f"{eps:.2f}",
            (c.error or "")[:60],
        )  # fmt: skip
    pipes = Table(
        title="global model on held-out test speakers (same partitions, seed and θ₀)",
        caption="linear ref: log-Mel functionals + logistic regression fitted on the same examples as the CNN",
    )
    for col in ("pipeline", "UAR", "WA", "linear ref UAR", "bytes uploaded", "seconds"):
        pipes.add_column(col, justify="left" if col == "pipeline" else "right")
    for name, r in {"synthetic sharing": result.main, **result.baselines}.items():
        ref = "-" if r.reference is None else f"{r.reference['uar']:.3f}"
        pipes.add_row(name, f"{r.uar:.3f}", f"{r.wa:.3f}", ref, f"{r.bytes_up_total:,}", f"{r.seconds:.1f}")
    return clients, pipes


def _simulate_line(record: dict[str, Any], resumed: bool) -> str:
    from fedsered.experiments.simulate import pipelines

    uars = "; ".join(
        f"{'synthetic sharing' if name == 'synthetic' else name} {p.uar:.3f}" for name, p in pipelines(record).items()
    )
    how = "resumed" if resumed else f"{record['runtime']['wall_seconds']:.1f} s"
    return f"seed {record['seed']}: global UAR {uars}  ({how})"


def _simulate_seeds_table(summary: dict[str, Any]) -> Table:
    columns = ("pipeline", "UAR", "WA", "Δ UAR", "Δ WA", "linear ref UAR", "CNN − linear ref", "bytes uploaded (mean)",
               "seeds")  # fmt: skip
    table = _seeds_table(
        "global model on held-out test speakers", summary["seeds"], columns,
        paired="Δ = synthetic sharing − pipeline, paired by seed; linear ref: log-Mel functionals + logistic "
        "regression on the same examples",
    )  # fmt: skip
    vs_ref = summary.get("cnn_vs_reference", {})
    for name, e in summary["pipelines"].items():
        diff = summary["paired"].get(f"synthetic - {name}")
        table.add_row(
            "synthetic sharing" if name == "synthetic" else name, _est(e["uar"]), _est(e["wa"]),
            "" if diff is None else _est(diff["uar"], signed=True),
            "" if diff is None else _est(diff["wa"], signed=True),
            _est(e.get("ref_uar")), _est(vs_ref[name]["uar"], signed=True) if name in vs_ref else "-",
            f"{e['bytes_up_total']['mean']:,.0f}", str(e["uar"]["n"]),
        )  # fmt: skip
    return table


def cmd_simulate(args: argparse.Namespace, cfg: Config) -> int:
    from fedsered.experiments import seeds as multi
    from fedsered.experiments import simulate
    from fedsered.federation.client import client_id
    from fedsered.federation.results import ComparisonResult
    from fedsered.privacy.client import check_overrides

    refused = [p for p in ("synthetic", *cfg.federation.baselines) if p != "pooled" and p not in cfg.privacy.share]
    if refused:  # in simulation the YAML is the clients' own policy: say so before starting Ray
        raise ConfigError(
            f"federation.baselines / privacy.share: the simulated clients' policy does not allow {', '.join(refused)}; "
            "add them to privacy.share (each client would refuse them)"
        )
    check_overrides(cfg.privacy, client_ids=[client_id(k) for k in range(cfg.federation.num_clients)])
    if args.seeds is not None:
        return _seeded(
            args, cfg, store=simulate.STORE, job=partial(simulate.simulate_seed, verbose=args.verbose),
            line=_simulate_line,
            table=_simulate_seeds_table,
            outputs=partial(
                multi.outputs, rows=simulate.rows, summarise=simulate.summarise, columns=simulate.CSV_COLUMNS
            ),
        )  # fmt: skip
    out = _out_dir(args, cfg)
    # the ServerApp ran in Flower's runtime (another thread here, another process under a SuperLink): its result
    # reaches the CLI through results.json, read back as the typed result
    results = simulate.simulate_run(cfg, out, verbose=args.verbose)
    result, runtime = ComparisonResult.from_json(results), results["runtime"]
    clients, pipes = _simulate_tables(result)
    out_console.print(clients)
    out_console.print(pipes)
    cmp = result.to_json()["comparison"]
    if cmp.get("uar_fraction_of_pooled") is not None:
        out_console.print(f"synthetic sharing: {cmp['uar_fraction_of_pooled']:.1%} of pooled UAR")
    if "fedavg_bytes_ratio" in cmp:
        how = "≥ " if cmp["fedavg_bytes_ratio_is_lower_bound"] else ""
        out_console.print(
            f"FedAvg uploads {how}{cmp['fedavg_bytes_ratio']:.3g}× the bytes of synthetic sharing to come within "
            f"{cmp['uar_tolerance']:.2f} UAR of it"
            + (f" (round {cmp['fedavg_rounds_run']})" if cmp["fedavg_reached"] else
               f" (it never got there in {cmp['fedavg_rounds_run']} rounds, the cap federation.fedavg_rounds)")
        )
    out_console.print(f"global UAR {result.main.uar:.3f}; wall {runtime['wall_seconds']:.1f} s")
    _write_run(out, cfg, results)
    return 0


def cmd_audit(args: argparse.Namespace, cfg: Config) -> int:
    import shlex

    from fedsered.data.dataset import build_dataset
    from privacy_audits.report import bound
    from privacy_audits.run import run_audit

    out = _out_dir(args, cfg)
    argv = sys.argv[2:] if sys.argv[1:2] == ["audit"] else [args.config]
    command = "fedsered audit " + " ".join(shlex.quote(a) for a in argv)
    with _progress() as progress:
        data = build_dataset(cfg, progress=progress)
        results = run_audit(cfg, data, out_dir=out, command=command, progress=progress)
    fpr = max(cfg.audit.fpr)
    table = Table(title=f"membership inference ({cfg.audit.shadows} runs per pipeline)")
    cols = ("pipeline", "UAR", "accounted ε", "AUC", f"TPR@{fpr:.1%}", "ε LB (ceiling)", "one-run ε LB (ceiling)",
            "bytes up", "attack")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("pipeline", "attack") else "right")
    for name, r in results["pipelines"].items():
        eps = "-" if r["epsilon_accounted"] is None else f"{r['epsilon_accounted']:.2f}"
        one = r.get("one_run")
        table.add_row(
            name, f"{r['uar']:.3f}", eps, f"{r['auc']:.3f}", f"{r['tpr_at_fpr'][str(fpr)]:.3f}",
            bound(r["epsilon_lower_bound"], r["epsilon_certifiable"]),
            "-" if one is None else bound(one["epsilon_lower_bound"], one["epsilon_certifiable"]),
            f"{r['bytes_up_total']:,}", r["headline_attack"],
        )  # fmt: skip
    out_console.print(table)
    out_console.print(f"report: {out / 'report.html'}; wall {results['seconds']:.1f} s")
    _write_run(out, cfg, results)
    return 0


def _paired_cell(diff: dict[str, Any] | None) -> str:
    """A paired Δ (``Estimate.to_json()``) with its sign; "no common seed" for none."""
    return "no common seed" if diff is None else _est(diff, signed=True)


def _sweep_table(summary: dict[str, Any], *, cfg: Config) -> Table:
    """``sweep.metric`` per method and ε (mean ± CI over seeds), each method followed by one row per reference:
    its paired Δ to that reference (``summary["paired"]``; "no common seed" where the two share none)."""
    labels = [("inf" if e == "inf" else f"{e:g}") for e in cfg.sweep.epsilons]
    columns = ("method", *("ε=∞ (no DP)" if e == "inf" else f"ε={e}" for e in labels))
    table = _seeds_table(f"{summary['metric']} vs ε, IPC {cfg.sweep.ipc}", list(cfg.sweep.seeds), columns)
    for method, points in summary["curves"].items():
        table.add_row(method, *[_est(points[e]) if e in points else "" for e in labels])
        paired = summary["paired"].get(method, {})
        for ref in next(iter(paired.values()), {}):  # the same references at every ε of a method
            cells = [_paired_cell(paired[e][ref]) if e in paired else "" for e in labels]
            table.add_row(f"  Δ − {ref.replace('_', ' ')}", *cells)
        table.add_section()
    return table


def cmd_sweep(args: argparse.Namespace, cfg: Config) -> int:
    from fedsered.data.dataset import build_dataset
    from fedsered.experiments.sweep import run_sweep, write_outputs

    out = _out_dir(args, cfg)
    with _progress() as progress:
        data = build_dataset(cfg, progress=progress)
        summary = run_sweep(cfg, data, out_dir=out, progress=progress)
    out_console.print(_sweep_table(summary, cfg=cfg))
    out_console.print(f"cells: {summary['ran']} run, {summary['resumed']} resumed")
    write_outputs(summary, out_dir=out)
    _write_run(out, cfg, summary)
    return 0


SEEDED = ("train", "distill", "simulate")
"""The commands that take ``--seeds``."""

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, Config], int], str]] = {
    "validate": (cmd_validate, "check a config and print it resolved (defaults filled in)"),
    "data": (cmd_data, "build/cache the corpus and features; print the corpus and client summary"),
    "train": (cmd_train, "centralised CNN vs functionals reference over --seeds: UAR/WA, 95% CIs, paired difference"),
    "distill": (cmd_distill, "distil the training split with each method and IPC; score the sets on test speakers"),
    "sweep": (cmd_sweep, "privacy-utility sweep: UAR of DP distillation over epsilon x method x seed (resumable)"),
    "simulate": (cmd_simulate, "federated simulation on Flower + Ray: clients share synthetic sets; baselines"),
    "audit": (cmd_audit, "membership-inference audit of each sharing pipeline with whole-pipeline shadow runs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsered", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", metavar="CONFIG", help="YAML config file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, value parsed as YAML (repeatable)")  # fmt: skip
        p.add_argument("--out", metavar="DIR", help="run folder (default: output.dir of the config)")
        if name == "simulate":
            p.add_argument("-v", "--verbose", action="store_true",
                           help="show Flower's own log lines (default: progress lines and warnings)")  # fmt: skip
        if name in SEEDED:
            p.add_argument("--seeds", metavar="SEEDS", help="seeds to run and compare, e.g. 0-4 or 0,2,5 "
                           "(default: the config's seed); finished seeds in --out are reused")  # fmt: skip
    return parser


def _quiet_environment() -> None:
    """Keep third-party libraries off the network and out of the home folder."""
    os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "fedsered-mpl"))
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into the same unwinding as Ctrl-C (``finally`` blocks run: Ray shut down, locks released)."""

    signum = signal.SIGTERM


_TERMINATED: list[int] = []
"""SIGTERMs this process received: a library that catches the ``Interrupted`` and raises a plain
``KeyboardInterrupt`` in its place (seen under load, the signal landing inside Ray's calls) drops its ``signum``."""


def _terminate(signum: int, frame: object) -> None:
    _TERMINATED.append(signum)
    raise Interrupted


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops a command as Ctrl-C does
    out = None
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "validate" and not args.out:  # validate writes a run folder only when asked to
            return handler(args, cfg)
        out = _out_dir(args, cfg)
        with claim(out, config_path=args.config, config_text=cfg.to_yaml()):
            return handler(args, cfg)
    except FedseredError as exc:
        print(f"fedsered {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", _TERMINATED[-1] if _TERMINATED else signal.SIGINT)
        again = "" if out is None else f"; run the same command again to resume {out}"
        print(f"fedsered {args.command}: interrupted by {signal.Signals(signum).name}{again}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
