"""Where a synthetic set starts: per-class real examples (or noise), with the fallbacks for small or missing classes.

Fallbacks (never a crash):
- a class with fewer real examples than ``ipc``: real-init methods (gm, dm, mtt, merf) use every real example of the
  class and repeat them, each repeat with Gaussian noise of ``init_noise`` × the client's feature std, to reach ``ipc``;
  selection methods (random, herding) cap at what the class has (see ``ipc_effective``).
- a class with no example on the client: the class is absent from the set and listed in ``missing_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsered.config import ModelConfig
from fedsered.errors import DataError


@dataclass(frozen=True)
class ClassPlan:
    """How many synthetic rows each class gets, from how many real examples.

    Attributes:
        available: ``[n_classes]`` real examples per class on the client.
        rows: ``[n_classes]`` synthetic rows per class (0 for a missing class).
        missing: classes with no real example (absent from the set).
        repeated: classes whose rows exceed their real examples (real-init with repeats).
    """

    available: tuple[int, ...]
    rows: tuple[int, ...]
    missing: tuple[int, ...]
    repeated: tuple[int, ...]

    def meta(self) -> dict[str, object]:
        """The JSON-ready record of the plan for the shared metadata (per-class lists indexed by class).

        The exact per-class counts of the client (``available``) stay out: the set is shared, and only what the
        fallbacks need to be visible (rows per class, missing and repeated classes) goes with it.
        """
        return {
            "ipc_effective": list(self.rows),
            "missing_classes": list(self.missing),
            "repeated_classes": list(self.repeated),
        }


@dataclass(frozen=True)
class LearnTask:
    """What a learned method (gm, dm, mtt, merf) distils: the real data, the synthetic start and the networks' setting.

    Attributes:
        x: ``[n, 1, mels, frames]`` float32 real features.
        y: ``[n]`` int64 labels.
        x_init: starting synthetic features (``initial_synthetic``).
        y_init: their labels (fixed during distillation).
        model_cfg: architecture of the matched / embedding / expert networks (run without dropout).
        n_classes: number of classes.
        init_state: θ₀ (gm, dm and merf use it as their first network, mtt's experts start there) or ``None``
            (random-init mode).
        seed: derives every random stream (networks, real batches, experts, batch orders).
    """

    x: np.ndarray
    y: np.ndarray
    x_init: np.ndarray
    y_init: np.ndarray
    model_cfg: ModelConfig
    n_classes: int
    init_state: dict[str, torch.Tensor] | None
    seed: int


def plan_classes(y: np.ndarray, *, n_classes: int, ipc: int, cap_at_available: bool) -> ClassPlan:
    """Rows per class for ``ipc`` examples per class.

    Args:
        y: ``[n]`` int64 labels of the client's real data.
        n_classes: number of classes of the task.
        ipc: requested examples per class.
        cap_at_available: ``True`` for selection methods (rows = min(ipc, available)); ``False`` for real-init
            methods (rows = ipc whenever the class has any example).

    Returns:
        The plan.
    """
    if ipc < 1:
        raise ValueError("ipc must be >= 1")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must lie in [0, {n_classes}), found {int(y.min())}..{int(y.max())}")
    available = np.bincount(y, minlength=n_classes)[:n_classes] if len(y) else np.zeros(n_classes, dtype=np.int64)
    rows = np.where(available > 0, np.minimum(ipc, available) if cap_at_available else ipc, 0)
    return ClassPlan(
        available=tuple(int(a) for a in available),
        rows=tuple(int(r) for r in rows),
        missing=tuple(int(c) for c in np.flatnonzero(available == 0)),
        repeated=tuple(int(c) for c in np.flatnonzero((rows > available) & (available > 0))),
    )


def class_index(y: np.ndarray, c: int) -> np.ndarray:
    """Indices of the examples of class ``c``."""
    return np.flatnonzero(y == c)


def initial_synthetic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    plan: ClassPlan,
    mode: str,
    init_noise: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The starting synthetic set, class by class in label order.

    Args:
        x: ``[n, 1, mels, frames]`` float32 real features.
        y: ``[n]`` int64 labels.
        plan: rows per class (``plan_classes`` with ``cap_at_available=False``).
        mode: ``"real"`` (random real examples of the class, repeated with noise when too few) or ``"noise"``
            (Gaussian at the client's overall feature mean and std).
        init_noise: std of the noise on repeats, relative to the client's feature std.
        rng: the random stream.

    Returns:
        ``(x_syn [m, 1, mels, frames] float32, y_syn [m] int64)``.
    """
    if mode not in ("real", "noise"):
        raise ValueError(f"init mode must be 'real' or 'noise', got {mode!r}")
    mean, std = float(x.mean()), float(x.std()) or 1.0
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for c, rows in enumerate(plan.rows):
        if rows == 0:
            continue
        if mode == "noise":
            block = rng.normal(mean, std, size=(rows, *x.shape[1:]))
        else:
            idx = class_index(y, c)
            chosen = rng.permutation(idx)[: min(rows, len(idx))]
            extra = rng.choice(idx, size=rows - len(chosen), replace=True)
            block = np.concatenate([x[chosen], x[extra] + rng.normal(0.0, init_noise * std, size=x[extra].shape)])
        xs.append(block.astype(np.float32))
        ys.append(np.full(rows, c, dtype=np.int64))
    if not xs:
        raise DataError("the client holds no labelled example: nothing to distil")
    return np.concatenate(xs), np.concatenate(ys)
