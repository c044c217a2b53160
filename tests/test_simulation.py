"""The Flower App on Flower's Ray simulation engine, against the same loop run in-process.

Three Ray runs: faulty clients and a missing node; every pipeline (synthetic sharing by server-side merf synthesis,
and each baseline) compared with the in-process transport for one seed — same global model, UAR and bytes; and a DP
run whose ledgers refuse an over-budget round. A run costs ~30-60 s on the shared 2-core box.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict

from fedsered.cli import main
from fedsered.config import Config, load_config
from fedsered.data.dataset import build_dataset
from fedsered.distill import load_set
from fedsered.federation import QuorumError, payload_bytes, run_pipeline
from simulations.client_app import build_client_app
from simulations.faults import fault_mod
from simulations.grid import GridTransport
from simulations.runner import backend_config, simulate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")

FAULTS = {0: "raise", 1: "nan", 2: "shape", 3: "oversize", 4: "sleep", 5: "privacy"}
EXPECTED = {0: ("failed", "injected fault"), 1: ("rejected", "non-finite"), 2: ("rejected", "shape"),
            3: ("rejected", "above the cap"), 4: ("timeout", "no reply"), 5: ("rejected", "privacy"),
            6: ("ok", None), 7: ("absent", "no node")}  # fmt: skip


def tiny(tmp: Path, *, speakers: int, test: float, clients: int) -> list[str]:
    """A tiny embedded corpus (2 clips per emotion and speaker), 32 mels, a 4-channel IoT net, dm for 3 steps."""
    return [
        f"data.embedded.n_speakers={speakers}", f"data.test_speakers={test}", "data.embedded.utterances_per_emotion=2",
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32",
        f"features.cache_dir={tmp / 'cache'}", "model.name=cnn_iot", "model.width=4", "train.epochs=2",
        f"federation.num_clients={clients}", "federation.ipc=1", "distill.dm_iterations=3", "distill.eval_epochs=3",
    ]  # fmt: skip


def sim_overrides(tmp: Path) -> list[str]:
    """Eight training speakers = eight clients (one test speaker), no baselines, a short round timeout."""
    return [
        *tiny(tmp, speakers=9, test=0.1, clients=8), "federation.baselines=[]", "federation.min_fraction=0.1",
        "federation.node_wait_s=3", "federation.round_timeout_s=45",  # 15 s timed out on a loaded machine
        "federation.max_payload_mb=0.5",
    ]  # fmt: skip


@contextmanager
def one_thread() -> Iterator[None]:
    """The ServerApp runs in this process; Ray actors run torch on one thread, so does the in-process reference."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_sim(cfg: Config, out: Path, **kwargs: Any) -> dict[str, Any]:
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    with one_thread():
        runtime = simulate(cfg, config_path=out / "config.yaml", out=out, **kwargs)
    assert runtime["leftover_pids"] == []
    return runtime


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("sim")
    cfg = load_config(DEFAULT, sim_overrides(tmp))
    out = tmp / "run"
    run_sim(cfg, out, num_supernodes=7, client_app=build_client_app(mods=[fault_mod(FAULTS, sleep_s=60.0)]))
    return cfg, json.loads((out / "results.json").read_text()), out


@pytest.mark.slow
def test_faulty_clients_are_recorded_and_the_round_proceeds(faulty_run: tuple[Config, dict, Path]) -> None:
    _, results, _ = faulty_run
    rows = {c["id"]: c for c in results["clients"]}
    assert list(rows) == [f"client-{k}" for k in range(8)]
    for k, (status, why) in EXPECTED.items():
        row = rows[f"client-{k}"]
        assert row["status"] == status, row
        if why is None:
            assert row["error"] is None and row["bytes_up"] > 0
        else:
            assert why in row["error"] and row["bytes_up"] == 0
    assert results["nodes"] == {"expected": 8, "connected": 7}
    _, _, out = faulty_run
    assert json.loads((out / "client-data" / "manifest.json").read_text())["clients"] == 8  # each reads its own file
    assert results["bytes_up_total"] == rows["client-6"]["bytes_up"]
    assert {"global_uar", "bytes_up_total", "clients", "baselines"} <= results.keys()
    contract = {"id", "status", "bytes_up", "seconds", "peak_rss_mb", "privacy"}
    assert all(contract <= c.keys() for c in results["clients"])
    assert not [p for p in psutil.Process().children(recursive=True) if "ray" in " ".join(p.cmdline()).lower()]


@pytest.mark.slow
def test_one_shot_flower_path_equals_in_process_path(faulty_run: tuple[Config, dict, Path]) -> None:
    cfg, results, out = faulty_run
    data = build_dataset(cfg)
    with one_thread():
        direct = run_pipeline(cfg, data, pipeline="synthetic", seed=cfg.seed, clients=[6])
    shared = load_set(out / "shared" / "synthetic", n_classes=data.n_classes, expected_shape=data.input_shape)
    assert direct.shared is not None
    assert np.array_equal(shared.x, direct.shared.x) and np.array_equal(shared.y, direct.shared.y)
    assert results["global_uar"] == direct.uar and results["confusion"] == direct.confusion
    assert results["bytes_up_total"] == direct.bytes_up_total == payload_bytes(direct.sets["client-6"])


ALL_BASELINES = ("pooled", "raw_sharing", "random_subset", "fedavg", "dp_fedavg")


def equal_overrides(tmp: Path) -> list[str]:
    """Three clients, synthetic sharing by server-side merf synthesis (a statistics task: sums and counts travel) and
    every baseline (FedAvg 2 rounds: the global state goes back to the clients each round)."""
    return [
        *tiny(tmp, speakers=4, test=0.25, clients=3), "federation.method=merf", "federation.merf_synthesis=server",
        "distill.merf_networks=2", "distill.merf_iterations=5",
        "federation.fedavg_rounds=2", f"federation.baselines=[{', '.join(ALL_BASELINES)}]",
        "federation.fedavg_until_reached=false",  # every FedAvg round, as run_pipeline runs them (stop: test_federated)
        "federation.node_wait_s=30", "privacy.target_epsilon=4",
        "privacy.reproducible_noise=true",  # only so that DP-FedAvg can be compared bit for bit across transports
    ]  # fmt: skip


@pytest.fixture(scope="module")
def equal_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("equal")
    cfg = load_config(DEFAULT, equal_overrides(tmp))
    out = tmp / "run"
    run_sim(cfg, out)
    return cfg, json.loads((out / "results.json").read_text()), out


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["synthetic", *ALL_BASELINES])
def test_every_pipeline_is_the_same_through_flower_and_in_process(
    equal_run: tuple[Config, dict, Path], pipeline: str, tmp_path: Path
) -> None:
    cfg, results, out = equal_run
    flower = results if pipeline == "synthetic" else results["baselines"][pipeline]
    data = build_dataset(cfg)
    with one_thread():
        direct = run_pipeline(cfg, data, pipeline=pipeline, seed=cfg.seed, ledger_root=tmp_path)  # type: ignore[arg-type]
    assert flower["global_uar"] == direct.uar and flower["confusion"] == direct.confusion
    assert flower["bytes_up_total"] == direct.bytes_up_total
    assert [r["uar"] for r in flower["rounds"]] == [r.uar for r in direct.rounds]
    assert [(c["id"], c["round"], c["status"], c["bytes_up"]) for c in flower["clients"]] == [
        (c.id, c.round, c.status, c.bytes_up) for c in direct.clients
    ]
    assert [c["privacy"] for c in flower["clients"]] == [c.privacy for c in direct.clients]
    assert direct.model is not None
    if pipeline == "synthetic":  # statistics travelled, not sets: the server synthesised the one set
        assert direct.sets == {} and direct.shared is not None and direct.shared.meta["method"] == "merf-server"
    saved = np.load(out / "models" / f"{pipeline}.npz")
    for name, value in direct.model.state_dict().items():
        assert np.array_equal(saved[name], value.numpy()), name
    if pipeline == "dp_fedavg":  # every round composed in each client's own ledger, the same on both paths
        for cid in ("client-0", "client-1", "client-2"):
            on_flower = json.loads((out / "clients" / cid / "dp_fedavg.json").read_text())
            in_process = json.loads((tmp_path / cid / "dp_fedavg.json").read_text())
            assert len(on_flower["releases"]) == cfg.federation.fedavg_rounds
            assert on_flower["epsilon"] == in_process["epsilon"] == pytest.approx(4.0, rel=0.05)


@pytest.mark.slow
def test_over_budget_round_is_refused_on_both_paths(tmp_path: Path) -> None:
    """A budget of one release: round 2 of multi-round DP sharing is refused by every client before any work, on
    Flower as in-process; the run stops with one clear error and each ledger holds round 1 only."""
    over = [*equal_overrides(tmp_path), "federation.baselines=[]", "privacy.enabled=true", "federation.num_clients=2",
            "data.embedded.n_speakers=3", "data.test_speakers=0.34", "federation.method=dm",
            "federation.merf_synthesis=client", "federation.mode=multi_round", "federation.rounds=2"]  # fmt: skip
    cfg = load_config(DEFAULT, over)
    pattern = r"round 2: only 0 of 2 clients.*client-0: refused \(PrivacyBudgetError"
    with pytest.raises(QuorumError, match=pattern):
        run_sim(cfg, tmp_path / "flower")
    with one_thread(), pytest.raises(QuorumError, match=pattern):
        run_pipeline(cfg, build_dataset(cfg), pipeline="synthetic", seed=cfg.seed, ledger_root=tmp_path / "direct")
    for cid in ("client-0", "client-1"):
        flower = json.loads((tmp_path / "flower" / "clients" / cid / "synthetic.json").read_text())
        direct = json.loads((tmp_path / "direct" / cid / "synthetic.json").read_text())
        assert len(flower["releases"]) == len(direct["releases"]) == 1
        assert flower["epsilon"] == direct["epsilon"]
    # DP-FedAvg: the clients spend their budget in one federation (in process: the same ledgers, written by the same
    # client code, tests/test_federated.py), then a second federation of the same clients on Flower
    # (federation.ledger_dir continues their ledgers) with another seed is refused in round 1, before any local
    # training; with the same seed its tasks would be answered from the clients' filed replies, at no new cost
    fa = load_config(DEFAULT, [*over, "privacy.enabled=false", "federation.mode=one_shot",
                               "federation.baselines=[dp_fedavg]"])  # fmt: skip
    spent = tmp_path / "fa1" / "clients"
    with one_thread():
        run_pipeline(fa, build_dataset(fa), pipeline="dp_fedavg", seed=fa.seed, ledger_root=spent)
    again = fa.model_copy(update={"seed": fa.seed + 1, "federation": fa.federation.model_copy(
        update={"ledger_dir": str(spent)})})  # fmt: skip
    with pytest.raises(QuorumError, match=r"round 1: only 0 of 2 clients.*refused \(PrivacyBudgetError"):
        run_sim(again, tmp_path / "fa2")
    ledger = json.loads((spent / "client-0" / "dp_fedavg.json").read_text())
    assert len(ledger["releases"]) == fa.federation.fedavg_rounds


class FakeGrid:
    """Just enough of a Grid for ``GridTransport.connect`` and ``exchange``: fixed nodes answering
    ``query.partition`` one pull after their message was pushed; the most messages outstanding at once is kept.
    ``silent`` nodes never answer."""

    def __init__(self, n: int, *, silent: tuple[int, ...] = ()) -> None:
        self.ids = list(range(100, 100 + n))
        self.silent = silent
        self.outstanding: dict[str, Message] = {}
        self.max_outstanding = 0
        self.pushed = 0

    def get_node_ids(self) -> list[int]:
        return self.ids

    def push_messages(self, msgs: list[Message]) -> list[str]:
        ids = []
        for m in msgs:
            self.pushed += 1
            m.metadata.__dict__["_message_id"] = f"m{self.pushed}"
            self.outstanding[m.metadata.message_id] = m
            ids.append(m.metadata.message_id)
        self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
        return ids

    def pull_messages(self, ids: set[str]) -> list[Message]:
        replies = []
        for i in list(ids):
            m = self.outstanding.get(i)
            if m is None or m.metadata.dst_node_id in self.silent:
                continue
            del self.outstanding[i]
            content = RecordDict({"task": ConfigRecord({"partition-id": m.metadata.dst_node_id - 100})})
            replies.append(Message(content, reply_to=m))
        return replies


@pytest.fixture
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower builds Messages only inside a run: give this process a run identity (as the engine does)."""
    from flwr.supercore.task_identity import TaskIdentity

    for key in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, key, 1)


@pytest.mark.usefixtures("task_identity")
def test_error_summary_keeps_the_clients_message() -> None:
    from flwr.app import Error

    from simulations.grid import error_summary

    msg = Message(RecordDict(), dst_node_id=7, message_type="train")
    reason = "\x1b[36mray::X.run()\x1b[39m\n  File x\nException ClientAppException occurred. Message: boom 3\n"
    assert error_summary(Message(Error(code=1, reason=reason), reply_to=msg)) == (
        "Exception ClientAppException occurred. Message: boom 3"
    )


@pytest.mark.usefixtures("task_identity")
def test_too_few_nodes_stop_with_one_clear_error(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT, [*sim_overrides(tmp_path), "federation.node_wait_s=0.3", "federation.min_fraction=0.5"])
    transport = GridTransport.connect(FakeGrid(4), cfg)  # type: ignore[arg-type]
    assert transport.connected() == ["client-0", "client-1", "client-2", "client-3"]
    assert transport.expected() == [f"client-{k}" for k in range(8)]
    with pytest.raises(QuorumError, match=r"only 3 of 8 expected nodes connected within federation.node_wait_s=0.3"):
        GridTransport.connect(FakeGrid(3), cfg)  # type: ignore[arg-type]


@pytest.mark.usefixtures("task_identity")
def test_exchange_keeps_at_most_in_flight_messages_outstanding() -> None:
    from simulations.grid import exchange

    grid = FakeGrid(20)
    msgs = [Message(RecordDict(), dst_node_id=n, message_type="query.partition") for n in grid.ids]
    replies = list(exchange(grid, msgs, timeout=10, in_flight=3, poll=0.0))  # type: ignore[arg-type]
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(f"m{k}" for k in range(1, 21))
    assert grid.max_outstanding == 3
    grid = FakeGrid(5)
    list(exchange(grid, msgs[:5], timeout=10, in_flight=None, poll=0.0))  # type: ignore[arg-type]
    assert grid.max_outstanding == 5  # a deployment: every node at once
    # a silent node holds its slot until the timeout; the others are still served, one slot fewer
    grid = FakeGrid(6, silent=(100,))
    msgs = [Message(RecordDict(), dst_node_id=n, message_type="query.partition") for n in grid.ids]
    t0 = time.monotonic()
    replies = list(exchange(grid, msgs, timeout=0.5, in_flight=2, poll=0.01))  # type: ignore[arg-type]
    assert len(replies) == 5 and 0.5 <= time.monotonic() - t0 < 3.0


def test_backend_config_and_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(DEFAULT, ["federation.cpus_per_client=0.5", "federation.object_store_mb=300"])
    bc = backend_config(cfg)
    assert bc["client_resources"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert bc["init_args"] == {"object_store_memory": 300 * 2**20, "num_cpus": 2}
    joined = backend_config(load_config(DEFAULT, ["federation.ray_address=127.0.0.1:6379"]))
    assert joined["init_args"] == {"address": "127.0.0.1:6379"}
    assert main(["simulate", DEFAULT, "--out", str(tmp_path), "--set", "federation.baselines=[fedprox]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "federation.baselines" in err[0]


def test_progress_lines_pass_and_flowers_info_is_held_back() -> None:
    import logging

    from simulations.runner import progress_only
    from simulations.server_app import PROGRESS

    def record(level: int, **extra: bool) -> logging.LogRecord:
        r = logging.LogRecord("flwr", level, __file__, 1, "m", None, None)
        r.__dict__.update(extra)
        return r

    assert progress_only(record(logging.INFO, **PROGRESS))
    assert not progress_only(record(logging.INFO))  # Flower's own INFO line
    assert progress_only(record(logging.WARNING)) and progress_only(record(logging.ERROR))
