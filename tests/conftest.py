"""Suite-wide setup: SIGINT is not ignored in the processes the tests start; Ray workers at normal niceness; heavy
files first, in that order also under pytest-xdist.

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

# The files that run whole simulations, deployments or audits (each 30-700 s), longest first (measured with
# ``--durations``): first in the queue, so that the two xdist workers (``make test``: ``-n 2 --dist loadfile``) start
# on them and the quick files fill the gaps at the end (longest-processing-time-first list scheduling).
HEAVY_FIRST = ("test_audit_pipeline", "test_simulation", "test_resume_simulate", "test_deployment",
               "test_deployment_secure", "test_ray_cluster", "test_flwr_run_simulation", "test_privacy_mechanisms",
               "test_findings", "test_seeds_cli", "test_federated", "test_sweep", "test_distill", "test_interrupts",
               "test_dp_trust", "test_cli_train")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Keep the order below under ``--dist loadfile``: pytest-xdist otherwise re-sorts the files by their number of
    tests (``--loadscope-reorder``, on by default), which put the one-test files that take minutes
    (``test_deployment``, ``test_interrupts``) last, one worker running them alone at the end."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy files first, each file's tests kept together and in their order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
