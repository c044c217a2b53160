"""The one-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023): its design and its ε lower bound.

Design: ``m`` canaries, each inserted into a client's data independently with probability ½ (a secret coin per
canary and run); the pipeline runs once; an attacker ranks the canaries by a membership score and guesses the top
``k/2`` IN and the bottom ``k/2`` OUT, abstaining on the rest. Several independent runs are one mechanism over all
their (canary, run) records — changing one record changes one run only — so their guesses pool into one count.

Bound (their Theorem 3.1 with the δ term of their Algorithm 2): if the mechanism is (ε, δ)-DP in each canary, the
number ``W`` of correct guesses out of ``r`` satisfies ``P[W ≥ v] ≤ P[Binomial(r, e^ε/(1+e^ε)) ≥ v] + 2mδ·a`` with
``a = max_i P[v > Binomial(r, q) ≥ v − i] / i``. The lower bound is the largest ε whose p-value stays below
``alpha``. The guess counts ``k`` tried are fixed in advance (fractions of the canaries) and share ``alpha``
(Bonferroni), so choosing the best of them keeps the stated confidence. ``certifiable`` is the bound of a perfect
guesser at the largest ``k``: the ceiling of the design, printed next to every bound.

Written here (about 30 lines of scipy) rather than imported: the authors publish it as a paper snippet, and
jax_privacy's auditing module, the maintained implementation, needs JAX, which fedsered does not otherwise use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from fedsered.errors import DataError

MAX_EPSILON = 64.0
"""Largest ε the bisection searches (far beyond anything a design of a few thousand canaries can certify)."""


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ ``v`` correct of ``r`` guesses] under an (``epsilon``, ``delta``)-DP null with ``m`` canaries.

    Args:
        m: canaries (records), each IN independently with probability ½.
        r: guesses made (abstentions excluded).
        v: correct guesses.
        epsilon: the null hypothesis' ε.
        delta: its δ.

    Returns:
        The p-value, at most 1.
    """
    if not 0 <= v <= r <= m:
        raise DataError(f"one-run audit: need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    q = 1.0 / (1.0 + np.exp(-epsilon))  # accuracy of ε-DP randomised response
    tail = float(binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    i = np.arange(1, v + 1)
    a = float(np.max(np.cumsum(binom.pmf(v - i, r, q)) / i))
    return min(tail + a * delta * 2 * m, 1.0)


def epsilon_lower_bound(*, m: int, r: int, v: int, delta: float, alpha: float) -> float:
    """The largest ε at which ``v`` correct of ``r`` guesses has p-value ≤ ``alpha`` (0 when even ε = 0 does not)."""
    if p_value(m=m, r=r, v=v, epsilon=0.0, delta=delta) > alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while hi < MAX_EPSILON and p_value(m=m, r=r, v=v, epsilon=hi, delta=delta) <= alpha:
        lo, hi = hi, 2 * hi
    for _ in range(40):  # p_value increases with ε: bisection
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(m=m, r=r, v=v, epsilon=mid, delta=delta) <= alpha else (lo, mid)
    return lo


@dataclass(frozen=True)
class Guesses:
    """An abstaining guesser's outcome over all runs: ``r`` guesses, ``v`` of them correct."""

    r: int
    v: int


def guesses_in_run(n: int, fraction: float) -> int:
    """How many of a run's ``n`` canaries the guesser guesses at ``fraction`` (at least 2, none of fewer than 2)."""
    return max(2, round(fraction * n)) if n >= 2 else 0


def guess(score: np.ndarray, member: np.ndarray, run: np.ndarray, *, fraction: float) -> Guesses:
    """Per run, guess the ``fraction``·(canaries of the run) best-scored canaries: the top half IN, the bottom half
    OUT (the rest abstain); count over all runs.

    Args:
        score: ``[n]`` membership scores (higher = IN).
        member: ``[n]`` the true coins.
        run: ``[n]`` the run of each (canary, run) record.
        fraction: share of each run's canaries guessed, in (0, 1].
    """
    s, m, g = np.asarray(score, np.float64), np.asarray(member, bool), np.asarray(run)
    if not (s.shape == m.shape == g.shape) or s.ndim != 1:
        raise DataError("one-run audit: score, member and run must be equal-length vectors")
    if not np.all(np.isfinite(s)):
        raise DataError("one-run audit: membership scores must be finite")
    r = v = 0
    for k in np.unique(g):  # one sort per run
        idx = np.flatnonzero(g == k)
        order = idx[np.argsort(-s[idx], kind="stable")]
        n_guess = guesses_in_run(len(order), fraction)
        k_in = n_guess // 2
        top, bottom = order[:k_in], order[len(order) - (n_guess - k_in) :]
        r += len(top) + len(bottom)
        v += int(m[top].sum() + (~m[bottom]).sum())
    return Guesses(r=r, v=v)


def audit(
    score: np.ndarray,
    member: np.ndarray,
    run: np.ndarray,
    *,
    delta: float,
    alpha: float,
    fractions: tuple[float, ...],
) -> dict[str, float | int]:
    """The one-run ε lower bound of one attack: the best over the guess ``fractions``, each at ``alpha / len``.

    Returns:
        ``{"epsilon", "certifiable", "fraction", "guesses", "correct", "canaries"}`` — ``fraction``/``guesses``/
        ``correct`` of the best fraction; ``certifiable`` the ceiling of the design (a perfect guesser at the
        largest fraction, same significance).
    """
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise DataError(f"one-run audit: guess fractions must lie in (0, 1], got {fractions}")
    n = int(np.asarray(member).size)
    a = alpha / len(fractions)
    best: dict[str, float | int] = {"epsilon": 0.0, "fraction": fractions[0], "guesses": 0, "correct": 0}
    for f in fractions:
        gs = guess(score, member, run, fraction=f)
        eps = epsilon_lower_bound(m=n, r=gs.r, v=gs.v, delta=delta, alpha=a) if gs.r else 0.0
        if eps > float(best["epsilon"]) or not best["guesses"]:
            best = {"epsilon": eps, "fraction": f, "guesses": gs.r, "correct": gs.v}
    _, per_run = np.unique(np.asarray(run), return_counts=True)
    r_max = sum(guesses_in_run(int(c), max(fractions)) for c in per_run)
    ceiling = epsilon_lower_bound(m=n, r=r_max, v=r_max, delta=delta, alpha=a) if r_max else 0.0
    return {**best, "certifiable": ceiling, "canaries": n}
