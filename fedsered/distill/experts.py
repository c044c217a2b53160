"""Expert trajectories for trajectory matching: models trained on the real data with plain SGD, one snapshot per epoch.

Fixed initialisation (the seed paper's setting): with ``init_state`` (θ₀) every expert starts from θ₀ and the experts
differ only in their data order; with ``init_state=None`` each expert starts from its own random initialisation.
Experts run without dropout, like the student that follows them (the student's steps must be able to reproduce
theirs).

Under DP (``dp``, a calibrated ``fedsered.privacy.mechanism.DPSpec``) each expert trains with DP-SGD through Opacus
(``fedsered.privacy.dpsgd.train_dp_sgd``: Poisson sampling, per-example clipping, Gaussian noise) for
``epochs × ⌈n / batch_size⌉`` steps, one snapshot per ``⌈n / batch_size⌉`` steps; the spec's steps cover every step of
every expert, and anything matched to the snapshots is post-processing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsered.config import ModelConfig
from fedsered.distill.networks import no_dropout
from fedsered.distill.params import ParamLayout, flatten_state, layout_of
from fedsered.models.build import build_model, random_init_state
from fedsered.privacy.dpsgd import train_dp_sgd
from fedsered.privacy.mechanism import DPSpec, steps_per_epoch
from fedsered.seeding import int_seed, torch_generator
from fedsered.training.train import train_epoch


@dataclass(frozen=True)
class Trajectory:
    """One expert's parameters after each epoch.

    Attributes:
        params: ``[epochs + 1, P]`` float32; row 0 is the initialisation.
        layout: how a row maps to the model's parameters.
        init: ``"theta0"`` or ``"random"``.
    """

    params: torch.Tensor
    layout: ParamLayout
    init: str

    @property
    def epochs(self) -> int:
        """Epochs trained (rows minus one)."""
        return int(self.params.shape[0]) - 1


def train_expert(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    model: nn.Module,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    momentum: float = 0.0,
) -> torch.Tensor:
    """Train ``model`` in place with mini-batch SGD (no weight decay) and return its trajectory.

    Args:
        x: ``[n, 1, mels, frames]`` real features.
        y: ``[n]`` labels.
        model: the network, at its initial weights.
        epochs: passes over the data.
        lr: SGD step size.
        batch_size: mini-batch size.
        generator: shuffling stream.
        momentum: SGD momentum (the student's unrolled steps have none; its learned step size absorbs the scale).

    Returns:
        ``[epochs + 1, P]`` flat parameters after each epoch (row 0 = start).
    """
    layout = layout_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    snaps = [flatten_state(dict(model.named_parameters()), layout)]
    model.train()
    for _ in range(epochs):
        train_epoch(model, opt, x, y, batch_size=batch_size, generator=generator)
        snaps.append(flatten_state(dict(model.named_parameters()), layout))
    return torch.stack(snaps)


def train_experts(
    x: np.ndarray,
    y: np.ndarray,
    *,
    model_cfg: ModelConfig,
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    num_experts: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    momentum: float = 0.0,
    dp: DPSpec | None = None,
) -> list[Trajectory]:
    """Expert trajectories on the client's real data.

    Args:
        x: ``[n, 1, mels, frames]`` float32.
        y: ``[n]`` int64.
        model_cfg: architecture (dropout is switched off).
        n_classes: number of classes.
        init_state: θ₀ — every expert starts there — or ``None`` for one random initialisation per expert.
        num_experts: how many trajectories.
        epochs: epochs per expert.
        lr: SGD step size.
        batch_size: mini-batch size.
        seed: derives each expert's data order (and random initialisation) by role ``mtt/expert/<k>``.
        momentum: SGD momentum of the experts.
        dp: train with DP-SGD under this calibrated mechanism (its ``steps`` must equal every expert step), or
            ``None`` for plain SGD.

    Returns:
        ``num_experts`` trajectories.
    """
    cfg = no_dropout(model_cfg)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    out = []
    for k in range(num_experts):
        start = init_state
        if start is None:
            start = random_init_state(cfg, n_classes=n_classes, seed=int_seed(seed, f"mtt/expert/{k}/init"))
        model = build_model(cfg, n_classes=n_classes, init_state=start)
        if dp is not None:
            out.append(_dp_expert(model, xt, yt, dp=dp, num_experts=num_experts, epochs=epochs, lr=lr,
                                  momentum=momentum, seed=int_seed(dp.noise_seed, f"mtt/dp-expert/{k}"),
                                  init="theta0" if init_state is not None else "random"))  # fmt: skip
            continue
        params = train_expert(
            xt, yt, model=model, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
            generator=torch_generator(seed, f"mtt/expert/{k}/order"),
        )  # fmt: skip
        kind = "theta0" if init_state is not None else "random"
        out.append(Trajectory(params=params, layout=layout_of(model), init=kind))
    return out


def _dp_expert(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    dp: DPSpec,
    num_experts: int,
    epochs: int,
    lr: float,
    momentum: float,
    seed: int,
    init: str,
) -> Trajectory:
    """One DP-SGD expert: ``epochs`` "epochs" of ``⌈1 / q⌉`` Poisson-sampled steps each (``seed``: secret)."""
    per_epoch = steps_per_epoch(dp.sample_rate)
    if dp.steps != num_experts * epochs * per_epoch:
        raise ValueError(f"DP spec covers {dp.steps} steps, the experts take {num_experts * epochs * per_epoch}")
    layout = layout_of(model)
    snaps = [flatten_state(dict(model.named_parameters()), layout)]
    release = train_dp_sgd(
        model, x, y, noise_multiplier=dp.noise_multiplier, max_grad_norm=dp.max_grad_norm, sample_rate=dp.sample_rate,
        steps=epochs * per_epoch, lr=lr, momentum=momentum, seed=seed, mechanism=dp.mechanism, every=per_epoch,
        on_every=lambda m: snaps.append(flatten_state(dict(m.named_parameters()), layout)),
    )  # fmt: skip
    if abs(release.sample_rate - dp.sample_rate) > 1e-12:
        raise ValueError(f"Opacus sampled at q={release.sample_rate}, the DP spec assumed {dp.sample_rate}")
    return Trajectory(params=torch.stack(snaps), layout=layout, init=init)
