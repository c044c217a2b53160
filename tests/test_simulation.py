"""The Flower App on Flower's Ray simulation engine: faulty clients, a missing node, and the same global model as
the direct path for one seed. One Ray run covers them all (a run costs ~30-60 s on the shared 2-core box)."""

from __future__ import annotations

import json
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
from simulations.rounds import discover
from simulations.runner import backend_config, simulate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")

FAULTS = {0: "raise", 1: "nan", 2: "shape", 3: "oversize", 4: "sleep"}
EXPECTED = {0: ("failed", "injected fault"), 1: ("rejected", "non-finite"), 2: ("rejected", "shape"),
            3: ("rejected", "above the cap"), 4: ("timeout", "no reply"), 5: ("ok", None),
            6: ("absent", "no node")}  # fmt: skip


def sim_overrides(tmp: Path) -> list[str]:
    """Seven training speakers = seven clients (one test speaker), tiny features and net, no baselines."""
    return [
        "data.embedded.n_speakers=8", "data.test_speakers=0.125", "data.embedded.utterances_per_emotion=2",
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32",
        f"features.cache_dir={tmp / 'cache'}", "model.name=cnn_iot", "model.width=4", "train.epochs=2",
        "federation.num_clients=7", "federation.ipc=1", "distill.dm_iterations=3", "distill.eval_epochs=3",
        "federation.baselines=[]", "federation.min_fraction=0.1", "federation.node_wait_s=3",
        "federation.round_timeout_s=45", "federation.max_payload_mb=0.5",  # 15 s timed out on a loaded machine
    ]  # fmt: skip


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, Any], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("sim")
    cfg = load_config(DEFAULT, sim_overrides(tmp))
    out = tmp / "run"
    out.mkdir()
    (out / "config.yaml").write_text(cfg.to_yaml())
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the ServerApp runs in this process; Ray actors run torch on one thread too
    try:
        runtime = simulate(
            cfg, config_path=out / "config.yaml", out=out, num_supernodes=6,  # partition 6 never connects
            client_app=build_client_app(mods=[fault_mod(FAULTS, sleep_s=60.0)]),
        )  # fmt: skip
        results = json.loads((out / "results.json").read_text())
        return cfg, results, runtime, out
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_faulty_clients_are_recorded_and_the_round_proceeds(faulty_run: tuple[Config, dict, dict, Path]) -> None:
    _, results, runtime, _ = faulty_run
    rows = {c["id"]: c for c in results["clients"]}
    assert list(rows) == [f"client-{k}" for k in range(7)]
    for k, (status, why) in EXPECTED.items():
        row = rows[f"client-{k}"]
        assert row["status"] == status, row
        if why is None:
            assert row["error"] is None and row["bytes_up"] > 0
        else:
            assert why in row["error"] and row["bytes_up"] == 0
    assert results["nodes"] == {"expected": 7, "connected": 6}
    assert results["bytes_up_total"] == rows["client-5"]["bytes_up"]
    assert {"global_uar", "bytes_up_total", "clients", "baselines"} <= results.keys()
    contract = {"id", "status", "bytes_up", "seconds", "peak_rss_mb", "privacy"}
    assert all(contract <= c.keys() for c in results["clients"])
    assert runtime["leftover_pids"] == []
    assert not [p for p in psutil.Process().children(recursive=True) if "ray" in " ".join(p.cmdline()).lower()]


@pytest.mark.slow
def test_flower_path_equals_direct_path_for_one_seed(faulty_run: tuple[Config, dict, dict, Path]) -> None:
    cfg, results, _, out = faulty_run
    data = build_dataset(cfg)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = run_pipeline(cfg, data, pipeline="synthetic", seed=cfg.seed, clients=[5])
    finally:
        torch.set_num_threads(before)
    shared = load_set(out / "shared" / "synthetic", n_classes=data.n_classes, expected_shape=data.input_shape)
    assert np.array_equal(shared.x, direct["shared"].x) and np.array_equal(shared.y, direct["shared"].y)
    assert results["global_uar"] == direct["global_uar"] and results["confusion"] == direct["confusion"]
    assert results["bytes_up_total"] == direct["bytes_up_total"] == payload_bytes(direct["sets"]["client-5"])


class FakeGrid:
    """Just enough of a Grid for ``discover``: fixed nodes answering ``query.partition`` with their index."""

    def __init__(self, n: int) -> None:
        self.ids = list(range(100, 100 + n))

    def get_node_ids(self) -> list[int]:
        return self.ids

    def send_and_receive(self, msgs: list[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for m in msgs:
            content = RecordDict({"config": ConfigRecord({"partition-id": m.metadata.dst_node_id - 100})})
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

    from simulations.rounds import error_summary

    msg = Message(RecordDict(), dst_node_id=7, message_type="train.share")
    reason = "\x1b[36mray::X.run()\x1b[39m\n  File x\nException ClientAppException occurred. Message: boom 3\n"
    assert error_summary(Message(Error(code=1, reason=reason), reply_to=msg)) == (
        "Exception ClientAppException occurred. Message: boom 3"
    )


@pytest.mark.usefixtures("task_identity")
def test_too_few_nodes_stop_with_one_clear_error(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT, [*sim_overrides(tmp_path), "federation.node_wait_s=0.3", "federation.min_fraction=0.5"])
    fed = discover(FakeGrid(4), cfg)  # type: ignore[arg-type]
    assert sorted(fed.nodes.values()) == [0, 1, 2, 3] and [r.id for r in fed.absent(1)] == ["client-4", "client-5",
                                                                                           "client-6"]  # fmt: skip
    with pytest.raises(QuorumError, match=r"only 3 of 7 expected nodes connected within federation.node_wait_s=0.3"):
        discover(FakeGrid(3), cfg)  # type: ignore[arg-type]


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
