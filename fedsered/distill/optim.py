"""The optimiser of the synthetic features.

``adam``: Adam with step size ``lr_img`` — every feature moves by about ``lr_img`` per update whatever its gradient,
which also moves features the loss barely depends on. ``sgd``: SGD with momentum 0.5 (as DC, DM and MTT use) on the
gradient rescaled to unit root-mean-square over the whole tensor, so that ``lr_img`` is again the typical step per
feature (scale-free across methods and losses) while the direction — which features move, and how much relative to
each other — is the gradient's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from fedsered.training.train import Progress


class NormalisedSGD(torch.optim.Optimizer):
    """SGD with momentum on ``grad / rms(grad)`` (per parameter tensor)."""

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float = 0.5) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update (``closure`` is not supported and must be ``None``)."""
        if closure is not None:
            raise ValueError("NormalisedSGD does not take a closure")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad / p.grad.pow(2).mean().sqrt().clamp_min(1e-12)
                state = self.state[p]
                buf = state.get("momentum")
                buf = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
                state["momentum"] = buf
                p.add_(buf, alpha=-group["lr"])
        return None


def image_optimizer(params: list[torch.Tensor], *, kind: str, lr: float) -> torch.optim.Optimizer:
    """The optimiser of the synthetic features: ``"adam"`` or ``"sgd"`` (see module docstring)."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "sgd":
        return NormalisedSGD(params, lr=lr, momentum=0.5)
    raise ValueError(f"unknown image optimiser {kind!r}; expected 'adam' or 'sgd'")


def learnable_features(x_init: np.ndarray, *, kind: str, lr: float) -> tuple[torch.Tensor, torch.optim.Optimizer]:
    """The synthetic features as a float32 leaf tensor that requires grad (a copy of ``x_init``), and its optimiser."""
    x_syn = torch.tensor(x_init, dtype=torch.float32, requires_grad=True)
    return x_syn, image_optimizer([x_syn], kind=kind, lr=lr)


def feature_update(
    opt: torch.optim.Optimizer, loss: torch.Tensor, *, history: list[float], progress: Progress | None, total: int
) -> None:
    """One update of the synthetic features on ``loss``: backward, step, append the loss to ``history`` and report
    ``(len(history), total)`` to ``progress``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    history.append(float(loss.detach()))
    if progress is not None:
        progress(len(history), total)
