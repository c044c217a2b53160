"""Why trajectory matching fits noise with the client defaults: how far apart the expert trajectories are, and how the
matching loss and the set move.

On the validation split of ``benchmarks/distill_validation.py`` (the last ``--val-speakers`` training speakers held
out) it trains the experts of ``distill`` from θ₀ and prints, per epoch, how far expert 0 moved and how far it is from
expert 1 (same θ₀, another data order); the normalised matching loss of the real-example start set at several student
step sizes (mini-batch and full-batch unrolls); then distils once (``distil_mtt``) and prints how far the set moved
(rms, in units of the feature std) against how much its matching loss fell.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mtt_diagnostics.py --config configs/distill_table.yaml --set
expert_lr=0.05 expert_batch=16 syn_steps=8 batch_syn=10 lr_student=0.05 lr_img=0.03 mtt_iterations=50``
"""

from __future__ import annotations

import argparse

import numpy as np
import yaml
from distill_validation import validation_start  # the same validation split and start set

from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.distill.experts import train_experts
from fedsered.distill.init import LearnTask
from fedsered.distill.mtt import distil_mtt, mtt_matching_loss
from fedsered.models.build import fixed_init_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/distill_table.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="distill overrides KEY=VALUE")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--val-speakers", type=int, default=2)
    args = parser.parse_args()

    cfg = load_config(args.config)
    d = cfg.distill.model_copy(update={k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    data = build_dataset(cfg)
    train, _, x0, y0 = validation_start(data, val_speakers=args.val_speakers, ipc=args.ipc, init_noise=d.init_noise,
                                        seed=0)  # fmt: skip
    n = data.n_classes
    theta0 = fixed_init_state(cfg.model, n_classes=n)
    experts = train_experts(train.x, train.y, model_cfg=cfg.model, n_classes=n, init_state=theta0,
                            num_experts=max(2, d.num_experts), epochs=d.expert_train_epochs, lr=d.expert_lr,
                            batch_size=d.expert_batch, seed=0, momentum=d.expert_momentum)  # fmt: skip
    a, b = experts[0].params, experts[1].params
    for t in range(d.expert_train_epochs):
        print(f"epoch {t + 1}: expert 0 moved {float((a[t + 1] - a[t]).norm()):.2f}, "
              f"distance to expert 1 {float((a[t + 1] - b[t + 1]).norm()):.2f}")  # fmt: skip

    def loss(x: np.ndarray, y: np.ndarray, lr: float, **update: int) -> float:
        local = d.model_copy(update=update)
        return mtt_matching_loss(x, y, experts, model_cfg=cfg.model, n_classes=n, lr=lr, cfg=local)

    for lr in (0.01, 0.05, 0.2):
        print(f"start set, student step {lr}: loss {loss(x0, y0, lr):.3f} (batches of {d.batch_syn}), "
              f"{loss(x0, y0, lr, batch_syn=len(x0)):.3f} (full batch)", flush=True)  # fmt: skip
    task = LearnTask(train.x, train.y, x0, y0, model_cfg=cfg.model, n_classes=n, init_state=theta0, seed=0)
    xs, ys, meta = distil_mtt(task, d)
    lr_end = meta["lr_student"]
    moved = float(np.sqrt(((xs - x0) ** 2).mean()) / train.x.std())
    print(f"distilled: set moved {moved:.2f} (rms / feature std); matching loss at the learned step {lr_end:.3f}: "
          f"{loss(x0, y0, lr_end):.3f} -> {loss(xs, ys, lr_end):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
