"""Benchmark: distilling one IoT client on ONE CPU core, and how close the inner step runs to the machine's peak.

Builds a client-sized problem (~60 utterances, 5 emotions, 64×94 log-Mel: one speaker of the embedded corpus through
the real feature pipeline, or random class-structured features when that is unavailable), pins torch to one thread,
then for each model:

1. times ``distil`` with the default method and settings (``DistillConfig()``: mtt) at IPC 10 — seconds per client,
   CPU (the one core's work; judged against the 60 s target) and wall (more when the machine is shared), split into
   experts and synthetic updates;
2. times one unrolled student step forward + backward (the unit MTT's cost is made of: a forward and a
   ``create_graph`` backward on ``batch_syn`` synthetic examples, then the outer backward through both to the
   synthetic features and the step size) and converts it to GFLOP/s with ``fedsered.models.complexity``:
   2 FLOP per MAC × 9 forward-equivalent passes (forward 1, backward 2, double backward 4, backward of the forward 2);
   plain forward (1 pass) and forward + backward (3 passes) rates are printed for reference;
3. compares with a float32 matmul peak measured on the same core (``torch.mm`` of 1024² matrices in a loop).

Run: ``.venv/bin/python benchmarks/distill.py`` (about two minutes; ``--models cnn_iot`` for the small model only).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch
from torch import nn

from fedsered.config import DistillConfig, ModelConfig
from fedsered.data.types import FeatureSet
from fedsered.distill import distil
from fedsered.distill.networks import no_dropout
from fedsered.distill.params import flatten_state, functional_forward, layout_of
from fedsered.models import build_model, complexity, fixed_init_state

N_CLASSES = 5
PASSES_UNROLLED_STEP = 9


def client_problem(seed: int) -> tuple[FeatureSet, str]:
    """One speaker's 60 utterances from the embedded corpus (normalised log-Mel), or random structured features."""
    try:
        from fedsered.config import load_config
        from fedsered.data.dataset import build_dataset

        cfg = load_config(
            None,
            [
                "data.embedded.n_speakers=4", "data.embedded.utterances_per_emotion=12", "features.cache_dir=null",
                "federation.num_clients=3", f"seed={seed}",
            ],
        )  # fmt: skip
        ds = build_dataset(cfg)
        client = ds.client(0)
        if len(client) >= 30 and client.x.shape[1:] == (1, 64, 94):
            return client, f"embedded corpus, client 0 ({len(client)} utterances, one speaker)"
        reason = f"client has {len(client)} utterances of shape {client.x.shape[1:]}"
    except Exception as exc:  # the data layer is optional here: fall back, and say why
        reason = f"{exc.__class__.__name__}: {exc}"
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(N_CLASSES), 12).astype(np.int64)
    x = r.normal(size=(len(y), 1, 64, 94)).astype(np.float32)
    for c in range(N_CLASSES):
        x[y == c, 0, 8 * c : 8 * c + 8] += 1.0
    fs = FeatureSet(x, y, np.array(["spk"] * len(y)), np.array([f"u{i}" for i in range(len(y))]))
    return fs, f"random class-structured features (embedded corpus unavailable: {reason})"


def best_of(fn: Callable[[], None], *, reps: int, warmup: int = 1) -> float:
    """Fastest wall time of ``fn`` over ``reps`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peak_gflops(n: int = 1024, loops: int = 10, reps: int = 5) -> float:
    """float32 ``torch.mm`` rate on this thread (best of ``reps``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run() -> None:
        for _ in range(loops):
            torch.mm(a, b)

    return 2 * n**3 * loops / best_of(run, reps=reps) / 1e9


def time_distil(
    data: FeatureSet, model_cfg: ModelConfig, cfg: DistillConfig, *, ipc: int, seed: int
) -> dict[str, float]:
    """Wall and CPU seconds of one ``distil`` call, split into experts/setup and synthetic updates."""
    stamps: list[float] = []
    theta0 = fixed_init_state(model_cfg, n_classes=N_CLASSES)
    t0, c0 = time.perf_counter(), time.process_time()
    s = distil(
        data, method=cfg.methods[0], ipc=ipc, cfg=cfg, model_cfg=model_cfg, n_classes=N_CLASSES, init_state=theta0,
        seed=seed, progress=lambda i, n: stamps.append(time.perf_counter()),
    )  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_update = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1) if len(stamps) > 1 else float("nan")
    setup = (stamps[0] - t0 - per_update) if stamps else float("nan")
    hist = [h for h in s.meta.get("loss_history", []) if h is not None]
    q = max(1, len(hist) // 5)
    return {
        "wall": wall, "cpu": cpu, "setup": setup, "per_update": per_update, "updates": float(len(stamps)),
        "loss_first": float(np.mean(hist[:q])) if hist else math.nan,
        "loss_last": float(np.mean(hist[-q:])) if hist else math.nan,
    }  # fmt: skip


def unrolled_step_seconds(model_cfg: ModelConfig, *, batch: int, input_shape: tuple[int, ...], reps: int) -> float:
    """Best time of one unrolled student step forward + backward on ``batch`` synthetic examples."""
    model = build_model(no_dropout(model_cfg), n_classes=N_CLASSES)
    layout = layout_of(model)
    start = flatten_state(fixed_init_state(model_cfg, n_classes=N_CLASSES), layout)
    target = start + 0.01 * torch.randn_like(start)
    x = torch.randn(batch, *input_shape, requires_grad=True)
    y = torch.arange(batch) % N_CLASSES
    log_lr = torch.tensor(math.log(0.01), requires_grad=True)

    def step() -> None:
        flat = start.clone().requires_grad_(True)
        ce = nn.functional.cross_entropy(functional_forward(model, layout, flat, x), y)
        (g,) = torch.autograd.grad(ce, flat, create_graph=True)
        end = flat - log_lr.exp() * g
        ((end - target) ** 2).sum().backward()
        x.grad, log_lr.grad = None, None

    return best_of(step, reps=reps, warmup=2)


def plain_pass_seconds(
    model_cfg: ModelConfig, *, batch: int, input_shape: tuple[int, ...], reps: int
) -> tuple[float, float]:
    """Best times of a forward, and of a forward + backward, on ``batch`` examples."""
    model = build_model(no_dropout(model_cfg), n_classes=N_CLASSES)
    x, y = torch.randn(batch, *input_shape), torch.arange(batch) % N_CLASSES

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        nn.functional.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    return best_of(fwd, reps=reps, warmup=2), best_of(fwd_bwd, reps=reps, warmup=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", default="cnn6,cnn_iot", help="comma-separated model names (width 16)")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the micro-benchmarks (best is kept)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cfg = DistillConfig()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, method {cfg.methods[0]}, ipc {args.ipc}")
    t = time.perf_counter()
    data, source = client_problem(args.seed)
    shape = tuple(int(d) for d in data.x.shape[1:])
    print(f"client problem: {source}; x {list(data.x.shape)}, per class {np.bincount(data.y).tolist()}"
          f" (built in {time.perf_counter() - t:.1f}s)")  # fmt: skip
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak (torch.mm 1024², 1 thread): {peak:.1f} GFLOP/s (torch's BLAS; convolutions run on"
          " oneDNN and can exceed it, so above 100% means this yardstick is not the core's roof)")  # fmt: skip
    print(
        f"mtt settings: {cfg.num_experts} experts × {cfg.expert_train_epochs} epochs (batch {cfg.expert_batch}), "
        f"{cfg.mtt_iterations} updates × {cfg.syn_steps} student steps × batch_syn {cfg.batch_syn}"
    )
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        mcfg = ModelConfig.model_validate({"name": name, "width": 16})
        size = complexity(build_model(mcfg, n_classes=N_CLASSES), shape)
        print(f"\n== {name} (width 16): {size['params']:,} params, {size['macs'] / 1e6:.1f} MMAC per example")
        r = time_distil(data, mcfg, cfg, ipc=args.ipc, seed=args.seed)
        verdict = "within" if r["cpu"] <= 60 else "OVER"
        print(f"  distil {cfg.methods[0]} ipc {args.ipc}: {r['cpu']:.1f} s CPU per client ({verdict} the 60 s target), "
              f"{r['wall']:.1f} s wall (more when other processes share the core); "
              f"experts+setup ≈ {r['setup']:.1f} s, {r['per_update']:.3f} s per update × {int(r['updates'])}; "
              f"matching loss {r['loss_first']:.3f} → {r['loss_last']:.3f} (first vs last fifth)")  # fmt: skip
        b = cfg.batch_syn
        step = unrolled_step_seconds(mcfg, batch=b, input_shape=shape, reps=args.reps)
        fwd, fwd_bwd = plain_pass_seconds(mcfg, batch=b, input_shape=shape, reps=args.reps)
        flop = 2 * size["macs"] * b
        g_step = flop * PASSES_UNROLLED_STEP / step / 1e9
        print(
            f"  unrolled student step (batch {b}) fwd+bwd: {step * 1e3:.1f} ms → {g_step:.1f} GFLOP/s "
            f"({100 * g_step / peak:.0f}% of matmul peak; {PASSES_UNROLLED_STEP} passes × {flop / 1e9:.2f} GFLOP)"
        )
        print(f"  reference: forward {fwd * 1e3:.1f} ms = {flop / fwd / 1e9:.1f} GFLOP/s "
              f"({100 * flop / fwd / 1e9 / peak:.0f}%), forward+backward {fwd_bwd * 1e3:.1f} ms = "
              f"{3 * flop / fwd_bwd / 1e9:.1f} GFLOP/s ({100 * 3 * flop / fwd_bwd / 1e9 / peak:.0f}%)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
