"""What a client pays under server-side merf synthesis (``federation.merf_synthesis: server``): one release.

Run: ``.venv/bin/python benchmarks/merf_release.py [--config configs/dp.yaml] [--clients 3]``. For the first
``--clients`` clients of the config's federation, one torch thread: CPU and wall seconds of the client's whole task
(``fedsered.federation.client.statistics_client``: K embedding passes over its data, one Gaussian step) and the bytes
it uploads, against the bytes of the set the same client would upload under DP dm at the config's ``ipc``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "dp.yaml")
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from fedsered.config import load_config
    from fedsered.data.dataset import build_dataset
    from fedsered.federation.client import client_seed, statistics_client, statistics_wire
    from fedsered.federation.payload import npy_bytes
    from fedsered.models import fixed_init_state

    cfg = load_config(args.config)
    data = build_dataset(cfg)
    theta0 = dict(fixed_init_state(cfg.model, n_classes=data.n_classes))
    set_bytes = 4 * cfg.federation.ipc * data.n_classes * int(torch.tensor(data.input_shape).prod())
    for k in range(min(args.clients, len(data.clients))):
        cid, d = f"client-{k}", data.client(k)
        start, cpu = time.perf_counter(), time.process_time()
        s = statistics_client(d, cfg=cfg, client_id=cid, n_classes=data.n_classes, init_state=theta0,
                              run_seed=cfg.seed, seed=client_seed(cfg.seed, cid, 1))  # fmt: skip
        cpu_s, wall = time.process_time() - cpu, time.perf_counter() - start
        arrays, meta = statistics_wire(s, client_id=cid, merf_networks=cfg.distill.merf_networks)
        up = sum(npy_bytes(a) for a in arrays.values()) + len(meta.encode())
        sigma = s.privacy["releases"][0]["noise_multiplier"] if s.privacy else 0.0
        print(f"{cid}: {len(d)} utterances, {cpu_s:.2f} CPU s, {wall:.2f} s wall, uploads {up:,} bytes "
              f"(sums {list(s.sums.shape)}, sigma {sigma:.3f}); a float32 set of ipc {cfg.federation.ipc}: "
              f"{set_bytes:,} bytes of x ({set_bytes / up:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
