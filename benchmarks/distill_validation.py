"""Tune a learned distillation method on validation speakers, never on the test speakers.

Splits the training speakers of a config into train (all but the last ``--val-speakers``) and validation, draws the
same real-example start as ``distil`` (IPC ``--ipc``, role ``distil/init``), and prints the validation UAR of a model
trained from θ₀ on that start, then of the set each variant learns from it (``--variants``: a JSON object of name →
``distill`` overrides, with an optional ``"method"``: ``mtt`` (default), ``dm``, ``gm`` or ``merf``), its CPU seconds
and its matching loss at the first and last updates. A variant helps only if it beats the start it was learned from.

Every UAR is printed under two training recipes: the table's (``distill.eval_*``: Adam) and, for mtt, trajectory
matching's own (Cazenavette et al. evaluate with SGD at the learned student step size): SGD with momentum 0.9 at
``(1 − 0.9) × lr_student`` — the same effective step as the student's plain SGD — where the start set is trained
with the same recipe at the same step size, so the pair differs only in the data.

Run: ``.venv/bin/python benchmarks/distill_validation.py --variants '{"default": {}, "lr01": {"lr_img": 0.01}}'``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fedsered.config import load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.data.types import FeatureSet
from fedsered.distill.dm import distil_dm
from fedsered.distill.evaluate import eval_train_config
from fedsered.distill.gm import distil_gm
from fedsered.distill.init import LearnTask, initial_synthetic, plan_classes
from fedsered.distill.merf import distil_merf
from fedsered.distill.mtt import distil_mtt
from fedsered.models.build import fixed_init_state
from fedsered.seeding import rng
from fedsered.training.train import evaluate, train_model

LEARNED = {"mtt": distil_mtt, "dm": distil_dm, "gm": distil_gm, "merf": distil_merf}


def validation_start(
    data: Dataset, *, val_speakers: int, ipc: int, init_noise: float, seed: int
) -> tuple[FeatureSet, FeatureSet, np.ndarray, np.ndarray]:
    """``(train, validation, x0, y0)``: the last ``val_speakers`` training speakers held out for validation, and the
    real-example start set ``distil`` would draw from the rest (IPC ``ipc``, role ``distil/init`` of ``seed``)."""
    is_val = np.isin(data.train.speaker, np.unique(data.train.speaker)[-val_speakers:])
    train, val = data.train.subset(np.flatnonzero(~is_val)), data.train.subset(np.flatnonzero(is_val))
    plan = plan_classes(train.y, n_classes=data.n_classes, ipc=ipc, cap_at_available=False)
    x0, y0 = initial_synthetic(train.x, train.y, plan=plan, mode="real", init_noise=init_noise,
                               rng=rng(seed, "distil/init"))  # fmt: skip
    return train, val, x0, y0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--variants", default='{"default": {}}')
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--val-speakers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = load_config(args.config)
    data = build_dataset(cfg)
    train, val, x0, y0 = validation_start(data, val_speakers=args.val_speakers, ipc=args.ipc,
                                          init_noise=cfg.distill.init_noise, seed=args.seed)  # fmt: skip
    n = data.n_classes
    theta0 = fixed_init_state(cfg.model, n_classes=n)
    eval_cfg = eval_train_config(cfg.distill, cfg.train)

    def score(x: np.ndarray, y: np.ndarray, sgd_lr: float | None = None) -> float:
        train_cfg = eval_cfg if sgd_lr is None else eval_cfg.model_copy(update={"optimizer": "sgd", "lr": sgd_lr})
        model = train_model(x, y, model_cfg=cfg.model, train_cfg=train_cfg, n_classes=n, init_state=theta0, seed=7)
        return float(evaluate(model, val.x, val.y, n_classes=n)["uar"])

    print(f"train {len(train)} / validation {len(val)} utterances; start set UAR {score(x0, y0):.3f}", flush=True)
    for name, update in json.loads(args.variants).items():
        method = update.pop("method", "mtt")
        task = LearnTask(train.x, train.y, x0, y0, model_cfg=cfg.model, n_classes=n, init_state=theta0,
                         seed=args.seed)  # fmt: skip
        start = time.process_time()
        xs, ys, meta = LEARNED[method](task, cfg.distill.model_copy(update=update))
        cpu = time.process_time() - start
        losses = [v for v in meta["loss_history"] if v is not None]
        line = f"{name} ({method}): UAR {score(xs, ys):.3f}"
        if "lr_student" in meta:  # SGD momentum 0.9: effective step lr / (1 - 0.9) = the learned student step
            sgd_lr = 0.1 * meta["lr_student"]
            line += f" [SGD recipe: {score(xs, ys, sgd_lr):.3f}, start set {score(x0, y0, sgd_lr):.3f}]"
        print(f"{line}, {cpu:.0f} CPU s, loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f}", flush=True)


if __name__ == "__main__":
    main()
