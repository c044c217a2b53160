"""Classification metrics for SER: UAR (unweighted average recall, the primary metric), WA (accuracy), confusion."""

from __future__ import annotations

import numpy as np

from fedsered.errors import DataError


def confusion(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts, rows = true class, columns = predicted class.

    One ``np.bincount`` over ``true · n + predicted`` rather than ``sklearn.metrics.confusion_matrix``: every client
    process scores models, and importing scikit-learn (with SciPy) costs each ~0.7 CPU s and ~60 MB for this.
    """
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or ((t < 0) | (t >= n_classes) | (p < 0) | (p >= n_classes)).any():
        raise DataError(f"confusion: labels must be two equal-length arrays in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def uar_from_confusion(cm: np.ndarray) -> float:
    """Mean per-class recall over the classes present in the test set (= balanced accuracy)."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> dict[str, object]:
    """UAR, WA and the confusion matrix (as nested lists, ready for JSON)."""
    cm = confusion(y_true, y_pred, n_classes=n_classes)
    wa = float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
    return {"uar": uar_from_confusion(cm), "wa": wa, "confusion": cm.tolist()}
