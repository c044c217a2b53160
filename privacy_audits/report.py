"""The audit report: figures (matplotlib PNGs), ``report.md`` and a self-contained ``report.html`` (figures embedded
as base64, no external file or script), from ``results.json`` content and the ROC points. Writes atomically."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from fedsered.io import atomic_write_bytes, atomic_write_text

THREAT_MODEL = (
    "The adversary is the server, or anyone who receives what the clients share: the aggregated shared sets "
    "(synthetic, selected or raw examples, or model updates for FedAvg) and the global model trained on them. It "
    "wants to know whether a given utterance was in a client's private data. It knows the data distribution: it "
    "holds utterances of population speakers who are in no audited run, and can re-run the whole pipeline "
    "(distillation included) on data of its choice (shadow runs), as in LiRA and RMIA. As the server it also knows "
    "the run seed, the fixed initialisation and the config it sent, and replays a client's own computation with an "
    "utterance IN and OUT (server_replay). DP is audited under the adjacency it is accounted for: add or remove one "
    "utterance of one client. Targets named _reproducible derive the DP noise from the run seed: their epsilon does "
    "NOT hold against the server; every other DP target draws its noise from the client's secret randomness."
)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, str]]) -> bytes:
    """One log-log ROC with every pipeline (its headline attack), chance diagonal included; returns PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    floor = 1e-4
    for name, (fpr, tpr, attack) in curves.items():
        ax.step(np.maximum(fpr, floor), np.maximum(tpr, floor), where="post", label=f"{name} ({attack})")
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false-positive rate",
           ylabel="true-positive rate", title="Membership inference ROC (log-log)")  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    data = _png(fig)
    plt.close(fig)
    return data


def tradeoff_figure(pipelines: dict[str, dict[str, Any]], *, fpr_key: str) -> bytes:
    """Privacy–utility scatter: UAR against TPR at ``fpr_key`` FPR, and UAR against ε (accounted and lower bound)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, r in pipelines.items():
        a.scatter(r["tpr_at_fpr"][fpr_key], r["uar"], s=30)
        a.annotate(name, (r["tpr_at_fpr"][fpr_key], r["uar"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        b.scatter(r["epsilon_lower_bound"], r["uar"], marker="o", s=30, color="C0")
        b.annotate(name, (r["epsilon_lower_bound"], r["uar"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if r["epsilon_accounted"] is not None:
            b.scatter(r["epsilon_accounted"], r["uar"], marker="x", s=40, color="C3")
            b.plot([r["epsilon_lower_bound"], r["epsilon_accounted"]], [r["uar"]] * 2, color="C3", lw=0.8)
    a.set(xlabel=f"TPR at {float(fpr_key):.1%} FPR (headline attack)", ylabel="UAR (test speakers)",
          title="utility vs attack success")  # fmt: skip
    b.set(xlabel="ε: empirical lower bound (o), accounted (x)", ylabel="UAR (test speakers)", title="utility vs ε")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    data = _png(fig)
    plt.close(fig)
    return data


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def bound(lower: float, ceiling: float | None) -> str:
    """An ε lower bound with its design's ceiling: ``0.42 (≤ 3.71)``; a bound at the ceiling is marked ``!``."""
    if ceiling is None:
        return _fmt(lower, 2)
    mark = " !" if lower >= ceiling - 1e-9 and ceiling > 0 else ""
    return f"{lower:.2f} (≤ {ceiling:.2f}){mark}"


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-pipeline table."""
    fprs = sorted(next(iter(results["pipelines"].values()))["tpr_at_fpr"], key=float)
    head = ["pipeline", "UAR", "accounted ε", "AUC", *[f"TPR@{float(f):.1%}" for f in fprs],
            "ε LB (ceiling)", "one-run ε LB (ceiling)", "privacy gain", "bytes up", "headline attack"]  # fmt: skip
    rows = []
    for name, r in results["pipelines"].items():
        gain = results.get("privacy_gain", {}).get(name)
        one = r.get("one_run")
        rows.append([
            name, f"{r['uar']:.3f} ± {r['uar_std']:.3f}", _fmt(r["epsilon_accounted"], 2), _fmt(r["auc"]),
            *[_fmt(r["tpr_at_fpr"][f]) for f in fprs], bound(r["epsilon_lower_bound"], r.get("epsilon_certifiable")),
            "–" if one is None else bound(one["epsilon_lower_bound"], one["epsilon_certifiable"]), _fmt(gain),
            _fmt(int(r["bytes_up_total"])), r["headline_attack"],
        ])  # fmt: skip
    return head, rows


def attack_rows(r: dict[str, Any], *, fpr_key: str) -> list[list[str]]:
    """One row per attack of one pipeline (audited utterances, then canaries)."""
    rows = []
    for group, attacks in (("audited", r["attacks"]), ("canaries", r["canaries"])):
        for name, a in attacks.items():
            rows.append([group, name, _fmt(a["auc"]), _fmt(a["tpr_at_fpr"][fpr_key]), _fmt(a["advantage"]),
                         bound(a["epsilon_lower_bound"], a.get("epsilon_certifiable"))])  # fmt: skip
    return rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _notes(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    return [
        f"{s['shadows']} whole-pipeline runs per pipeline (distillation included); {s['audited']} audited utterances "
        f"of {s['clients']} clients, each IN exactly half of the runs; every run in turn is the target, the others "
        f"its shadows, so each attack is judged on {s['audited']} × {s['shadows']} (utterance, run) pairs.",
        f"{s['canaries']} canaries ({s['canary_kind']}, {s['canary_copies']} copies when IN) from population speakers, "
        "audited like the utterances; their metrics are reported apart.",
        f"Population (RMIA z samples): {s['population']} utterances of speakers in no run.",
        "Headline attack per pipeline: the attack with the highest TPR at the largest reported FPR. ε lower bound: "
        f"Clopper–Pearson at significance {s['alpha']} split over all attacks and both example groups (Bonferroni), "
        f"threshold chosen on the even-numbered runs' pairs and certified on the odd-numbered runs' pairs, "
        f"δ = {s['delta']}; maximum over attacks and canaries. Pairs of one utterance across runs are not "
        "independent, so treat the interval as indicative.",
        "Ceiling: the largest ε the design can certify at the same significance (a perfect attack: no false "
        "positive, no false negative among the certifying pairs). A bound marked ! sits at its ceiling: the design, "
        "not the mechanism, stops it; an accounted ε above the ceiling cannot be refuted by this audit.",
        f"Attacks: LOSS, LiRA online/offline, RMIA online/offline (offline a: {s.get('rmia_offline_a', 0.3)}; 'tune' "
        "picks it per target on a reference run, as ML Privacy Meter does), and on the shared set distance to the "
        f"closest record (log-Mel and embedding space) and DOMIAS (KDE density ratio shared/population in "
        f"{s.get('domias_dim', '–')} principal components of the population), and the server's replay of the client.",
        *_one_run_note(s),
        "Privacy gain (Stadler et al.): advantage of raw sharing minus the pipeline's advantage (headline attacks).",
    ]


def _one_run_note(s: dict[str, Any]) -> list[str]:
    o = s.get("one_run")
    if not o:
        return []
    return [
        f"One-run audit (Steinke, Nasr & Jagielski 2023) of every DP pipeline: {o['canaries_per_run']} canaries per "
        f"run, each IN by its own fair coin, {o['runs']} independent runs pooled; the guesser guesses the top and "
        f"bottom of each run's canaries by score (shares {o['fractions']} fixed in advance, abstaining on the rest), "
        "and the bound is the largest ε under which that many correct guesses has p-value ≤ alpha (split over "
        "shares and attacks), δ term included."
    ]


def render(results: dict[str, Any], figures: dict[str, bytes], *, out_dir: Path) -> dict[str, str]:
    """Write the figures, ``report.md`` and ``report.html`` into ``out_dir``; returns name → relative path."""
    paths = {}
    for name, png in figures.items():
        rel = f"figures/{name}.png"
        atomic_write_bytes(out_dir / rel, png)
        paths[name] = rel
    fpr_key = str(max(float(f) for f in next(iter(results["pipelines"].values()))["tpr_at_fpr"]))
    head, rows = table_rows(results)
    a_head = ["examples", "attack", "AUC", f"TPR@{float(fpr_key):.1%}", "advantage", "ε LB (ceiling)"]
    title = "fedsered membership-inference audit"
    md = [f"# {title}", "", "## Threat model", "", THREAT_MODEL, "", "## Results", "", _md_table(head, rows), ""]
    md += [f"![{n}]({p})" for n, p in paths.items()] + ["", "## Method", ""] + [f"- {n}" for n in _notes(results)]
    for name, r in results["pipelines"].items():
        md += ["", f"### {name}", "", _md_table(a_head, attack_rows(r, fpr_key=fpr_key))]
    md += ["", f"Command: `{results['command']}`", ""]
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>"
        for n, png in figures.items()
    )
    per = "".join(
        f"<h3>{html.escape(n)}</h3>{_html_table(a_head, attack_rows(r, fpr_key=fpr_key))}"
        for n, r in results["pipelines"].items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(results))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{display:inline-block;margin:0 1em}"
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{style}</style>'
        f'</head><body><h1>{title}</h1><h2>Threat model</h2><p id="threat-model">{html.escape(THREAT_MODEL)}</p>'
        f'<h2>Results</h2><div id="summary">{_html_table(head, rows)}</div>{imgs}<h2>Method</h2><ul>{notes}</ul>'
        f"<h2>Attacks per pipeline</h2>{per}<p>Command: <code>{html.escape(results['command'])}</code></p>"
        "</body></html>\n"
    )
    atomic_write_text(out_dir / "report.html", page)
    return {**paths, "report_md": "report.md", "report_html": "report.html"}
