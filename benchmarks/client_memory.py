"""Benchmark: what one simulated client process holds, stage by stage (the breakdown behind an actor's RSS).

A Ray actor of ``fedsered simulate`` is a Ray worker that imported the ClientApp and then served tasks. This script
replays that in a plain process, printing resident memory (RSS), private memory (USS) and the peak RSS after each
stage: Python, ``ray`` (what every Ray worker imports), ``torch``, Flower's client API, fedsered's ClientApp,
loading one client's partition file, and one share task (``run_task``: distillation with the config's method) — twice,
for two clients, as an actor serves many. The config is ``configs/default.yaml`` with the scaling benchmark's corpus
(24 speakers, iid over 64 clients); ``--light`` uses that benchmark's light client work instead. Not measured here:
the memory Ray's core worker allocates once the process is a connected worker (threads, buffers) — the difference
between an actor's RSS in ``benchmarks/scaling.py`` and this script's last line.

Run: ``.venv/bin/python benchmarks/client_memory.py`` (``--light``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def line(stage: str) -> None:
    mem = psutil.Process().memory_full_info()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{stage:44s} RSS {mem.rss / 2**20:6.0f} MB  USS {mem.uss / 2**20:6.0f} MB  peak RSS {peak:6.0f} MB",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--light", action="store_true", help="the scaling benchmark's light client work")
    args = parser.parse_args()
    line("python")
    import ray  # noqa: F401  (every Ray worker imports it)

    line("+ ray")
    import torch

    torch.set_num_threads(1)  # as an actor with 1 CPU
    line("+ torch")
    import flwr.app
    import flwr.clientapp  # noqa: F401

    line("+ flwr client API")
    import simulations.client_app  # noqa: F401

    line("+ fedsered ClientApp (its whole import graph)")
    from scaling_settings import COMMON, WORK  # this folder is sys.path[0] when run as a script

    from fedsered.config import load_config
    from fedsered.data.client_files import read_client_file
    from fedsered.federation.client import LocalClient, run_task
    from fedsered.federation.protocol import Task
    from fedsered.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / "configs" / "default.yaml", [
            *COMMON, *WORK["light" if args.light else "default"], "federation.num_clients=64",
            f"features.cache_dir={ROOT / 'runs' / 'bench-scaling' / 'cache'}",
        ])  # fmt: skip
        # the experimenter's side, in another process (an actor never builds the corpus)
        import subprocess

        code = ("import sys; from pathlib import Path; from fedsered.config import config_from_text as c; "
                "from fedsered.data.client_files import write_client_files as w; "
                "w(c(sys.stdin.read(), source='stdin'), Path(sys.argv[1]))")  # fmt: skip
        subprocess.run([sys.executable, "-c", code, tmp], input=cfg.to_yaml(), text=True, check=True, cwd=ROOT)
        state = {k: v.detach().numpy() for k, v in build_model(cfg.model, n_classes=5).state_dict().items()}
        for k in (0, 1):
            data = read_client_file(Path(tmp), k, cfg=cfg)
            line(f"+ client-{k}'s partition ({len(data)} utterances)")
            start = time.process_time()
            task = Task(pipeline="synthetic", kind="share", round=0, seed=0, state=state, cfg=cfg)
            reply = run_task(task, LocalClient(f"client-{k}", data, len(cfg.data.emotions)))
            assert reply.error is None, reply.error
            line(f"+ its share task ({cfg.federation.method}, {time.process_time() - start:.1f} CPU s)")


if __name__ == "__main__":
    main()
