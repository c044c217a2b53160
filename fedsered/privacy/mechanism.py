"""``DPSpec``: a calibrated DP mechanism, and ``calibrate``, the one place where a client's privacy settings become
noise.

A method that releases something about its data says how (its mechanism name, Poisson sample rate q and number of
noisy steps); ``calibrate`` asks the Opacus accountant for the σ that makes those steps spend the client's
per-release ``target_epsilon`` at its δ, and returns the ``DPSpec`` the method runs under (σ, C, q, steps). Everything
else about DP (which steps a distillation method takes) belongs to the method (``fedsered.distill.dp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsered.errors import ConfigError, PrivacyBudgetError
from fedsered.privacy.accountant import calibrate_noise
from fedsered.privacy.client import ClientPrivacy
from fedsered.privacy.release import PrivacyRelease


@dataclass(frozen=True)
class DPSpec:
    """A calibrated DP mechanism, handed to the code that runs it.

    Attributes:
        mechanism: release name.
        noise_multiplier: σ.
        max_grad_norm: C.
        sample_rate: q.
        steps: noisy steps.
    """

    mechanism: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int

    def release(self) -> PrivacyRelease:
        """The release this mechanism makes when it runs to the end."""
        return PrivacyRelease(
            mechanism=self.mechanism, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
            steps=self.steps,
        )  # fmt: skip


def batches_per_epoch(n: int, batch_size: int) -> int:
    """DP-SGD steps per epoch: ``⌈n / batch_size⌉`` (Opacus' ``DPDataLoader`` samples at its inverse)."""
    return max(1, math.ceil(n / max(1, min(batch_size, n))))


def calibrate(privacy: ClientPrivacy, *, mechanism: str, sample_rate: float, steps: int, what: str) -> DPSpec:
    """The mechanism that spends ``privacy.target_epsilon`` over ``steps`` steps at rate ``sample_rate``.

    Args:
        privacy: the client's resolved settings (ε, δ, C, accountant).
        mechanism: the release's name.
        sample_rate: q.
        steps: noisy steps.
        what: which keys set the steps, named when the target cannot be met (e.g. ``"dm's 100 steps
            (distill.dm_iterations)"``).

    Raises:
        ConfigError: the target ε cannot be met for these steps (names the ε key and ``what``).
    """
    try:
        sigma = calibrate_noise(
            target_epsilon=privacy.target_epsilon, delta=privacy.delta, sample_rate=sample_rate, steps=steps,
            accountant=privacy.accountant,
        )  # fmt: skip
    except PrivacyBudgetError as exc:
        who = f"client {privacy.client_id}" if privacy.client_id is not None else "the training split"
        raise ConfigError(
            f"{privacy.epsilon_key}: {privacy.target_epsilon:g} for {who} is too small for {what} at sample rate "
            f"{sample_rate:.4g}; raise it or take fewer steps ({exc})"
        ) from None
    return DPSpec(mechanism=mechanism, noise_multiplier=sigma, max_grad_norm=privacy.max_grad_norm,
                  sample_rate=sample_rate, steps=steps)  # fmt: skip
