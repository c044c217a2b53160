"""Figures of synthetic sets: the per-emotion mean log-Mel of the real data next to that of the synthetic set."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.figure import Figure

from fedsered.data.types import FeatureSet
from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.io import atomic_write_bytes


def _class_mean(x: np.ndarray, y: np.ndarray, label: int) -> tuple[np.ndarray | None, int]:
    """``[mels, frames]`` mean of the examples of ``label`` (``None`` when there are none) and their count."""
    members = x[y == label]
    if len(members) == 0:
        return None, 0
    return members.mean(axis=0)[0].astype(np.float64), len(members)


def mean_logmel_figure(real: FeatureSet, synthetic: SyntheticSet, *, emotions: Sequence[str]) -> Figure:
    """The grid ``plot_mean_logmel`` writes: one row per emotion, real mean log-Mel beside the synthetic set's.

    Both panels of a row share one colour scale (a colour bar at the row's end). A class with no example in the real
    data or in the set gets an empty panel titled ``"<emotion>: no <source> examples"``.
    """
    rows = max(len(emotions), 1)
    method, ipc = synthetic.meta.get("method", "synthetic"), synthetic.meta.get("ipc", "?")
    fig = Figure(figsize=(8.0, 1.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    fig.suptitle(f"mean log-Mel per emotion: real ({len(real)}) vs {method} ipc {ipc} ({len(synthetic)})")
    for i, emotion in enumerate(emotions):
        panels = [("real", *_class_mean(real.x, real.y, i)), (str(method), *_class_mean(synthetic.x, synthetic.y, i))]
        present = [m for _, m, _ in panels if m is not None]
        vmin = min(float(m.min()) for m in present) if present else 0.0
        vmax = max(float(m.max()) for m in present) if present else 1.0
        image = None
        for ax, (source, mean, count) in zip(axes[i], panels, strict=True):
            if mean is None:
                ax.set_title(f"{emotion}: no {source} examples", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            image = ax.imshow(mean, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_title(f"{emotion}: {source} mean (n={count})", fontsize=9)
            ax.set_ylabel("mel bin", fontsize=8)
            ax.tick_params(labelsize=7)
        if i == rows - 1:
            for ax in axes[i]:
                ax.set_xlabel("frame", fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=list(axes[i]), shrink=0.9, pad=0.01)
    return fig


def plot_mean_logmel(real: FeatureSet, synthetic: SyntheticSet, *, emotions: Sequence[str], path: str | Path) -> Path:
    """Write ``mean_logmel_figure(real, synthetic, emotions=emotions)`` as a PNG, atomically.

    Args:
        real: the real features the set was made from (same feature space, e.g. normalised training features).
        synthetic: the set.
        emotions: label names; row ``i`` shows label ``i``.
        path: destination PNG (parent folders are created).

    Returns:
        ``path``.
    """
    fig = mean_logmel_figure(real, synthetic, emotions=emotions)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())
