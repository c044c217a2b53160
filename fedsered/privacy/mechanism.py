"""``DPSpec``: a calibrated DP mechanism, and ``calibrate``, the one place where a client's privacy settings become
noise.

A method that releases something about its data says how (its mechanism name, Poisson sample rate q and number of
noisy steps); ``calibrate`` asks the Opacus accountant for the σ that makes those steps spend the client's
per-release ``target_epsilon`` at its δ, and returns the ``DPSpec`` the method runs under (σ, C, q, steps, and the
seed of all its DP randomness). That seed is drawn from the operating system's entropy (``secrets``) on the client:
nothing the server sends, and nothing a replay of the client's computation could reproduce. Only with
``privacy.reproducible_noise`` (INSECURE against the server; tests and experiments) is it derived from the run seed,
and every privacy object then says so. Everything else about DP (which steps a distillation method takes) belongs to
the method (``fedsered.distill.dp``).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from fedsered.errors import ConfigError, PrivacyBudgetError
from fedsered.privacy.accountant import calibrate_noise
from fedsered.privacy.client import ClientPrivacy
from fedsered.privacy.release import PrivacyRelease
from fedsered.seeding import int_seed


@dataclass(frozen=True)
class DPSpec:
    """A calibrated DP mechanism, handed to the code that runs it.

    Attributes:
        mechanism: release name.
        noise_multiplier: σ.
        max_grad_norm: C.
        sample_rate: q.
        steps: noisy steps.
        noise_seed: seeds every random draw of the mechanism (Poisson masks, Gaussian noise, DP-SGD's dropout).
        reproducible: ``noise_seed`` was derived from the run seed (``privacy.reproducible_noise``).
    """

    mechanism: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    noise_seed: int = 0
    reproducible: bool = False

    def release(self) -> PrivacyRelease:
        """The release this mechanism makes when it runs to the end."""
        return PrivacyRelease(
            mechanism=self.mechanism, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
            steps=self.steps,
        )  # fmt: skip


def steps_per_epoch(sample_rate: float) -> int:
    """Poisson-sampled steps that make one expected pass over the data: ``⌈1 / q⌉``."""
    return max(1, math.ceil(1.0 / sample_rate - 1e-9))


def noise_seed(privacy: ClientPrivacy, seed: int) -> int:
    """The seed of a release's DP randomness: secret (OS entropy) unless ``privacy.reproducible_noise``."""
    return int_seed(seed, "dp/noise") if privacy.reproducible_noise else secrets.randbits(63)


REPRODUCIBLE_WARNING = (
    "reproducible_noise: the DP noise was derived from the run seed the server knows; this epsilon does NOT hold "
    "against the server (it can replay the computation)"
)


def reproducible_note(reproducible: bool) -> dict[str, object]:
    """What a privacy object carries about its noise: nothing when secret, a loud warning when reproducible."""
    return {"reproducible_noise": True, "warning": REPRODUCIBLE_WARNING} if reproducible else {}


def calibrate(
    privacy: ClientPrivacy, *, mechanism: str, sample_rate: float, steps: int, what: str, seed: int
) -> DPSpec:
    """The mechanism that spends ``privacy.target_epsilon`` over ``steps`` steps at rate ``sample_rate``.

    Args:
        privacy: the client's resolved settings (ε, δ, C, accountant).
        mechanism: the release's name.
        sample_rate: q.
        steps: noisy steps.
        what: which keys set the steps, named when the target cannot be met (e.g. ``"dm's 100 steps
            (distill.dm_iterations)"``).
        seed: the client's task seed (used for the DP randomness only with ``privacy.reproducible_noise``).

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
                  sample_rate=sample_rate, steps=steps, noise_seed=noise_seed(privacy, seed),
                  reproducible=privacy.reproducible_noise)  # fmt: skip
