"""Benchmark: the cost of DP in one distillation step, DP step over non-DP step, both measured in this run.

For each learned method on a problem of the default corpus' shape (random class-structured 64×94 log-Mel features,
5 classes, ``--n`` real examples; the embedded corpus' training split has 540), one synthetic update is timed with and
without DP at the same expected real batch (non-DP: ``batch_real`` examples per class; DP: a Poisson sample at
q = batch_real × classes / n):

- gm: real per-class gradients (plain autograd on the class batch) vs PSG (per-example ``vmap(grad)`` gradients of the
  matched parameters, clipped, summed per class, noised), then the same synthetic gradient, distance and backward;
- dm: real per-class mean embeddings vs clipped per-example embeddings with a count coordinate, noisy per-class sums;
- mtt experts: one plain SGD step vs one Opacus DP-SGD step (per-example gradients by ``train_dp_sgd``'s engine,
  ``GRAD_SAMPLE_MODE``: expanded weights; clipping, noise) at ``expert_batch``.

Times are CPU seconds of this process (``time.process_time``, median of ``--repeats``) on one torch thread, so a shared
machine changes them less than wall time. Target: DP/non-DP ≤ 2× (stretch 1.5×).

Run: ``.venv/bin/python benchmarks/dp_overhead.py`` (about a minute idle; ``--n 60`` for one client).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig, ModelConfig
from fedsered.distill.dm import _PrivateMeans, dm_loss, dp_dm_loss
from fedsered.distill.gm import gm_loss
from fedsered.distill.networks import frozen_net, no_dropout
from fedsered.models import build_model, fixed_init_state
from fedsered.privacy.dpsgd import GRAD_SAMPLE_MODE
from fedsered.privacy.gaussian import poisson_sample
from fedsered.privacy.mechanism import DPSpec
from fedsered.privacy.psg import private_class_gradients

N_CLASSES = 5


def problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = np.random.default_rng(seed)
    y = (np.arange(n) % N_CLASSES).astype(np.int64)
    x = r.normal(size=(n, 1, 64, 94)).astype(np.float32)
    x[np.arange(n), 0, y * 8] += 2.0
    return torch.from_numpy(x), torch.from_numpy(y)


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (torch.func's first call, allocator)
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=540, help="real examples (540: the default training split)")
    ap.add_argument("--model", default="cnn6")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = DistillConfig()
    model_cfg = no_dropout(ModelConfig(name=args.model, width=16))
    x, y = problem(args.n, 0)
    ipc = 10
    xs = torch.randn(N_CLASSES * ipc, 1, 64, 94, requires_grad=True)
    ys = torch.arange(N_CLASSES).repeat_interleave(ipc)
    q = min(1.0, cfg.batch_real * N_CLASSES / args.n)
    spec = DPSpec(mechanism="bench", noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=q, steps=1)
    theta0 = fixed_init_state(model_cfg, n_classes=N_CLASSES)
    model = build_model(model_cfg, n_classes=N_CLASSES, init_state=theta0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    gen = np.random.default_rng(0)
    noise = torch.Generator().manual_seed(0)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} CPUs (load average {load}), torch {torch.__version__}, 1 thread; {args.model} "
        f"width 16, n={args.n}, 5 classes, IPC {ipc}; non-DP batch_real {cfg.batch_real}/class, DP Poisson "
        f"q={q:.3f} (expected {q * args.n:.0f} examples)"
    )

    def gm_plain() -> None:
        loss = gm_loss(model, params, x, y, xs, ys, batch_real=cfg.batch_real, gen=gen)
        loss.backward()

    def gm_dp() -> None:
        idx = torch.from_numpy(poisson_sample(len(x), sample_rate=q, gen=gen))
        real = private_class_gradients(model, params, x[idx], y[idx], n_classes=N_CLASSES, max_norm=1.0,
                                       noise_multiplier=1.0, generator=noise)  # fmt: skip
        gm_loss(model, params, x, y, xs, ys, batch_real=None, gen=gen, real_grads=real).backward()

    net = frozen_net(theta0, model_cfg=model_cfg, n_classes=N_CLASSES)
    means = _PrivateMeans(x, y.numpy(), n_classes=N_CLASSES, dp=spec, seed=0)

    def dm_plain() -> None:
        dm_loss(net, x, y.numpy(), xs, ys.numpy(), batch_real=cfg.batch_real, gen=gen).backward()

    def dm_dp() -> None:
        dp_dm_loss(net, means.step(net), xs, ys.numpy(), max_norm=1.0).backward()

    rows = [("gm (PSG) update", gm_plain, gm_dp), ("dm update", dm_plain, dm_dp)]
    rows.append(("mtt expert step", *expert_steps(x, y, model_cfg, theta0, cfg.expert_batch)))
    print(f"{'step':<18}{'non-DP s':>10}{'DP s':>10}{'ratio':>8}")
    for name, plain, dp in rows:
        a, b = cpu_time(plain, args.repeats), cpu_time(dp, args.repeats)
        print(f"{name:<18}{a:>10.4f}{b:>10.4f}{b / a:>7.2f}x")


def expert_steps(
    x: torch.Tensor, y: torch.Tensor, model_cfg: ModelConfig, theta0: dict[str, torch.Tensor], batch: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One plain SGD step and one Opacus DP-SGD step (Poisson batch of expected size ``batch``)."""
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    plain = build_model(model_cfg, n_classes=N_CLASSES, init_state=theta0)
    opt = torch.optim.SGD(plain.parameters(), lr=0.01)
    order = torch.Generator().manual_seed(0)

    def plain_step() -> None:
        idx = torch.randperm(len(x), generator=order)[:batch]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(plain(x[idx]), y[idx]).backward()
        opt.step()

    dp = build_model(model_cfg, n_classes=N_CLASSES, init_state=theta0)
    for m in dp.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dp_model, dp_opt, dp_loader = PrivacyEngine(accountant="rdp").make_private(
            module=dp, optimizer=torch.optim.SGD(dp.parameters(), lr=0.01), data_loader=loader,
            noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=True, grad_sample_mode=GRAD_SAMPLE_MODE,
        )  # fmt: skip
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())

    def dp_step() -> None:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(dp_loader)
            xb, yb = next(batches)
        dp_opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nn.functional.cross_entropy(dp_model(xb), yb).backward()
        dp_opt.step()

    return plain_step, dp_step


if __name__ == "__main__":
    main()
