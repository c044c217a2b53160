"""The classic SER reference model: utterance functionals → imputation → standardisation → logistic regression.

This module owns fitting and applying that model (the functionals themselves are ``fedsered.data.functionals``).
It is a scikit-learn ``Pipeline``: ``SimpleImputer`` (median; the F0 functionals of a clip without voiced frames
are ``NaN``), ``StandardScaler`` and a multinomial ``LogisticRegression`` (lbfgs, L2, ``functionals.C``,
``functionals.max_iter``). Every step is fitted on the training speakers only; test speakers are only predicted.
It returns predicted labels, so ``fedsered.training.metrics`` scores it exactly as it scores the CNN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fedsered.config import FunctionalsConfig
from fedsered.errors import DataError


@dataclass(frozen=True)
class FunctionalsModel:
    """A fitted functionals classifier.

    Attributes:
        pipeline: the fitted scikit-learn pipeline (imputer, scaler, logistic regression).
        n_features: columns it was fitted on.
        converged: whether lbfgs converged within ``max_iter``.
        n_iter: lbfgs iterations used.
    """

    pipeline: Pipeline
    n_features: int
    converged: bool
    n_iter: int


def _check(x: np.ndarray, what: str) -> None:
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{what}: expected non-empty [n, d] functionals, got shape {x.shape}")


def fit_functionals_model(x: np.ndarray, y: np.ndarray, *, cfg: FunctionalsConfig) -> FunctionalsModel:
    """Fit the reference classifier on the training speakers' functionals.

    Args:
        x: ``[n, d]`` functionals of the training split (``NaN`` allowed; imputed by the training medians).
        y: ``[n]`` int64 labels.
        cfg: the ``functionals`` section (``C``, ``max_iter``).

    Returns:
        The fitted ``FunctionalsModel`` (lbfgs is deterministic: no seed is needed).

    Raises:
        DataError: empty or misshapen input, or fewer than two classes in ``y``.
    """
    _check(x, "fit_functionals_model")
    if len(y) != len(x):
        raise DataError(f"fit_functionals_model: {len(x)} rows of functionals but {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise DataError("fit_functionals_model: the training split holds fewer than two emotions")
    pipeline = Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(C=cfg.C, max_iter=cfg.max_iter)),
    ])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(x.astype(np.float64), y)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False  # reported in the result (``converged``), not as a warning
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    n_iter = int(np.max(pipeline.named_steps["classify"].n_iter_))
    return FunctionalsModel(pipeline=pipeline, n_features=int(x.shape[1]), converged=converged, n_iter=n_iter)


def predict_functionals(model: FunctionalsModel, x: np.ndarray) -> np.ndarray:
    """Predicted labels of ``x``.

    Args:
        model: a fitted ``FunctionalsModel``.
        x: ``[n, d]`` functionals with the columns the model was fitted on.

    Returns:
        ``[n]`` int64 labels.
    """
    _check(x, "predict_functionals")
    if x.shape[1] != model.n_features:
        raise DataError(f"predict_functionals: model fitted on {model.n_features} columns, got {x.shape[1]}")
    return np.asarray(model.pipeline.predict(x.astype(np.float64)), dtype=np.int64)
