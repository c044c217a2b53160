"""The privacy–utility figure of a sweep: UAR against ε (log axis), one line per method with error bars the 95 % CI
over seeds (Student t; none where a point has one seed); the non-DP point of each method sits at the right end above
"∞", references (baselines, full data) are dashed lines at their mean."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from fedsered.io import atomic_write_bytes


def plot_privacy_utility(summary: dict[str, Any], *, path: str | Path) -> Path:
    """Draw ``summary["curves"]`` (``fedsered.experiments.sweep.summarise``) to ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, dict[str, Any]]] = summary["curves"]
    finite = sorted({float(e) for pts in curves.values() for e in pts if e != "inf"})
    x_inf = (finite[-1] * 2.5) if finite else 1.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    refs = [m for m, pts in curves.items() if set(pts) == {"inf"}]
    for method, pts in curves.items():
        if method in refs:
            continue
        xs = sorted((float(e) if e != "inf" else x_inf, e) for e in pts)
        mean = [pts[e]["mean"] for _, e in xs]
        half = [math.nan if pts[e]["half_width"] is None else pts[e]["half_width"] for _, e in xs]
        ax.errorbar([x for x, _ in xs], mean, yerr=half, marker="o", capsize=3, label=method)
    for i, method in enumerate(refs):
        p = curves[method]["inf"]
        ax.axhline(p["mean"], linestyle="--", linewidth=1, color=f"C{(i + 5) % 10}",
                   label=f"{method} (no DP, mean) {p['mean']:.3f}")  # fmt: skip
    ax.set_xscale("log")
    ticks = [*finite, x_inf] if finite else [x_inf]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in finite] + ["∞"])
    ax.minorticks_off()
    ax.set_xlabel("ε per release (δ fixed; ∞ = no DP)")
    ax.set_ylabel(f"{summary['metric'].replace('_', ' ')}, mean ± 95 % CI over seeds")
    ax.set_title(f"privacy–utility, IPC {summary['ipc']} (error bars: 95 % CI, Student t)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
