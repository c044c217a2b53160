"""Building a model from the config, its fixed initialisation θ₀, and its size (parameters and MACs)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fedsered.config import ModelConfig
from fedsered.models.nets import CNN6, CNNIoT, ResNet9
from fedsered.seeding import int_seed

_NETS: dict[str, type[nn.Module]] = {"cnn6": CNN6, "cnn_iot": CNNIoT, "resnet9": ResNet9}


def build_model(cfg: ModelConfig, *, n_classes: int, init_state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A fresh model; with ``init_state`` its weights are set to that state (the fixed-initialisation setting).

    Args:
        cfg: the ``model`` section.
        n_classes: number of emotions.
        init_state: optional state dict to load (e.g. θ₀ from ``fixed_init_state``).

    Returns:
        The model (float32, train mode).
    """
    model = _NETS[cfg.name](n_classes, width=cfg.width, dropout=cfg.dropout, pooling=cfg.pooling)
    if init_state is not None:
        model.load_state_dict(init_state)
    return model


def random_init_state(cfg: ModelConfig, *, n_classes: int, seed: int) -> OrderedDict[str, torch.Tensor]:
    """The initial weights torch's default initialisers give under ``seed`` (global RNG state left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _NETS[cfg.name](n_classes, width=cfg.width, dropout=cfg.dropout, pooling=cfg.pooling)
    return OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())


def fixed_init_state(cfg: ModelConfig, *, n_classes: int) -> OrderedDict[str, torch.Tensor]:
    """θ₀: the one seeded initialisation shared by experts, clients and every model trained on synthetic data."""
    return random_init_state(cfg, n_classes=n_classes, seed=int_seed(cfg.init_seed, "init/theta0"))


def complexity(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward pass on one example of ``input_shape`` ([1, mels, frames]).

    Counts convolutions and linear layers (normalisation, activations and pooling are a few percent at most).
    """
    macs = 0

    def conv_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        macs += int(out.numel() * k)

    def linear_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += int(out.numel() * mod.in_features)

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "macs": int(macs)}
