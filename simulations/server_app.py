"""The Flower ``ServerApp``: one ``@app.main()`` running the comparison over the Grid.

``main`` reads the run config (``config-path``, optional ``out-dir``) and calls ``serve``: build the server's view
(held-out test speakers; the clients' union for the pooled oracle), connect to the nodes (``GridTransport``), run
synthetic sharing and the baselines through the one federation loop (``fedsered.federation.run_comparison``), filing
each finished pipeline in the run folder (its aggregated set ``shared/<pipeline>``, its global model
``models/<pipeline>.npz``, its result ``pipelines/<pipeline>.json``; ``fedsered.federation.checkpoint``) — a resumed
run takes the filed ones — and write ``results.json``. No round logic lives here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsered.config import Config, load_config
from fedsered.data.dataset import build_dataset
from fedsered.federation import ComparisonResult, client_id, run_comparison
from fedsered.federation.checkpoint import PipelineCache, run_fingerprint
from fedsered.federation.pipeline import server_view
from fedsered.io import atomic_write_json
from fedsered.privacy.client import check_overrides
from simulations.grid import GridTransport

LOG = logging.getLogger("flwr")
"""Progress lines go through Flower's logger (its console handler, its log stream under ``flwr run --stream``),
marked ``PROGRESS`` so that ``fedsered simulate`` shows them while it holds Flower's own INFO lines back."""

PROGRESS = {"fedsered_progress": True}
"""``extra`` of a progress record (``simulations.runner.progress_only`` lets these through)."""

APP_ROOT = Path(__file__).resolve().parents[1]
"""The Flower App's root (the project folder, or the unpacked bundle on a SuperLink)."""


def serve(grid: Grid, cfg: Config, *, out: Path, in_flight: int | None = None) -> ComparisonResult:
    """Run synthetic sharing and the configured baselines; write ``results.json`` and the shared sets.

    ``in_flight``: most task messages outstanding at once (``simulations.grid.exchange``; ``None``: all at once)."""
    start, cpu = time.perf_counter(), time.thread_time()
    data = build_dataset(cfg)
    check_overrides(cfg.privacy, client_ids=[client_id(k) for k in range(cfg.federation.num_clients)])
    t_data, data_cpu = time.perf_counter(), time.thread_time() - cpu
    transport = GridTransport.connect(grid, cfg, in_flight=in_flight)
    LOG.info("%d of %d nodes connected", len(transport.connected()), cfg.federation.num_clients, extra=PROGRESS)
    # the clients' data for the pooled oracle: in simulation the server can build it; a deployed server
    # (data.test_speakers: all) holds only its test speakers, and pooled is then refused
    parts = {cid: data.client(int(cid.rsplit("-", 1)[1])) for cid in transport.connected()} if data.clients else {}
    t = time.perf_counter()

    def round_done(pipeline: str, r: int, total: int) -> None:
        LOG.info("%s: round %d of %d done (%.0f s elapsed)", pipeline, r, total, time.perf_counter() - t,
                 extra=PROGRESS)  # fmt: skip

    def pipeline_done(pipeline: str, done: int, total: int) -> None:
        LOG.info("pipeline %d of %d done: %s (%.0f s elapsed)", done, total, pipeline, time.perf_counter() - t,
                 extra=PROGRESS)  # fmt: skip

    cache = PipelineCache(out, run_fingerprint(cfg))
    result = run_comparison(cfg, server_view(data, parts), transport, seed=cfg.seed, progress=round_done,
                            log=pipeline_done, cache=cache)  # fmt: skip
    result.facts.update({"emotions": list(data.emotions), "total_seconds": time.perf_counter() - start,
                         "phases": {"data_seconds": t_data - start, "data_cpu_seconds": data_cpu,
                                    "discover_seconds": t - t_data}})  # fmt: skip
    atomic_write_json(out / "results.json", result.to_json())
    return result


def in_flight_of(context: Context) -> int | None:
    """The run config's ``in-flight`` (a positive integer: ``fedsered simulate`` sets it from its Ray actors), else
    ``None`` (a deployment: every node gets its task at once)."""
    value = context.run_config.get("in-flight")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def config_of(context: Context) -> tuple[Config, Path]:
    """The run's config and output folder from the run config (``config-path``, optional ``out-dir``)."""
    rc = context.run_config
    path = Path(str(rc.get("config-path", "configs/default.yaml")))
    if not path.is_absolute() and not path.exists():
        path = APP_ROOT / path  # under a SuperLink the app runs from its installed bundle, not the project folder
    cfg = load_config(path)
    return cfg, Path(str(rc.get("out-dir") or cfg.output.dir))


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, out = config_of(context)
    serve(grid, cfg, out=out, in_flight=in_flight_of(context))
