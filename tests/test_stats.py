"""fedsered.stats: Student-t intervals over seeds and paired differences, against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fedsered.stats import Estimate, mean_ci, paired_difference


def test_hand_computed_interval() -> None:
    # values 1, 2, 3: mean 2, s = 1, s/sqrt(3) = 0.57735; t(0.975, df=2) = 4.302653 -> half width 2.484138
    e = mean_ci([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.n == 3 and e.level == 0.95
    assert e.half_width == pytest.approx(2.484138, abs=1e-6)
    assert (e.lo, e.hi) == (pytest.approx(2.0 - 2.484138, abs=1e-6), pytest.approx(2.0 + 2.484138, abs=1e-6))


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_matches_scipy_t_interval(level: float) -> None:
    v = np.random.default_rng(3).normal(0.6, 0.05, size=7)
    lo, hi = stats.t.interval(level, df=len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    e = mean_ci(v, level=level)
    assert (e.lo, e.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert e.level == level


def test_single_value_has_no_interval() -> None:
    e = mean_ci([0.612])
    assert e.mean == 0.612 and e.n == 1
    assert e.lo is None and e.hi is None and e.half_width is None and not e.defined
    assert e.fmt() == "0.612 (n=1, no CI)"
    assert e.to_json() == {"mean": 0.612, "lo": None, "hi": None, "half_width": None, "n": 1, "level": 0.95}


def test_equal_values_give_a_zero_width_interval() -> None:
    e = mean_ci([0.5, 0.5, 0.5])
    assert e.defined and e.lo == e.hi == 0.5 and e.half_width == 0.0


def test_paired_difference_hand_computed() -> None:
    # d = (0.2, 0.05, 0.2): mean 0.15, s = sqrt(0.0075) = 0.0866025, s/sqrt(3) = 0.05 -> half width 4.302653 * 0.05
    e = paired_difference([0.7, 0.6, 0.8], [0.5, 0.55, 0.6])
    assert e.mean == pytest.approx(0.15)
    assert e.half_width == pytest.approx(4.302653 * 0.05, abs=1e-6)


def test_pairing_removes_the_shared_seed_effect() -> None:
    # a constant +0.1 advantage on every seed, while the seeds themselves spread widely
    seed_effect = np.array([0.45, 0.80, 0.60, 0.70, 0.52])
    a, b = seed_effect + 0.1 + np.array([0.001, -0.002, 0.0, 0.002, -0.001]), seed_effect
    pa, ea, eb = paired_difference(a, b), mean_ci(a), mean_ci(b)
    assert pa.lo is not None and pa.lo > 0.09 and pa.half_width is not None and pa.half_width < 0.005
    assert ea.lo is not None and eb.hi is not None and ea.lo < eb.hi  # unpaired intervals overlap


def test_paired_difference_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_difference([0.1, 0.2], [0.1])


@pytest.mark.parametrize("bad", [[], [0.1, math.nan], [[0.1, 0.2]]])
def test_bad_values_are_refused(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        mean_ci(bad)  # type: ignore[arg-type]


def test_level_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="level"):
        mean_ci([0.1, 0.2], level=1.0)


def test_fmt_and_json() -> None:
    e = Estimate(mean=0.612, lo=0.571, hi=0.653, n=5)
    assert e.fmt() == "0.612 ± 0.041"
    assert Estimate(mean=0.05, lo=-0.01, hi=0.11, n=5).fmt(signed=True) == "+0.050 ± 0.060"
    assert Estimate(mean=-0.05, lo=-0.11, hi=0.01, n=5).fmt(signed=True, digits=2) == "-0.05 ± 0.06"
    assert e.to_json()["half_width"] == pytest.approx(0.041)
