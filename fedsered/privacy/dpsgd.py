"""DP-SGD training through Opacus' ``PrivacyEngine`` with Poisson sampling (DP trajectory experts, DP-FedAvg).

``train_dp_sgd`` wraps the model, an SGD optimiser and Opacus' ``DPDataLoader`` (each example joins each step
independently with probability q — a public constant, ``privacy.sample_rate``, not a function of the client's n) with
``PrivacyEngine.make_private``, runs a given number of steps and returns the ``PrivacyRelease`` the accountant
composes; the engine's own accountant history is checked to hold exactly that release. Sampling, noise and dropout
come from generators seeded by ``seed`` — the client's secret DP seed (``DPSpec.noise_seed``), so the server cannot
replay them.
Opacus is imported in ``train_dp_sgd``, not with this module (see ``fedsered.privacy.accountant``: a client without
DP never loads it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fedsered.privacy.release import PrivacyRelease
from fedsered.seeding import int_seed, torch_generator

GRAD_SAMPLE_MODE = "ew"
"""Opacus' per-example gradient engine: torch's expanded weights. Measured on cnn6 at batch 16 (one thread), a DP-SGD
step costs 1.5× a plain step with ``"ew"`` against 2.0× with the default ``"hooks"`` (same clipped update to 4e-9).
``"ew"`` cannot run a batch of 0, which Poisson sampling draws now and then: such a step is taken by hand with empty
per-example gradients, so the optimiser still adds its noise (the accountant counts every step)."""


def train_dp_sgd(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    sample_rate: float,
    steps: int,
    lr: float,
    seed: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    accountant: str = "rdp",
    mechanism: str = "dp_sgd",
    every: int = 0,
    on_every: Callable[[nn.Module], None] | None = None,
) -> PrivacyRelease:
    """Train ``model`` in place with DP-SGD for ``steps`` Poisson-sampled steps.

    Args:
        model: the network (GroupNorm, no BatchNorm); trained in place (its ``nn.ReLU`` modules are switched to
            out-of-place, which Opacus' hooks mode needs; the same function).
        x: ``[n, ...]`` float32 inputs.
        y: ``[n]`` int64 labels.
        noise_multiplier: σ.
        max_grad_norm: C (per-example clipping over all parameters).
        sample_rate: q, each example's probability of joining each step.
        steps: optimiser steps.
        lr: SGD step size.
        seed: the secret DP seed; derives the sampling (``dp_sgd/sample``), noise and dropout streams.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        accountant: the engine's accountant (``"rdp"`` or ``"prv"``).
        mechanism: name of the release.
        every: call ``on_every(model)`` after every ``every`` steps (0: never).
        on_every: the callback (gets the unwrapped model).

    Returns:
        The release ``(σ, q, steps)``.
    """
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader

    for m in model.modules():  # Opacus' "hooks" mode forbids in-place ops on hooked outputs (kept for any mode)
        if isinstance(m, nn.ReLU):
            m.inplace = False
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    # Poisson sampling at rate q, built here because make_private(poisson_sampling=True) gives the sampler Opacus'
    # own generator (None without secure mode: torch's global stream), which no seed controls.
    loader = DPDataLoader(TensorDataset(xt, yt), sample_rate=sample_rate,
                          generator=torch_generator(seed, "dp_sgd/sample"))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "secure RNG turned off": our generators are seeded from the client's secret
        engine = PrivacyEngine(accountant=accountant)
        dp_model, dp_opt, dp_loader = engine.make_private(
            module=model, optimizer=opt, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, poisson_sampling=False, noise_generator=torch_generator(seed, "dp_sgd/noise"),
            grad_sample_mode=GRAD_SAMPLE_MODE,
        )  # fmt: skip
    q = float(dp_loader.sample_rate)
    # dropout draws from torch's global stream: seed it from the run seed and leave the caller's stream untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int_seed(seed, "dp_sgd/dropout"))
        dp_model.train()
        done = 0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            while done < steps:
                for xb, yb in dp_loader:
                    dp_opt.zero_grad(set_to_none=True)
                    # an empty Poisson batch still takes its (pure-noise) step: the accountant counts every step
                    if len(xb):
                        nn.functional.cross_entropy(dp_model(xb), yb).backward()
                        zero_nonfinite_samples(model)
                    else:
                        for p in model.parameters():
                            p.grad_sample = p.new_zeros((0, *p.shape))  # type: ignore[attr-defined]
                    dp_opt.step()
                    done += 1
                    if every and on_every is not None and done % every == 0:
                        on_every(model)
                    if done == steps:
                        break
    release = PrivacyRelease(mechanism=mechanism, noise_multiplier=float(noise_multiplier), sample_rate=q, steps=steps)
    history = [(float(s), float(r), int(k)) for s, r, k in engine.accountant.history]
    if history != [(release.noise_multiplier, q, steps)]:
        raise RuntimeError(f"Opacus accounted {history}, fedsered releases {release}")
    dp_model.remove_hooks()
    for p in model.parameters():  # leave a plain module behind (no per-sample gradients hanging on it)
        p.grad = None
        for attr in ("grad_sample", "summed_grad", "_forward_counter"):
            if hasattr(p, attr):
                delattr(p, attr)
    return release


def zero_nonfinite_samples(model: nn.Module) -> None:
    """Zero, in every parameter's per-example gradient (``grad_sample``), the examples whose gradient holds a NaN or
    ±inf anywhere (``fedsered.privacy.gaussian.finite_rows``, for Opacus' clipping). Opacus clips
    ``min(1, C/‖g‖)·g``, which is NaN for such a ``g``, and one NaN makes the whole noisy update NaN: the update would
    tell that an example of the batch made it, whatever σ. The model trained is the server's (θ₀ or the global
    model, the adversary's choice), and a finite state can overflow on some inputs; a zeroed example adds nothing,
    so every example's clipped gradient keeps norm ≤ C and the step's sensitivity stays C."""
    grads = [g for p in model.parameters() if isinstance(g := getattr(p, "grad_sample", None), torch.Tensor)]
    if not grads:
        return
    ok = torch.stack([torch.isfinite(g.reshape(len(g), -1)).all(dim=1) for g in grads]).all(dim=0)
    if bool(ok.all()):
        return
    for g in grads:
        g[~ok] = 0.0
