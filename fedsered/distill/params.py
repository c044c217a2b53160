"""A model's trainable parameters as one flat vector, and a functional forward pass on such a vector.

Trajectory matching unrolls SGD on a flat parameter vector (as Cazenavette et al. do) so that the unroll stays
differentiable with respect to the synthetic data and the student step size; ``torch.func.functional_call`` runs
the network on views of that vector. The nets use GroupNorm, so they hold no buffers that a functional call would
have to carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and sizes of a module's trainable parameters, in ``named_parameters`` order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        """Length of the flat vector."""
        return sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` as a parameter dict (differentiable)."""
        parts = torch.split(flat, list(self.sizes))
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}


def layout_of(model: nn.Module) -> ParamLayout:
    """The layout of ``model``'s trainable parameters."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return ParamLayout(
        names=tuple(n for n, _ in named),
        shapes=tuple(p.shape for _, p in named),
        sizes=tuple(p.numel() for _, p in named),
    )


def flatten_state(state: dict[str, torch.Tensor], layout: ParamLayout) -> torch.Tensor:
    """The flat float32 vector of the parameters of ``state`` named in ``layout`` (a detached copy)."""
    return torch.cat([state[n].detach().reshape(-1).to(torch.float32) for n in layout.names]).clone()


def functional_forward(model: nn.Module, layout: ParamLayout, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` with its parameters replaced by ``flat`` (differentiable in ``flat`` and ``x``)."""
    out = functional_call(model, layout.unflatten(flat), (x,))
    assert isinstance(out, torch.Tensor)
    return out
