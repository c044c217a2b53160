"""Membership-inference metrics over (score, member) pairs: ROC, AUC, TPR at fixed FPR, advantage, privacy gain, and
the empirical ε lower bound with Clopper–Pearson intervals.

Convention everywhere in ``privacy_audits``: a higher score means "more likely a member"; ``member`` is boolean.
All functions are vectorised over thresholds (one sort, cumulative sums).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from fedsered.errors import DataError


@dataclass(frozen=True)
class Roc:
    """A ROC curve: one point per distinct threshold, from (0, 0) to (1, 1).

    Attributes:
        fpr: false-positive rates, non-decreasing.
        tpr: true-positive rates, non-decreasing.
        thresholds: the score threshold of each point (predict member when ``score >= threshold``; the first is +inf).
        n_in: number of members.
        n_out: number of non-members.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_in: int
    n_out: int


def _check(score: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64).ravel()
    m = np.asarray(member).astype(bool).ravel()
    if s.shape != m.shape:
        raise DataError(f"scores and membership differ in length ({s.size} vs {m.size})")
    if not np.all(np.isfinite(s)):
        raise DataError("membership scores must be finite")
    if m.all() or not m.any():
        raise DataError("membership labels need both members and non-members")
    return s, m


def roc(score: np.ndarray, member: np.ndarray) -> Roc:
    """The ROC of thresholding ``score`` (ties share a point, as in ``sklearn.metrics.roc_curve``).

    Args:
        score: ``[n]`` attack scores (higher = member).
        member: ``[n]`` true membership.

    Returns:
        The ``Roc``.
    """
    s, m = _check(score, member)
    order = np.argsort(-s, kind="stable")
    s_sorted, m_sorted = s[order], m[order]
    tp = np.cumsum(m_sorted)
    fp = np.cumsum(~m_sorted)
    last_of_tie = np.r_[np.diff(s_sorted) != 0, True]
    n_in, n_out = int(m.sum()), int((~m).sum())
    tpr = np.r_[0.0, tp[last_of_tie] / n_in]
    fpr = np.r_[0.0, fp[last_of_tie] / n_out]
    thr = np.r_[np.inf, s_sorted[last_of_tie]]
    return Roc(fpr=fpr, tpr=tpr, thresholds=thr, n_in=n_in, n_out=n_out)


def auc(curve: Roc) -> float:
    """Area under the ROC (trapezoids; ties count one half, as the Mann–Whitney statistic)."""
    return float(np.trapezoid(curve.tpr, curve.fpr))


def tpr_at_fpr(curve: Roc, fpr: float) -> float:
    """The highest TPR among thresholds whose FPR is at most ``fpr`` (0 when none is)."""
    ok = curve.fpr <= fpr + 1e-12
    return float(curve.tpr[ok].max()) if ok.any() else 0.0


def advantage(curve: Roc) -> float:
    """Membership advantage max over thresholds of TPR − FPR (Yeom et al.)."""
    return float(np.max(curve.tpr - curve.fpr))


def privacy_gain(adv_raw: float, adv_target: float) -> float:
    """Privacy gain of a sharing method against raw sharing (Stadler et al.): ``Adv_raw − Adv_target``."""
    return float(adv_raw - adv_target)


def clopper_pearson_upper(k: np.ndarray | int, n: np.ndarray | int, *, alpha: float) -> np.ndarray:
    """Two-sided Clopper–Pearson upper bound of a binomial rate with ``k`` successes in ``n`` trials.

    Args:
        k: successes (array or int).
        n: trials (array or int, ``n >= 1``).
        alpha: significance (the interval has confidence ``1 − alpha``).

    Returns:
        ``Beta⁻¹(1 − alpha/2; k + 1, n − k)``, and 1 where ``k == n``.
    """
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    full = k_arr >= n_arr
    with np.errstate(invalid="ignore"):
        upper = beta.ppf(1.0 - alpha / 2.0, k_arr + 1.0, np.where(full, 1.0, n_arr - k_arr))
    return np.where(full, 1.0, upper)


def epsilon_bounds(
    fp: np.ndarray, fn: np.ndarray, *, n_out: int, n_in: int, delta: float, alpha: float | None
) -> np.ndarray:
    """ε implied at each threshold: ``max(ln((1−δ−FNR)/FPR), ln((1−δ−FPR)/FNR))``.

    With ``alpha`` the rates are their Clopper–Pearson upper bounds (a high-confidence lower bound on ε);
    with ``alpha=None`` the raw rates (a point estimate, used to choose the threshold). Negative values become 0.
    """
    if alpha is None:
        fpr, fnr = np.asarray(fp, dtype=np.float64) / n_out, np.asarray(fn, dtype=np.float64) / n_in
    else:
        fpr, fnr = clopper_pearson_upper(fp, n_out, alpha=alpha), clopper_pearson_upper(fn, n_in, alpha=alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1.0 - delta - fnr, 0.0) / fpr)
        b = np.log(np.maximum(1.0 - delta - fpr, 0.0) / fnr)
    eps = np.fmax(np.nan_to_num(a, nan=-np.inf, posinf=np.inf), np.nan_to_num(b, nan=-np.inf, posinf=np.inf))
    return np.maximum(eps, 0.0)


def certifiable_epsilon(*, n_in: int, n_out: int, delta: float, alpha: float) -> float:
    """The largest ε a threshold design with ``n_in`` member and ``n_out`` non-member certifying pairs can certify at
    significance ``alpha``: the bound of a perfect attack (no false positive, no false negative). A measured bound
    near this ceiling says the design, not the mechanism, limits it; an accounted ε above it cannot be refuted."""
    if n_in < 1 or n_out < 1:
        return 0.0
    zero = np.array([0])
    return float(epsilon_bounds(zero, zero, n_out=n_out, n_in=n_in, delta=delta, alpha=alpha)[0])


def _counts_at(curve: Roc, threshold: float, score: np.ndarray, member: np.ndarray) -> tuple[int, int]:
    pred = score >= threshold
    return int((pred & ~member).sum()), int((~pred & member).sum())


def epsilon_lower_bound(
    score: np.ndarray, member: np.ndarray, *, delta: float, alpha: float = 0.05, select: np.ndarray | None = None
) -> dict[str, float | None]:
    """Empirical ε lower bound (Jagielski et al. 2020; Nasr et al. 2021) with Clopper–Pearson intervals.

    The threshold must not be chosen on the examples that certify it (that search inflates the bound): the examples
    where ``select`` is True choose the threshold that maximises the Clopper–Pearson bound on them, the others give
    the bound. With
    ``select=None`` the even positions of the input choose and the odd ones certify.

    Args:
        score: ``[n]`` attack scores (higher = member).
        member: ``[n]`` true membership.
        delta: the δ of the (ε, δ) guarantee being audited.
        alpha: significance; the bound holds with probability at least ``1 − alpha``.
        select: ``[n]`` bool, the examples used to choose the threshold.

    Returns:
        ``{"epsilon", "certifiable", "threshold" (None: predict nobody), "fpr_upper", "fnr_upper", "n_in",
        "n_out"}``, the counts being those of the certifying half; ``certifiable`` is ``certifiable_epsilon`` of
        that half (the design's ceiling).
    """
    s, m = _check(score, member)
    sel = (np.arange(s.size) % 2 == 0) if select is None else np.asarray(select, dtype=bool).ravel()
    zero: dict[str, float | None] = {
        "epsilon": 0.0, "certifiable": 0.0, "threshold": None, "fpr_upper": 1.0, "fnr_upper": 1.0, "n_in": 0,
        "n_out": 0,
    }  # fmt: skip
    if sel.all() or not sel.any():
        raise DataError("epsilon_lower_bound: select must leave examples on both sides")
    s_a, m_a, s_b, m_b = s[sel], m[sel], s[~sel], m[~sel]
    if m_a.all() or not m_a.any() or m_b.all() or not m_b.any():
        return zero
    curve = roc(s_a, m_a)
    fp = np.rint(curve.fpr * curve.n_out)
    fn = np.rint((1.0 - curve.tpr) * curve.n_in)
    # the threshold maximising the bound the selection half itself would certify: a raw point estimate would be
    # infinite at any threshold with no false positive, however few members it catches
    bounded = epsilon_bounds(fp, fn, n_out=curve.n_out, n_in=curve.n_in, delta=delta, alpha=alpha)
    thr = float(curve.thresholds[int(np.argmax(bounded))])
    below = s_a[s_a < thr]
    if np.isfinite(thr) and below.size:  # the middle of the gap to the next score down, not its edge (same counts
        thr = float((thr + below.max()) / 2)  # on the selection half; a margin for the certifying half)
    k_fp, k_fn = _counts_at(curve, thr, s_b, m_b)
    n_out, n_in = int((~m_b).sum()), int(m_b.sum())
    fpr_u = float(clopper_pearson_upper(k_fp, n_out, alpha=alpha))
    fnr_u = float(clopper_pearson_upper(k_fn, n_in, alpha=alpha))
    eps = float(epsilon_bounds(np.array([k_fp]), np.array([k_fn]), n_out=n_out, n_in=n_in, delta=delta, alpha=alpha)[0])
    return {
        "epsilon": eps, "certifiable": certifiable_epsilon(n_in=n_in, n_out=n_out, delta=delta, alpha=alpha),
        "threshold": thr if np.isfinite(thr) else None, "fpr_upper": fpr_u, "fnr_upper": fnr_u, "n_in": n_in,
        "n_out": n_out,
    }  # fmt: skip


def summarise(
    score: np.ndarray,
    member: np.ndarray,
    *,
    fprs: tuple[float, ...],
    delta: float,
    alpha: float,
    select: np.ndarray | None = None,
) -> dict[str, object]:
    """Every metric of one attack: ``auc``, ``advantage``, ``tpr_at_fpr`` (keys as ``str(fpr)``),
    ``epsilon_lower_bound`` and the design's ceiling ``epsilon_certifiable`` (details under ``epsilon_lb``;
    ``select`` as in ``epsilon_lower_bound``),
    ``n_in``, ``n_out``."""
    curve = roc(score, member)
    lb = epsilon_lower_bound(score, member, delta=delta, alpha=alpha, select=select)
    return {
        "auc": auc(curve),
        "advantage": advantage(curve),
        "tpr_at_fpr": {str(f): tpr_at_fpr(curve, f) for f in fprs},
        "epsilon_lower_bound": lb["epsilon"],
        "epsilon_certifiable": lb["certifiable"],
        "epsilon_lb": lb,
        "n_in": curve.n_in,
        "n_out": curve.n_out,
    }
