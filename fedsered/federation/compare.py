"""A comparison over one federation: synthetic sharing, then each baseline of ``federation.baselines``.

``run_comparison`` is what ``fedsered simulate``'s ServerApp runs over Flower's Grid (and what can run in-process):
every pipeline goes through the same loop, transport, partitions, seed and evaluation, each as its own
counterfactual federation (its own client ledgers). With ``federation.fedavg_until_reached`` FedAvg stops at the
first round within ``UAR_TOLERANCE`` of synthetic sharing's UAR: the round ``comparison`` reads the byte ratio at, so
the ratio is the one all ``fedavg_rounds`` would give (the cap, reported), and FedAvg's UAR is that round's. The
result is a ``ComparisonResult``. With a ``cache`` (``fedsered.federation.checkpoint``) every finished pipeline is
filed at once and a filed one is taken, not run again.
"""

from __future__ import annotations

import time

from fedsered.config import Config, FederatedPipeline
from fedsered.federation.checkpoint import PipelineCache
from fedsered.federation.loop import Progress, ServerView, run_federation
from fedsered.federation.protocol import Transport
from fedsered.federation.results import UAR_TOLERANCE, ComparisonResult, PipelineResult


def run_comparison(
    cfg: Config,
    server: ServerView,
    transport: Transport,
    *,
    seed: int,
    progress: Progress | None = None,
    log: Progress | None = None,
    cache: PipelineCache | None = None,
) -> ComparisonResult:
    """Synthetic sharing and the configured baselines over ``transport``.

    Args:
        cfg: the whole config.
        server: what the server holds.
        transport: carries tasks to the clients.
        seed: the run seed.
        progress: ``(pipeline, round, rounds)`` after every round.
        log: ``(pipeline, done, total)`` after every pipeline (``done`` counts pipelines; a pipeline taken from the
            cache is named ``"<pipeline> (resumed)"``).
        cache: files finished pipelines and hands back those filed before (a resumed run).

    Returns:
        The ``ComparisonResult`` (``facts`` holds mode, method, ipc and the nodes).
    """
    fed = cfg.federation
    names: list[FederatedPipeline] = ["synthetic", *[b for b in fed.baselines if b != "synthetic"]]
    results: dict[str, PipelineResult] = {}
    start = time.perf_counter()
    for i, name in enumerate(names, 1):
        filed = None if cache is None else cache.get(name)
        if filed is None:
            stop = results["synthetic"].uar - UAR_TOLERANCE if name == "fedavg" and fed.fedavg_until_reached else None
            results[name] = run_federation(cfg, server, transport, pipeline=name, seed=seed, progress=progress,
                                           stop_at_uar=stop)  # fmt: skip
            if cache is not None:
                cache.put(name, results[name])
        else:
            results[name] = filed
        if log is not None:
            log(name if filed is None else f"{name} (resumed)", i, len(names))
    main = results.pop("synthetic")
    facts = {"mode": fed.mode, "method": fed.method, "merf_synthesis": fed.merf_synthesis, "ipc": fed.ipc,
             "fedavg_rounds_cap": fed.fedavg_rounds,
             "nodes": {"expected": len(transport.expected()), "connected": len(transport.connected())},
             "n_test": len(server.test), "total_seconds": time.perf_counter() - start}  # fmt: skip
    return ComparisonResult(main=main, baselines=results, facts=facts)
