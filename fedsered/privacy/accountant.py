"""ε of a list of releases and σ for a target ε, through Opacus' accountants (no hand-written accounting).

``epsilon_of`` composes every release with one Opacus accountant (its ``history`` holds one
``(noise_multiplier, sample_rate, steps)`` entry per release) — releases compose at the RDP / PRV level, never by
adding ε's. ``calibrate_noise`` is Opacus' ``get_noise_multiplier``. For RDP both pass ``RDP_ALPHAS``: Opacus' default
orders stop at 63, and at small σ·q (tiny ε) or large ε the optimal order falls outside them ("optimal order is the
largest alpha"), which only loosens the bound; the wider grid keeps it tight.

Both are memoised on their (hashable) arguments: Opacus' RDP of fractional orders is a Python loop (~0.4 s per
``get_epsilon``, ~5 s per calibration, profiled), and federated clients ask the same questions every round.
Opacus is imported where it is called, not with this module: importing it pulls in ``torch.distributed`` and SymPy
(~1 CPU s and ~70 MB per process, measured), which a client without DP never uses.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

from fedsered.errors import PrivacyBudgetError
from fedsered.privacy.release import PrivacyRelease

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
"""Opacus accountants fedsered uses (``create_accountant`` names)."""

RDP_ALPHAS: tuple[float, ...] = tuple(
    [1 + x / 100 for x in range(1, 10)]
    + [1 + x / 10 for x in range(1, 100)]
    + list(range(12, 64))
    + [64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 2048, 4096]
)
"""RDP orders searched (Opacus' defaults widened below 1.1 and above 63)."""


def _kwargs(accountant: str) -> dict[str, Any]:
    if accountant not in ACCOUNTANTS:
        raise PrivacyBudgetError(f"privacy.accountant: unknown accountant {accountant!r}; expected rdp or prv")
    return {"alphas": list(RDP_ALPHAS)} if accountant == "rdp" else {}


def epsilon_of(releases: Sequence[PrivacyRelease], *, delta: float, accountant: str) -> float:
    """The ε at ``delta`` of all ``releases`` composed by the Opacus accountant ``accountant``.

    Args:
        releases: the releases (an empty list gives 0).
        delta: target δ.
        accountant: ``"rdp"`` or ``"prv"``.

    Returns:
        ε (``inf`` when the accountant cannot bound it).
    """
    _kwargs(accountant)
    if not releases:
        return 0.0
    history = tuple((float(r.noise_multiplier), float(r.sample_rate), int(r.steps)) for r in releases)
    return _epsilon(history, float(delta), accountant)


@functools.lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    from opacus.accountants import create_accountant

    kwargs = _kwargs(accountant)
    acc = create_accountant(mechanism=accountant)
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the order-range warning: RDP_ALPHAS already widen the search
        eps = float(acc.get_epsilon(delta=delta, **kwargs))
    return eps if math.isfinite(eps) else math.inf


def calibrate_noise(*, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier (within Opacus' 0.01 ε tolerance) whose ``steps`` steps at ``sample_rate`` stay
    within ``target_epsilon`` at ``delta`` (Opacus ``get_noise_multiplier``).

    Args:
        target_epsilon: ε of the release (> 0).
        delta: δ of the release.
        sample_rate: Poisson sampling rate per step.
        steps: number of steps.
        accountant: ``"rdp"`` or ``"prv"``.

    Returns:
        σ.

    Raises:
        PrivacyBudgetError: the budget is too small for the steps asked (σ would exceed Opacus' 1e6 cap), or the
            accountant fails.
    """
    _kwargs(accountant)
    if not target_epsilon > 0:
        raise PrivacyBudgetError(f"privacy.target_epsilon: must be > 0, got {target_epsilon}")
    if target_epsilon < TINY_EPSILON:
        from opacus.accountants.utils import MAX_SIGMA

        floor = _epsilon(((MAX_SIGMA, float(sample_rate), int(steps)),), float(delta), accountant)
        if floor > target_epsilon:
            raise PrivacyBudgetError(
                f"cannot reach epsilon={target_epsilon:g} at delta={delta:g} with {steps} steps at sample rate "
                f"{sample_rate:g} ({accountant}): even sigma={MAX_SIGMA:g} gives epsilon {floor:.3g}"
            )
    return _noise_multiplier(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant)


TINY_EPSILON = 0.05
"""Below this target, ``calibrate_noise`` first checks that the largest σ Opacus searches can reach it at all (one
accountant call) instead of letting Opacus double σ for a minute before it gives up."""


@functools.lru_cache(maxsize=1024)
def _noise_multiplier(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    kwargs = _kwargs(accountant)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps,
                accountant=accountant, **kwargs,
            )  # fmt: skip
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise PrivacyBudgetError(
            f"cannot reach epsilon={target_epsilon:g} at delta={delta:g} with {steps} steps at sample rate "
            f"{sample_rate:g} ({accountant}): {exc}"
        ) from None
    return float(sigma)


def privacy_object(releases: Sequence[PrivacyRelease], *, delta: float, accountant: str) -> dict[str, Any]:
    """The output contract's ``privacy`` object: ``{"epsilon", "delta", "accountant", "releases": [...]}`` with
    ``epsilon = epsilon_of(releases, delta=delta, accountant=accountant)``."""
    return {
        "epsilon": epsilon_of(releases, delta=delta, accountant=accountant),
        "delta": float(delta),
        "accountant": accountant,
        "releases": [r.to_json() for r in releases],
    }


def releases_of(obj: dict[str, Any], *, source: str = "privacy") -> list[PrivacyRelease]:
    """The releases of a ``privacy`` object (for independent recomputation of its ε)."""
    return [PrivacyRelease.from_json(r, source=f"{source}.releases[{i}]") for i, r in enumerate(obj["releases"])]
