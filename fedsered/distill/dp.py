"""What each distillation method's DP mechanism costs: its sample rate and steps (then ``privacy.calibrate``).

- ``gm`` (PSG): every synthetic update takes one Poisson sample of the real data at rate q and releases noisy
  per-class sums of clipped per-example gradients: ``gm_iterations × gm_outer_loop`` steps at q.
- ``dm``: every update takes one Poisson sample at rate q and releases noisy per-class sums of clipped embeddings
  (with a count coordinate): ``dm_iterations`` steps at q.
- ``mtt``: the experts are trained with DP-SGD (Opacus, Poisson sampling at q); an "epoch" is ⌈1 / q⌉ steps, and ε
  covers every step of every expert: ``num_experts × expert_train_epochs × ⌈1 / q⌉`` steps at q.
- ``merf``: ONE release of noisy per-class sums of clipped embeddings (with a count coordinate) over all real
  examples: one step at sample rate 1 (no subsampling, so no amplification is claimed; Opacus' accountants take
  q = 1 as the plain Gaussian mechanism). ``privacy.sample_rate`` does not apply.

q is ``privacy.sample_rate`` for gm, dm and mtt, and 1 for merf: a public constant, so neither q, the steps nor σ
(all published in the release) depend on how many examples the client holds. Everything the methods do besides these
releases (random networks, the noise start of the synthetic set, student unrolls, inner training on synthetic data,
merf's fit to its released means) is data-independent or post-processing.
"""

from __future__ import annotations

from fedsered.config import DistillConfig
from fedsered.errors import ConfigError
from fedsered.privacy.client import ClientPrivacy
from fedsered.privacy.mechanism import DPSpec, calibrate, steps_per_epoch

DP_METHODS: dict[str, str] = {"gm": "dp_gm_psg", "dm": "dp_dm", "mtt": "dp_sgd_experts", "merf": "dp_merf_oneshot"}
"""Distillation methods with a DP mechanism, and the mechanism's name in releases."""

STEP_KEYS: dict[str, str] = {
    "gm": "distill.gm_iterations x distill.gm_outer_loop",
    "dm": "distill.dm_iterations",
    "mtt": "distill.num_experts x distill.expert_train_epochs x ceil(1 / privacy.sample_rate)",
    "merf": "one release at sample rate 1, whatever distill.merf_iterations",
}
"""The config keys that set each mechanism's steps (named in errors)."""


def sample_rate_and_steps(method: str, *, cfg: DistillConfig, privacy: ClientPrivacy) -> tuple[float, int]:
    """``(q, steps)`` of ``method``'s mechanism (see the module docstring)."""
    if method not in DP_METHODS:
        raise ConfigError(
            f"distill.methods: {method!r} has no DP mechanism (it shares real examples or depends on them directly); "
            f"with privacy.enabled use one of {', '.join(DP_METHODS)}"
        )
    if method == "merf":
        return 1.0, 1
    q = privacy.sample_rate
    if method == "mtt":
        return q, cfg.num_experts * cfg.expert_train_epochs * steps_per_epoch(q)
    return q, cfg.gm_iterations * cfg.gm_outer_loop if method == "gm" else cfg.dm_iterations


def plan_dp(method: str, *, cfg: DistillConfig, privacy: ClientPrivacy, seed: int) -> DPSpec:
    """The calibrated mechanism of ``method`` for one release at ``privacy.target_epsilon``.

    Raises:
        ConfigError: ``method`` has no DP mechanism, or the target ε cannot be met for its steps (names the key).
    """
    q, steps = sample_rate_and_steps(method, cfg=cfg, privacy=privacy)
    return calibrate(privacy, mechanism=DP_METHODS[method], sample_rate=q, steps=steps, seed=seed,
                     what=f"{method}'s {steps} steps ({STEP_KEYS[method]})")  # fmt: skip
