"""fedsered.federation: the plain client/server functions and the direct path (no Flower, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsered.config import Config, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.distill.synthetic_set import SyntheticSet, make_meta
from fedsered.errors import ConfigError, PayloadError
from fedsered.federation import aggregate, check_quorum, decode_set, fedavg_average, payload_bytes, run_pipeline
from fedsered.federation.aggregate import rebalance
from fedsered.federation.payload import npy_bytes, state_bytes
from fedsered.federation.records import ClientRecord, QuorumError, bytes_to_reach, required_replies

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")


def tiny_overrides(tmp: Path) -> list[str]:
    """Four training speakers in two clients, one test speaker, 32 mels × 38 frames, a 4-channel IoT net."""
    return [
        "data.embedded.n_speakers=5", "data.embedded.utterances_per_emotion=2", "data.embedded.duration_s=[1.0, 1.2]",
        "data.test_speakers=0.25",  # one held-out speaker (the default holds out 40 %)
        "features.segment_s=1.2", "features.n_mels=32", f"features.cache_dir={tmp / 'cache'}",
        "model.name=cnn_iot", "model.width=4", "train.epochs=2", "federation.num_clients=2", "federation.ipc=1",
        "distill.dm_iterations=3", "distill.eval_epochs=3", "federation.fedavg_rounds=2",
        "federation.server_threads=1",  # tiny models: a second thread is pure overhead beside pytest's other worker
    ]  # fmt: skip


_THREADS: list[int] = []


def setup_module() -> None:
    """Tiny problems run on one torch thread (threads only add overhead on a shared 2-core box)."""
    _THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1)


def teardown_module() -> None:
    torch.set_num_threads(_THREADS.pop())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Dataset]:
    cfg = load_config(DEFAULT, tiny_overrides(tmp_path_factory.mktemp("fed")))
    return cfg, build_dataset(cfg)


def _set(labels: list[int], *, cid: str, n_classes: int = 3, shape: tuple[int, ...] = (1, 4, 5)) -> SyntheticSet:
    y = np.array(labels, dtype=np.int64)
    x = (np.arange(len(y) * int(np.prod(shape)), dtype=np.float32).reshape(len(y), *shape) + 1000 * len(cid))
    meta = make_meta(method="dm", ipc=1, n_classes=n_classes, features={}, init="theta0:0", client_id=cid)
    return SyntheticSet(x=x, y=y, meta=meta)


def test_aggregate_union_per_class_and_rebalance(tiny: tuple[Config, Dataset]) -> None:
    cfg, _ = tiny
    a, b = _set([0, 1, 1], cid="client-0"), _set([1, 0, 1, 1], cid="client-1")
    plain = aggregate([a, b], cfg=cfg.model_copy(update={"federation": cfg.federation.model_copy(
        update={"rebalance": False})}), n_classes=3, seed=0)  # fmt: skip
    # grouped by class, clients in order within a class, every row kept exactly once
    assert plain.y.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert np.array_equal(plain.x[0], a.x[0]) and np.array_equal(plain.x[1], b.x[1])
    assert np.array_equal(plain.x[2:4], a.x[1:3]) and np.array_equal(plain.x[4], b.x[0])
    assert plain.meta["missing_classes"] == [2] and plain.meta["clients"] == ["client-0", "client-1"]
    assert plain.meta["rebalanced_rows"] is None and plain.meta["privacy"] is None

    bal = aggregate([a, b], cfg=cfg, n_classes=3, seed=0)
    assert np.bincount(bal.y).tolist() == [5, 5]
    assert bal.meta["rebalanced_rows"] == [3, 0]
    # every original row is present, the added rows are copies of class-0 rows
    rows = {r.tobytes() for r in bal.x}
    assert {r.tobytes() for r in plain.x} == rows
    again = aggregate([a, b], cfg=cfg, n_classes=3, seed=0)
    assert np.array_equal(again.x, bal.x)


def test_rebalance_whole_copies_then_a_seeded_draw() -> None:
    x = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1)
    y = np.array([0, 0, 0, 0, 0, 1, 1], dtype=np.int64)
    xb, yb, added = rebalance(x, y, gen=np.random.default_rng(1))
    assert added == [0, 3] and np.bincount(yb).tolist() == [5, 5]
    ones = sorted(xb[yb == 1].ravel().tolist())
    assert ones.count(5.0) >= 2 and ones.count(6.0) >= 2 and set(ones) == {5.0, 6.0}


def _decode(s: SyntheticSet, *, cap: int = 10**6, meta_text: str | None = None) -> SyntheticSet:
    from fedsered.federation.payload import meta_json

    return decode_set(
        {"x": s.x, "y": s.y}, meta_text if meta_text is not None else meta_json(s), to_numpy=np.asarray,
        nbytes=npy_bytes, n_classes=3, expected_shape=(1, 4, 5), max_bytes=cap, source="client-7",
    )  # fmt: skip


def test_decode_set_rejects_each_defect_with_the_client_named() -> None:
    good = _set([0, 1, 2], cid="client-7")
    assert np.array_equal(_decode(good).x, good.x)
    nan = SyntheticSet(x=good.x.copy(), y=good.y, meta=good.meta)
    nan.x[1, 0, 2, 3] = np.nan
    with pytest.raises(PayloadError, match=r"client-7: x holds 1 non-finite"):
        _decode(nan)
    with pytest.raises(PayloadError, match=r"client-7: examples have shape \[1, 4, 6\], expected \[1, 4, 5\]"):
        _decode(_set([0], cid="client-7", shape=(1, 4, 6)))
    with pytest.raises(PayloadError, match=r"labels outside \[0, 3\)"):
        _decode(_set([0, 3], cid="client-7"))
    with pytest.raises(PayloadError, match="x must be float32"):
        _decode(SyntheticSet(x=good.x.astype(np.float64), y=good.y, meta=good.meta))
    with pytest.raises(PayloadError, match="not valid JSON"):
        _decode(good, meta_text="{oops")
    with pytest.raises(PayloadError, match="metadata lacks required keys"):
        _decode(good, meta_text='{"method": "dm"}')

    def never(_: object) -> np.ndarray:
        raise AssertionError("an oversized payload must be refused before it is decoded")

    with pytest.raises(PayloadError, match=r"client-7: payload of \d+ bytes is above the cap of 100 bytes"):
        decode_set({"x": good.x, "y": good.y}, "{}", to_numpy=never, nbytes=npy_bytes, n_classes=3,
                   expected_shape=(1, 4, 5), max_bytes=100, source="client-7")  # fmt: skip
    with pytest.raises(PayloadError, match=r"exactly the arrays \['x', 'y'\]"):
        decode_set({"x": good.x}, "{}", to_numpy=np.asarray, nbytes=npy_bytes, n_classes=3, expected_shape=(1, 4, 5),
                   max_bytes=10**6, source="client-7")  # fmt: skip


def test_payload_bytes_are_what_flower_puts_on_the_wire() -> None:
    from flwr.app import Array

    s = _set([0, 1, 2, 2], cid="client-0")
    from fedsered.federation.payload import meta_json

    wire = len(Array(s.x).data) + len(Array(s.y).data) + len(meta_json(s).encode())
    assert payload_bytes(s) == wire
    state = {"w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    assert state_bytes(state) == sum(len(Array(v).data) for v in state.values())


def test_quorum_and_fedavg_average_and_bytes_to_reach() -> None:
    recs = [ClientRecord(id=f"client-{k}", status=s) for k, s in enumerate(["ok", "ok", "failed", "timeout"])]
    assert required_replies(4, 0.5) == 2 and required_replies(8, 0.75) == 6 and required_replies(3, 0.01) == 1
    check_quorum(recs, expected=4, min_fraction=0.5, round_=1)
    with pytest.raises(QuorumError, match=r"round 2: only 2 of 4 clients.*client-2: failed"):
        check_quorum(recs, expected=4, min_fraction=0.75, round_=2)
    with pytest.raises(ValueError, match="status"):
        ClientRecord(id="c", status="fine")
    avg = fedavg_average([{"w": np.array([0.0, 2.0], np.float32)}, {"w": np.array([4.0, 2.0], np.float32)}], [1, 3])
    assert avg["w"].dtype == np.float32 and avg["w"].tolist() == [3.0, 2.0]
    assert bytes_to_reach([0.3, 0.5, 0.6], [10, 10, 10], 0.5) == 20
    assert bytes_to_reach([0.3, 0.4], [10, 10], 0.5) is None


def test_run_pipeline_direct_paths(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    syn = run_pipeline(cfg, data, pipeline="synthetic", seed=3)
    assert 0.0 <= syn.uar <= 1.0
    assert [c.id for c in syn.clients] == ["client-0", "client-1"] and all(c.status == "ok" for c in syn.clients)
    assert syn.bytes_up_total == sum(payload_bytes(s) for s in syn.sets.values())
    assert syn.shared is not None and len(syn.shared) == 2 * data.n_classes  # ipc 1 per client, every class on both
    again = run_pipeline(cfg, data, pipeline="synthetic", seed=3)
    assert again.shared is not None and np.array_equal(again.shared.x, syn.shared.x) and again.uar == syn.uar
    other = run_pipeline(cfg, data, pipeline="synthetic", seed=4)
    assert other.shared is not None and not np.array_equal(other.shared.x, syn.shared.x)
    assert json.loads(json.dumps(syn.to_json()))["global_uar"] == syn.uar  # typed result, JSON-ready view

    one = run_pipeline(cfg, data, pipeline="raw_sharing", seed=3, clients=[1])
    assert [c.id for c in one.clients] == ["client-1"]
    assert np.array_equal(one.sets["client-1"].x, data.client(1).x)
    assert one.bytes_up_total > npy_bytes(data.client(1).x)

    fa = run_pipeline(cfg, data, pipeline="fedavg", seed=3)
    assert fa.model is not None
    theta_bytes = state_bytes({k: v.numpy() for k, v in fa.model.state_dict().items()})
    counts = [len(json.dumps({"num_examples": len(data.client(k))})) for k in range(2)]
    assert [r.round for r in fa.rounds] == [1, 2]
    assert fa.bytes_up_total == 2 * sum(theta_bytes + c for c in counts)
    pooled = run_pipeline(cfg, data, pipeline="pooled", seed=3)
    assert pooled.bytes_up_total == 0 and pooled.clients == []

    fed = cfg.federation.model_copy(update={"mode": "multi_round", "rounds": 2})
    multi = cfg.model_copy(update={"federation": fed})
    mr = run_pipeline(multi, data, pipeline="synthetic", seed=3)
    assert [c.round for c in mr.clients] == [1, 1, 2, 2]
    assert mr.bytes_up_total == sum(r.bytes_up for r in mr.rounds)
    # round 1 equals the one-shot run; round 2 re-distils for the round-1 global model, so the sets move
    assert mr.rounds[0].uar == syn.uar
    assert mr.shared is not None and not np.array_equal(mr.shared.x, syn.shared.x)
    with pytest.raises(ConfigError, match="pipeline 'nope'"):
        run_pipeline(cfg, data, pipeline="nope", seed=0)  # type: ignore[arg-type]


def test_linear_reference_is_fitted_on_what_the_server_holds(tiny: tuple[Config, Dataset]) -> None:
    """The server's linear baseline: the log-Mel functionals logistic regression on exactly the examples the CNN
    trained on, scored on the test speakers; none for FedAvg; off by config; absent in old results."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score

    cfg, data = tiny
    raw = run_pipeline(cfg, data, pipeline="raw_sharing", seed=3)
    ref = raw.reference
    assert ref is not None and ref["name"] == "logmel_functionals" and ref["n_train"] == len(data.train)

    def stats(x: np.ndarray) -> np.ndarray:  # independent of fedsered's: mean and std over time of every mel bin
        x = x[:, 0].astype(np.float64)
        return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)

    assert raw.shared is not None
    xs, xt = stats(raw.shared.x), stats(data.test.x)
    mu, sd = xs.mean(axis=0), xs.std(axis=0)
    sd[sd == 0] = 1.0
    clf = LogisticRegression(C=cfg.functionals.C, max_iter=cfg.functionals.max_iter).fit((xs - mu) / sd, raw.shared.y)
    expected = recall_score(data.test.y, clf.predict((xt - mu) / sd), average="macro", labels=range(data.n_classes))
    assert ref["uar"] == pytest.approx(expected, abs=1e-9)
    assert run_pipeline(cfg, data, pipeline="fedavg", seed=3).reference is None
    off = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"linear_reference": False})})
    assert run_pipeline(off, data, pipeline="pooled", seed=3).reference is None
    obj = raw.to_json()
    assert type(raw).from_json(obj).reference == ref
    del obj["reference"]
    assert type(raw).from_json(obj).reference is None


def test_fedavg_stops_where_it_reaches_synthetic_sharing_and_reads_the_same_byte_ratio(
    tiny: tuple[Config, Dataset],
) -> None:
    """With fedavg_until_reached FedAvg ends at the first round within the tolerance of synthetic sharing; its rounds
    are the full run's first rounds, so the byte ratio is the one every round would give."""
    import tempfile

    from fedsered.federation.compare import run_comparison
    from fedsered.federation.inprocess import InProcessTransport
    from fedsered.federation.pipeline import select_clients, server_view

    cfg, data = tiny

    def compare(**fed: object) -> dict:
        c = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={
            "baselines": ("fedavg",), "fedavg_rounds": 4, **fed})})  # fmt: skip
        parts = select_clients(data, None)
        with tempfile.TemporaryDirectory() as tmp:
            transport = InProcessTransport(parts, n_classes=data.n_classes, ledger_root=Path(tmp), policy=c.privacy)
            return run_comparison(c, server_view(data, parts), transport, seed=3).to_json()

    full = compare(fedavg_until_reached=False)
    uars = [r["uar"] for r in full["baselines"]["fedavg"]["rounds"]]
    assert len(uars) == 4 and full["comparison"]["fedavg_rounds_run"] == 4 and full["fedavg_rounds_cap"] == 4
    # a target every round reaches (synthetic sharing's UAR pushed down): the stopped run ends after round 1
    target = full["global_uar"] - 0.02
    reached = [i for i, u in enumerate(uars, 1) if u >= target]
    assert reached and reached[0] < 4  # this tiny federation reaches it early: the stop is exercised
    stopped = compare()
    rounds = stopped["baselines"]["fedavg"]["rounds"]
    assert len(rounds) == (reached[0] if reached else 4) == stopped["comparison"]["fedavg_rounds_run"]
    assert [r["uar"] for r in rounds] == uars[: len(rounds)]
    for key in ("fedavg_bytes_to_reach", "fedavg_reached", "fedavg_bytes_ratio", "fedavg_bytes_ratio_is_lower_bound"):
        assert stopped["comparison"][key] == full["comparison"][key]


def test_fedavg_stop_at_uar_ends_fedavg_but_never_dp_fedavg(tiny: tuple[Config, Dataset], tmp_path: Path) -> None:
    from fedsered.federation.inprocess import InProcessTransport
    from fedsered.federation.loop import run_federation
    from fedsered.federation.pipeline import select_clients, server_view

    cfg, data = tiny
    parts = select_clients(data, None)
    for pipeline, rounds in (("fedavg", 1), ("dp_fedavg", cfg.federation.fedavg_rounds)):
        transport = InProcessTransport(parts, n_classes=data.n_classes, ledger_root=tmp_path / pipeline,
                                       policy=cfg.privacy)  # fmt: skip
        res = run_federation(cfg, server_view(data, parts), transport, pipeline=pipeline, seed=3, stop_at_uar=0.0)
        assert len(res.rounds) == rounds


def test_dp_pipelines_account_every_release(tiny: tuple[Config, Dataset], tmp_path: Path) -> None:
    cfg, data = tiny
    dp = load_config(DEFAULT, [*tiny_overrides(tmp_path), "privacy.enabled=true", "privacy.target_epsilon=4",
                               "privacy.budget_epsilon=8", "federation.mode=multi_round",
                               "federation.rounds=2"])  # fmt: skip
    syn = run_pipeline(dp, build_dataset(dp), pipeline="synthetic", seed=3)
    last = [c for c in syn.clients if c.round == 2]
    for c in last:  # two releases composed: more than one release's 4, at most two releases' 8 (composition)
        assert c.privacy is not None and len(c.privacy["releases"]) == 2 and 4.0 < c.privacy["epsilon"] <= 8.0 + 1e-6
    assert all(s.meta["privacy"]["epsilon"] <= 4.0 + 1e-6 for s in syn.sets.values())

    fa = run_pipeline(dp, data, pipeline="dp_fedavg", seed=3)
    final = [c for c in fa.clients if c.round == dp.federation.fedavg_rounds]
    for c in final:  # the noise was calibrated so that all rounds together spend the target
        assert c.privacy is not None and len(c.privacy["releases"]) == dp.federation.fedavg_rounds
        assert c.privacy["epsilon"] == pytest.approx(4.0, rel=0.05)
    plain = run_pipeline(cfg, data, pipeline="fedavg", seed=3)
    assert fa.model is not None and plain.model is not None
    noisy, clean = fa.model.state_dict(), plain.model.state_dict()
    assert any(not torch.equal(noisy[k], clean[k]) for k in clean)


def test_over_budget_round_is_refused_before_any_work(tiny: tuple[Config, Dataset], tmp_path: Path) -> None:
    """The budget covers one release: round 2 of multi-round DP sharing is refused by every client's ledger (nothing
    uploaded), and the run stops with the refusal as the reason; the ledgers hold round 1 only."""
    _, data = tiny
    dp = load_config(DEFAULT, [*tiny_overrides(tmp_path), "privacy.enabled=true", "privacy.target_epsilon=4",
                               "federation.mode=multi_round", "federation.rounds=2"])  # fmt: skip
    with pytest.raises(QuorumError, match=r"round 2: only 0 of 2.*client-0: refused \(PrivacyBudgetError"):
        run_pipeline(dp, data, pipeline="synthetic", seed=3, ledger_root=tmp_path / "ledgers")
    for cid in ("client-0", "client-1"):
        ledger = json.loads((tmp_path / "ledgers" / cid / "synthetic.json").read_text())
        assert len(ledger["releases"]) == 1
    # a second run of the same clients (same ledgers) is refused in round 1: the budget is spent
    one = dp.model_copy(update={"federation": dp.federation.model_copy(update={"mode": "one_shot"})})
    with pytest.raises(QuorumError, match="round 1: only 0 of 2"):
        run_pipeline(one, data, pipeline="synthetic", seed=4, ledger_root=tmp_path / "ledgers")
    # DP-FedAvg: its rounds spend the budget exactly; a second federation of the same clients is refused at once
    run_pipeline(dp, data, pipeline="dp_fedavg", seed=3, ledger_root=tmp_path / "ledgers")
    with pytest.raises(QuorumError, match=r"round 1: only 0 of 2.*refused \(PrivacyBudgetError"):
        run_pipeline(dp, data, pipeline="dp_fedavg", seed=4, ledger_root=tmp_path / "ledgers")
    ledger = json.loads((tmp_path / "ledgers" / "client-0" / "dp_fedavg.json").read_text())
    assert len(ledger["releases"]) == dp.federation.fedavg_rounds


def test_server_side_redistillation_to_a_target_size(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    sets = [_set([0, 0, 1, 1, 2], cid="client-0", shape=data.input_shape),
            _set([0, 1, 2, 2, 2], cid="client-1", shape=data.input_shape)]  # fmt: skip
    fed = cfg.federation.model_copy(update={"server_ipc": 1, "method": "random"})
    agg = aggregate(sets, cfg=cfg.model_copy(update={"federation": fed}), n_classes=3, seed=0)
    assert agg.y.tolist() == [0, 1, 2] and agg.meta["method"] == "union+random" and agg.meta["server_ipc"] == 1
    union = {r.tobytes() for s in sets for r in s.x}
    assert all(r.tobytes() in union for r in agg.x)  # random re-selection keeps real rows of the union


def test_privacy_override_for_an_unknown_client_is_refused(tiny: tuple[Config, Dataset], tmp_path: Path) -> None:
    _, data = tiny
    bad = load_config(DEFAULT, [*tiny_overrides(tmp_path), "privacy.enabled=true", "privacy.clients={client-99: {}}"])
    with pytest.raises(ConfigError, match=r"privacy\.clients\.client-99: no client 'client-99'.*client-0"):
        run_pipeline(bad, data, pipeline="synthetic", seed=0)


def test_the_server_trains_and_scores_at_its_own_pinned_thread_count(tiny: tuple[Config, Dataset]) -> None:
    """The server is a machine, not an IoT device: ``federation.server_threads`` (default 2) pins its training and
    scoring, so the global model is the same whatever count the caller runs torch at; clients keep train.threads."""
    from fedsered.config import load_config as _load
    from fedsered.federation.server import global_train_config

    cfg, data = tiny
    assert _load(DEFAULT).federation.server_threads == 2
    two = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"server_threads": 2})})
    assert global_train_config(two, "pooled").threads == 2 and global_train_config(two, "synthetic").threads == 2
    assert two.train.threads == 1  # the clients' count is untouched
    states = []
    for caller in (1, 2):
        torch.set_num_threads(caller)
        try:
            res = run_pipeline(two, data, pipeline="raw_sharing", seed=3)
            assert torch.get_num_threads() == caller  # restored after training and scoring
        finally:
            torch.set_num_threads(1)
        states.append({k: v.detach().clone() for k, v in res.model.state_dict().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
