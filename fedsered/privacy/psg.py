"""Private real-data gradients for gradient matching (PSG; Chen, Kerkouche & Fritz, NeurIPS 2022).

Each real example's cross-entropy gradient is computed on its own with ``torch.func`` (``vmap(grad(...))`` over
``functional_call``) — Opacus' ``GradSampleModule`` gives the same per-sample gradients but cannot keep the graph
that gradient matching needs on the synthetic side, and its hooks would double the work for nothing here. Only the
parameters that are matched are released (``matched``: DC leaves 1-D parameters out of its distance, so their
gradients are neither clipped nor released). The per-example gradient over all released parameters is clipped to
norm C as one vector, and ``noisy_class_sums`` adds the clipped gradients of each class with noise σ·C: one step of
the sampled Gaussian mechanism. Gradient matching compares gradients by cosine per output unit, so the sums need no
division by the (data-dependent) class counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsered.privacy.gaussian import clip_rows, noisy_class_sums

Params = dict[str, torch.Tensor]


def matched(params: Params) -> list[str]:
    """Names of the parameters gradient matching compares (those with more than one dimension)."""
    return [k for k, v in params.items() if v.ndim > 1]


def per_sample_grads(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, names: list[str]) -> Params:
    """``{name: [B, *shape]}``: each example's own cross-entropy gradient with respect to ``params[name]``.

    Args:
        model: architecture (its weights are ignored); must treat examples independently (GroupNorm, no BatchNorm).
        params: parameter values (detached).
        x: ``[B, ...]`` inputs.
        y: ``[B]`` labels.
        names: the parameters differentiated; the others are held fixed.

    Returns:
        Per-example gradients.
    """
    fixed = {k: v.detach() for k, v in params.items() if k not in names}

    def loss_one(p: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    f: Callable[..., Params] = vmap(grad(loss_one), in_dims=(None, 0, 0))
    return f({k: params[k].detach() for k in names}, x, y)


def private_class_gradients(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    max_norm: float,
    noise_multiplier: float,
    generator: torch.Generator,
) -> dict[int, Params]:
    """One PSG step: per-class sums of per-example clipped gradients of the matched parameters, plus N(0, (σC)²).

    Args:
        model: architecture.
        params: the network's parameters (detached).
        x: ``[B, ...]`` the Poisson-sampled real examples (``B`` may be 0).
        y: ``[B]`` their labels.
        n_classes: every class gets a noisy sum.
        max_norm: C (clipping bound of each example's gradient over all matched parameters).
        noise_multiplier: σ.
        generator: the noise stream.

    Returns:
        ``{class: {name: noisy summed gradient}}`` for every class.
    """
    names = matched(params)
    shapes = {k: params[k].shape for k in names}
    if len(x):
        g = per_sample_grads(model, params, x, y, names=names)
        flat = torch.cat([g[k].reshape(len(x), -1) for k in names], dim=1)
        flat = clip_rows(flat, max_norm)
    else:
        flat = torch.zeros((0, sum(int(torch.tensor(s).prod()) for s in shapes.values())))
    sums = noisy_class_sums(
        flat, y, n_classes=n_classes, noise_multiplier=noise_multiplier, max_norm=max_norm, generator=generator
    )
    sizes = [int(torch.tensor(shapes[k]).prod()) for k in names]
    out: dict[int, Params] = {}
    for c in range(n_classes):
        parts = torch.split(sums[c], sizes)
        out[c] = {k: p.view(shapes[k]) for k, p in zip(names, parts, strict=True)}
    return out
