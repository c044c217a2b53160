"""Classification metrics for SER: UAR (unweighted average recall, the primary metric), WA (accuracy), confusion."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion


def confusion(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts, rows = true class, columns = predicted class."""
    return _sk_confusion(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


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
