"""The comparison protocol's statistics: mean ± Student-t confidence interval over seeds, and paired differences.

Every comparison in fedsered runs over a list of seeds (DESIGN.md, "Comparisons"). A seed fixes the corpus draw,
the test-speaker split, the partitions and every random stream, so two methods run on the same seeds are *paired*:
their difference is estimated per seed and the interval is that of the mean difference (the seed-to-seed spread
of the split, large with few test speakers, cancels out), not a combination of the two methods' own intervals.

The interval of ``n`` values ``v`` is ``mean ± t_{(1+level)/2, n-1} · s / √n`` with ``s`` the sample standard
deviation (``ddof=1``) and ``t`` Student's quantile (``scipy.stats.t``). With ``n = 1`` it is undefined: ``lo`` and
``hi`` are ``None`` (``null`` in JSON) and ``fmt`` says so — never a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

DEFAULT_LEVEL = 0.95
"""Confidence level of every interval unless a caller asks for another."""


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its two-sided confidence interval.

    Attributes:
        mean: the sample mean.
        lo: lower end of the interval; ``None`` when it is undefined (``n = 1``).
        hi: upper end; ``None`` when undefined.
        n: number of values (seeds).
        level: confidence level of the interval (0.95 for a 95 % CI).
    """

    mean: float
    lo: float | None
    hi: float | None
    n: int
    level: float = DEFAULT_LEVEL

    @property
    def defined(self) -> bool:
        """Whether the interval exists (it needs at least two values)."""
        return self.lo is not None and self.hi is not None

    @property
    def half_width(self) -> float | None:
        """``(hi - lo) / 2``, or ``None`` when the interval is undefined."""
        if self.lo is None or self.hi is None:
            return None
        return (self.hi - self.lo) / 2.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form: ``mean``, ``lo``, ``hi``, ``half_width`` (``None`` where undefined), ``n``, ``level``."""
        return {
            "mean": self.mean, "lo": self.lo, "hi": self.hi, "half_width": self.half_width, "n": self.n,
            "level": self.level,
        }  # fmt: skip

    def fmt(self, *, digits: int = 3, signed: bool = False) -> str:
        """``"0.612 ± 0.041"``; ``"0.612 (n=1, no CI)"`` when the interval is undefined.

        Args:
            digits: decimals of the mean and the half width.
            signed: prefix positive means with ``+`` (for differences).

        Returns:
            The text.
        """
        mean = f"{self.mean:+.{digits}f}" if signed else f"{self.mean:.{digits}f}"
        half = self.half_width
        if half is None:
            return f"{mean} (n={self.n}, no CI)"
        return f"{mean} ± {half:.{digits}f}"


def _values(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D sequence of numbers, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: values must be finite, got {v.tolist()}")
    return v


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")


def mean_ci(values: Sequence[float] | np.ndarray, *, level: float = DEFAULT_LEVEL) -> Estimate:
    """Mean and Student-t confidence interval of values over seeds.

    Args:
        values: one finite value per seed (at least one).
        level: confidence level (two-sided).

    Returns:
        The ``Estimate``; its interval is undefined (``lo = hi = None``) for a single value.

    Raises:
        ValueError: empty, non-1-D or non-finite values, or a level outside (0, 1).
    """
    _check_level(level)
    v = _values(values, "mean_ci")
    n, mean = int(v.size), float(v.mean())
    if n == 1:
        return Estimate(mean=mean, lo=None, hi=None, n=1, level=level)
    half = float(_scipy_stats.t.ppf((1.0 + level) / 2.0, df=n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean=mean, lo=mean - half, hi=mean + half, n=n, level=level)


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, level: float = DEFAULT_LEVEL
) -> Estimate:
    """The paired difference ``a - b`` of two methods over the same seeds, with its confidence interval.

    Args:
        a: one value per seed for the first method.
        b: the second method's values, in the same seed order (``a[i]`` and ``b[i]`` come from one seed).
        level: confidence level (two-sided).

    Returns:
        ``mean_ci(a - b)``: the mean per-seed difference and the interval of that mean.

    Raises:
        ValueError: the sequences differ in length, or either is empty or non-finite.
    """
    va, vb = _values(a, "paired_difference (a)"), _values(b, "paired_difference (b)")
    if va.shape != vb.shape:
        raise ValueError(f"paired_difference: a has {va.size} values and b {vb.size}; pair them by seed")
    return mean_ci(va - vb, level=level)
