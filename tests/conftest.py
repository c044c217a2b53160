"""Suite-wide setup: SIGINT is not ignored in the processes the tests start; Ray workers at normal niceness; heavy
files first.

A shell without job control starts a background job (``cmd &``, ``nohup … &``) with SIGINT ignored, every child
inherits that, and a Python started with SIGINT ignored installs no ``KeyboardInterrupt`` handler: the tests that press
Ctrl-C (SIGINT to a command's process group) would then test nothing the user sees. A handler installed here is reset
to the default in every process the tests start (an ignored signal would stay ignored).
"""

import os
import signal

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Ray starts its workers at niceness 15 (Ray's ``worker_niceness``): beside any other CPU-bound process — the other
# pytest-xdist worker — a simulation's actors would get almost no CPU and its round timeouts would fire. The tests
# run Ray's workers at the niceness of everything else (every process the tests start inherits this).
os.environ.setdefault("RAY_worker_niceness", "0")

# The files that run whole simulations, deployments or audits (each 30-160 s): first in the queue, so that the two
# xdist workers (``make test``: ``-n 2 --dist loadfile``) start on them and the quick files fill the gaps at the end.
HEAVY_FIRST = ("test_resume_simulate", "test_audit_pipeline", "test_simulation", "test_deployment",
               "test_deployment_secure", "test_flwr_run_simulation", "test_interrupts", "test_ray_cluster")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy files first, each file's tests kept together and in their order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
