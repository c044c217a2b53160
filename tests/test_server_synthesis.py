"""Server-side merf synthesis (``federation.merf_synthesis: server``): every client releases its per-class sums and
counts once, the server adds them and synthesises one set (in process; the Flower path is in test_simulation)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedsered.config import Config, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.data.public import load_public
from fedsered.distill.merf import embedding_nets, release_sums
from fedsered.errors import ConfigError, DataError, PayloadError
from fedsered.federation import Reply, Task, client_seed, run_pipeline, run_task
from fedsered.federation.accept import accept_statistics
from fedsered.federation.aggregate import ClientStatistics, synthesise_from_statistics, with_public
from fedsered.federation.client import LocalClient, nets_seed, statistics_client
from fedsered.federation.loop import server_seed, statistics_width
from fedsered.federation.payload import npy_bytes
from fedsered.federation.server import train_global
from fedsered.models import fixed_init_state
from tests.test_federated import DEFAULT, tiny_overrides

SERVER = ["federation.method=merf", "federation.merf_synthesis=server", "distill.merf_networks=2",
          "distill.merf_iterations=5"]  # fmt: skip
DP = ["privacy.enabled=true", "privacy.target_epsilon=4", "privacy.reproducible_noise=true"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Dataset]:
    cfg = load_config(DEFAULT, [*tiny_overrides(tmp_path_factory.mktemp("srv")), *SERVER])
    return cfg, build_dataset(cfg)


def _with(cfg: Config, tmp: Path, extra: list[str]) -> Config:
    return load_config(DEFAULT, [*tiny_overrides(tmp), *SERVER, *extra])


def _theta0(cfg: Config, data: Dataset) -> dict[str, torch.Tensor]:
    return dict(fixed_init_state(cfg.model, n_classes=data.n_classes))


def test_the_clients_releases_add_up_to_the_release_of_their_union(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    theta0 = _theta0(cfg, data)
    stats = [statistics_client(data.client(k), cfg=cfg, client_id=f"client-{k}", n_classes=data.n_classes,
                               init_state=theta0, run_seed=7, seed=k) for k in range(2)]  # fmt: skip
    nets = embedding_nets(cfg.model, n_classes=data.n_classes, init_state=theta0, seed=nets_seed(7), k=2)
    x = np.concatenate([data.client(k).x for k in range(2)])
    y = np.concatenate([data.client(k).y for k in range(2)])
    sums, counts = release_sums(nets, x, y, n_classes=data.n_classes, dp=None)
    assert np.allclose(stats[0].sums + stats[1].sums, sums.numpy(), atol=1e-5)
    exact = np.bincount(y, minlength=data.n_classes).tolist()
    assert (stats[0].counts + stats[1].counts).tolist() == counts.tolist() == exact
    assert stats[0].privacy is None and stats[0].sums.dtype == np.float32
    assert stats[0].sums.shape == (data.n_classes, statistics_width(cfg, n_classes=data.n_classes,
                                                                    input_shape=data.input_shape))  # fmt: skip


def test_server_synthesis_is_one_dp_release_per_client_and_post_processing_after(
    tiny: tuple[Config, Dataset], tmp_path: Path
) -> None:
    _, data = tiny
    dp = _with(tiny[0], tmp_path, DP)
    res = run_pipeline(dp, data, pipeline="synthetic", seed=3)
    assert [c.status for c in res.clients] == ["ok", "ok"] and res.sets == {}
    for c in res.clients:  # one release at q = 1, its epsilon derived by the server from the release
        assert c.privacy is not None and len(c.privacy["releases"]) == 1
        assert c.privacy["releases"][0]["mechanism"] == "dp_merf_oneshot"
        assert c.privacy["epsilon"] == pytest.approx(4.0, abs=0.02)
    shared = res.shared
    assert shared is not None and shared.meta["method"] == "merf-server"
    assert np.bincount(shared.y).tolist() == [dp.federation.ipc] * data.n_classes  # server_ipc: default ipc
    assert set(shared.meta["privacy"]["per_client"]) == {"client-0", "client-1"}
    # the server's set is a function of the releases alone: recomputing them gives the same set
    theta0 = _theta0(dp, data)
    stats = []
    for k in range(2):
        cid = f"client-{k}"
        s = statistics_client(data.client(k), cfg=dp, client_id=cid, n_classes=data.n_classes, init_state=theta0,
                              run_seed=3, seed=client_seed(3, cid, 1))  # fmt: skip
        stats.append(ClientStatistics(cid, s.sums, s.counts, s.privacy))
        meta = json.dumps({"client_id": cid, "method": "merf", "merf_networks": 2, "privacy": s.privacy})
        assert res.clients[k].bytes_up == npy_bytes(s.sums) + npy_bytes(s.counts) + len(meta.encode())
    again = synthesise_from_statistics(stats, cfg=dp, n_classes=data.n_classes, input_shape=data.input_shape,
                                       seed=server_seed(3, "aggregate", 1), run_seed=3, init_state=theta0)  # fmt: skip
    assert np.array_equal(again.x, shared.x) and again.y.tolist() == shared.y.tolist()
    # a release is what travels: far fewer bytes than the float32 sets of the same size
    assert res.clients[0].bytes_up < npy_bytes(shared.x[: dp.federation.ipc * data.n_classes])
    sized = _with(tiny[0], tmp_path, [*DP, "federation.server_ipc=3"])
    assert run_pipeline(sized, data, pipeline="synthetic", seed=3).shared.y.tolist() == np.repeat(  # type: ignore[union-attr]
        np.arange(data.n_classes), 3
    ).tolist()


def test_a_class_no_client_holds_is_left_out_of_the_synthesised_set(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    width = statistics_width(cfg, n_classes=data.n_classes, input_shape=data.input_shape)
    sums = np.ones((data.n_classes, width), dtype=np.float32)
    counts = np.array([3.0, 0.4, *[2.0] * (data.n_classes - 2)], dtype=np.float32)  # class 1: below one example
    s = synthesise_from_statistics([ClientStatistics("client-0", sums, counts, None)], cfg=cfg,
                                   n_classes=data.n_classes, input_shape=data.input_shape, seed=0, run_seed=0,
                                   init_state=_theta0(cfg, data))  # fmt: skip
    assert 1 not in s.y.tolist() and s.meta["missing_classes"] == [1]
    assert len(s.meta["loss_history"]) == cfg.distill.merf_iterations == 5  # server_merf_iterations unset: distill's
    more = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"server_merf_iterations": 7})})
    s7 = synthesise_from_statistics([ClientStatistics("client-0", sums, counts, None)], cfg=more,
                                    n_classes=data.n_classes, input_shape=data.input_shape, seed=0, run_seed=0,
                                    init_state=_theta0(cfg, data))  # fmt: skip
    assert len(s7.meta["loss_history"]) == 7 and s7.meta["loss_history"][:5] == s.meta["loss_history"]
    # the start's scale is federation.server_start_std (5 updates of step ~lr_img cannot hide a 10x smaller start)
    small = cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"server_start_std": 0.1})})
    s01 = synthesise_from_statistics([ClientStatistics("client-0", sums, counts, None)], cfg=small,
                                     n_classes=data.n_classes, input_shape=data.input_shape, seed=0, run_seed=0,
                                     init_state=_theta0(cfg, data))  # fmt: skip
    assert 0.5 < s.x.std() < 1.5 and s01.x.std() < 0.3


PUBLIC = ["federation.server_start=public", "federation.public_seed=99",
          "federation.public_data={corpus: embedded, embedded: {n_speakers: 2, utterances_per_emotion: 2, "
          "duration_s: [1.0, 1.2]}}"]  # fmt: skip


def test_a_public_start_is_the_servers_own_corpus_and_zero_updates_keep_it(
    tiny: tuple[Config, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, data = tiny
    width = statistics_width(cfg, n_classes=data.n_classes, input_shape=data.input_shape)
    stats = [ClientStatistics("client-0", np.ones((data.n_classes, width), np.float32),
                              np.full(data.n_classes, 2.0, np.float32), None)]  # fmt: skip
    pub = _with(cfg, tmp_path, [*PUBLIC, "federation.server_merf_iterations=0"])
    kw = {"n_classes": data.n_classes, "input_shape": data.input_shape, "run_seed": 0, "init_state": _theta0(cfg, data)}
    s0 = synthesise_from_statistics(stats, cfg=pub, seed=0, **kw)
    public = load_public(pub)  # 2 speakers x 2 utterances per emotion: 4 per class, nobody of the federation
    assert len(public) == 4 * data.n_classes
    assert not any(np.allclose(p, t) for p in public.x for t in data.train.x)  # other speakers than the clients'
    rows = {r.tobytes(): int(c) for r, c in zip(public.x, public.y, strict=True)}
    assert s0.meta["loss_history"] == [] and s0.meta["start"] == "public"
    assert [rows[r.tobytes()] for r in s0.x] == s0.y.tolist() == list(range(data.n_classes))  # ipc 1: public rows as is
    fitted = synthesise_from_statistics(stats, cfg=_with(cfg, tmp_path, PUBLIC), seed=0, **kw)
    assert len(fitted.meta["loss_history"]) == 5 and not np.allclose(fitted.x, s0.x)
    assert not np.array_equal(synthesise_from_statistics(stats, cfg=pub, seed=1, **kw).x, s0.x)  # the server's draw
    with pytest.raises(ConfigError, match="public_seed 0 equals seed"):
        _with(cfg, tmp_path, [*PUBLIC, "federation.public_seed=0", "seed=0"])
    with pytest.raises(ConfigError, match=r"public_data.emotions \['happy', 'sad'\] must be data.emotions"):
        _with(cfg, tmp_path, [*PUBLIC, "federation.public_data.emotions=[happy, sad]"])
    with pytest.raises(ConfigError, match="server_start: public needs merf_synthesis: server and a public_data"):
        load_config(DEFAULT, ["federation.server_start=public"])
    few = _with(cfg, tmp_path, [*PUBLIC, "federation.server_ipc=5"])
    with pytest.raises(DataError, match=r"federation\.public_data: class 0 has 4 examples, 5 are needed"):
        synthesise_from_statistics(stats, cfg=few, seed=0, **kw)
    gone = _with(cfg, tmp_path, [*PUBLIC[:2], f"federation.public_data={{corpus: ravdess, path: {tmp_path / 'no'}}}"])
    with pytest.raises(DataError, match=r"federation\.public_data: .*no: folder not found"):
        synthesise_from_statistics(stats, cfg=gone, seed=0, **kw)
    # the federation reads and checks the public corpus before any client releases anything
    def released(*_: object, **__: object) -> None:
        raise AssertionError("a client released before the public corpus was checked")

    monkeypatch.setattr("fedsered.distill.merf.noisy_embedding_sums", released)
    with pytest.raises(DataError, match=r"federation\.public_data: class 0 has 4 examples, 5 are needed"):
        few_dp = _with(cfg, tmp_path, [*PUBLIC, "federation.server_ipc=5", *DP])
        run_pipeline(few_dp, data, pipeline="synthetic", seed=3)


def test_training_on_the_public_corpus_too_keeps_the_shared_set_and_moves_no_epsilon(
    tiny: tuple[Config, Dataset], tmp_path: Path
) -> None:
    """``server_train_public``: the global model is trained on the synthesised set followed by the public corpus,
    class-balanced; the set the server shares and every client's privacy record are those of the run without it."""
    cfg, data = tiny
    public_noise = [*PUBLIC[1:], *DP]  # the public corpus, a noise start
    plain = run_pipeline(_with(cfg, tmp_path, public_noise), data, pipeline="synthetic", seed=3)
    both_cfg = _with(cfg, tmp_path, [*public_noise, "federation.server_train_public=true"])
    both = run_pipeline(both_cfg, data, pipeline="synthetic", seed=3)
    assert plain.shared is not None and both.shared is not None
    np.testing.assert_array_equal(both.shared.x, plain.shared.x)  # the same release, the same synthesis
    assert [c.privacy for c in both.clients] == [c.privacy for c in plain.clients]
    public = load_public(both_cfg)
    trained_on = with_public(both.shared, public, seed=server_seed(3, "aggregate", 1))
    assert trained_on.meta["public_rows"] == len(public) == 4 * data.n_classes  # balanced: all of it
    m = len(both.shared.y)
    np.testing.assert_array_equal(trained_on.x[:m], both.shared.x)
    np.testing.assert_array_equal(trained_on.y[m:], np.repeat(np.arange(data.n_classes), 4))  # ordered by class
    assert sorted(r.tobytes() for r in trained_on.x[m:]) == sorted(r.tobytes() for r in public.x)
    # an unbalanced corpus: every class at the smallest class's size
    short = public.subset(np.arange(1, len(public)))
    assert np.bincount(with_public(both.shared, short, seed=0).y[m:]).tolist() == [3] * data.n_classes
    model = train_global(trained_on, cfg=both_cfg, init_state=_theta0(cfg, data), seed=server_seed(3, "train", 1),
                         n_classes=data.n_classes)  # fmt: skip
    assert both.model is not None and plain.model is not None
    for name, value in model.state_dict().items():
        torch.testing.assert_close(both.model.state_dict()[name], value, rtol=0, atol=0)
    assert any(not torch.equal(both.model.state_dict()[k], v) for k, v in plain.model.state_dict().items())
    with pytest.raises(ConfigError, match="server_train_public needs merf_synthesis: server and a public_data"):
        _with(cfg, tmp_path, ["federation.server_train_public=true"])


def test_the_server_rejects_malformed_statistics_with_the_client_named() -> None:
    good = {"sums": np.zeros((3, 8), np.float32), "counts": np.ones(3, np.float32)}
    meta = json.dumps({"client_id": "client-2", "privacy": None})

    def check(arrays: dict[str, np.ndarray], text: str = meta, cap: int = 10**6) -> None:
        accept_statistics(Reply("client-2", arrays, meta=text), n_classes=3, dim=8, max_bytes=cap)

    sums, counts, privacy = accept_statistics(Reply("client-2", good, meta=meta), n_classes=3, dim=8, max_bytes=10**6)
    assert sums.shape == (3, 8) and counts.tolist() == [1.0, 1.0, 1.0] and privacy is None
    bad = [
        ({"sums": good["sums"]}, meta, "sums and counts"),
        ({**good, "x": good["counts"]}, meta, "sums and counts"),
        ({**good, "sums": np.zeros((3, 7), np.float32)}, meta, r"sums is float32 \[3, 7\], expected float32 \[3, 8\]"),
        ({**good, "counts": np.ones(3, np.float64)}, meta, "counts is float64"),
        ({**good, "sums": np.full((3, 8), np.nan, np.float32)}, meta, "sums holds non-finite"),
        (good, json.dumps({"client_id": "client-9"}), "claim client_id 'client-9'"),
        (good, "[1]", "must be a JSON object"),
        (good, json.dumps({"client_id": "client-2", "privacy": {"releases": []}}), "non-empty 'releases'"),
    ]
    for arrays, text, why in bad:
        with pytest.raises(PayloadError, match=f"client-2: .*{why}"):
            check(arrays, text)
    with pytest.raises(PayloadError, match=r"client-2: payload of .* above the cap of 100 bytes"):
        check(good, cap=100)


def test_server_synthesis_needs_merf_one_shot_and_a_client_checks_for_itself(tiny: tuple[Config, Dataset]) -> None:
    cfg, data = tiny
    for extra, got in ((["federation.method=dm"], "method dm"), (["federation.mode=multi_round"], "mode multi_round")):
        with pytest.raises(ConfigError, match=f"federation: merf_synthesis: server needs method: merf and mode: "
                           f"one_shot, got .*{got}"):  # fmt: skip
            load_config(DEFAULT, [*SERVER, *extra])
    # a statistics task under a run that does not call for it is refused by the client, nothing released
    plain = load_config(DEFAULT, ["federation.method=merf"])
    theta0 = {k: v.numpy() for k, v in _theta0(cfg, data).items()}
    task = Task(pipeline="synthetic", kind="statistics", round=1, seed=0, state=theta0, cfg=plain)
    reply = run_task(task, LocalClient("client-0", data.client(0), data.n_classes))
    assert reply.arrays == {} and reply.error is not None and "merf_synthesis server" in reply.error


def test_the_dp_config_is_the_default_federation_under_dp_with_server_synthesis() -> None:
    dp, default = load_config(Path(DEFAULT).parent / "dp.yaml"), load_config(DEFAULT)
    assert (dp.privacy.enabled, dp.privacy.target_epsilon, dp.privacy.delta) == (True, 8.0, 1e-5)
    assert (dp.federation.method, dp.federation.merf_synthesis, dp.federation.server_ipc) == ("merf", "server", None)
    assert set(dp.federation.baselines) <= set(dp.privacy.share) | {"pooled"}  # no baseline its clients refuse
    assert dp.data == default.data and dp.model == default.model and dp.train == default.train


def test_a_centre_is_the_servers_data_independent_point_and_keeps_the_sensitivity(
    tiny: tuple[Config, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    from fedsered.federation.aggregate import merf_centre
    from fedsered.privacy.embeddings import embedding_bound
    from simulations.wire import task_message, task_of

    cfg, data = tiny
    theta0 = _theta0(cfg, data)
    kw = {"n_classes": data.n_classes, "input_shape": data.input_shape, "run_seed": 7, "init_state": theta0}
    noise = _with(cfg, tmp_path, ["federation.merf_centre=noise"])
    pub = _with(cfg, tmp_path, ["federation.merf_centre=public", *PUBLIC[1:]])
    c_noise = merf_centre(noise, **kw, public=None)
    c_pub = merf_centre(pub, **kw, public=load_public(pub))
    assert merf_centre(cfg, **kw, public=None) is None
    width = statistics_width(cfg, n_classes=data.n_classes, input_shape=data.input_shape)
    assert c_noise is not None and c_pub is not None and c_noise.shape == c_pub.shape == (width,)
    assert np.array_equal(c_noise, merf_centre(noise, **kw, public=None))  # a function of the public run seed alone
    assert not np.allclose(c_noise, c_pub)
    # whatever the centre, one example moves a class sum by at most the clipping bound (rows clipped after centring)
    nets = embedding_nets(cfg.model, n_classes=data.n_classes, init_state=theta0, seed=nets_seed(7), k=2)
    d = data.client(0)
    for centre in (c_pub, 1e3 * np.random.default_rng(0).standard_normal(width).astype(np.float32)):
        far = nets.centred(torch.from_numpy(centre))
        full, _ = release_sums(far, d.x, d.y, n_classes=data.n_classes, dp=None)
        less, _ = release_sums(far, d.x[1:], d.y[1:], n_classes=data.n_classes, dp=None)
        assert float((full - less).norm()) <= embedding_bound(1.0) + 1e-5
    # centring on the public corpus's mean spends the bound on how the classes differ: their clipped means spread more
    def spread(n: nn.Module) -> float:
        sums, counts = release_sums(n, data.train.x, data.train.y, n_classes=data.n_classes, dp=None)
        means = sums / counts.unsqueeze(1)
        return float((means - means.mean(dim=0)).norm(dim=1).mean())

    assert spread(nets.centred(torch.from_numpy(c_pub))) > 2 * spread(nets)
    # the client receives the server's centre (in process and through Flower's records) and releases under it
    stats = statistics_client(d, cfg=noise, client_id="client-0", n_classes=data.n_classes, init_state=theta0,
                              run_seed=7, seed=1, centre=c_noise)  # fmt: skip
    plain = statistics_client(d, cfg=cfg, client_id="client-0", n_classes=data.n_classes, init_state=theta0,
                              run_seed=7, seed=1)  # fmt: skip
    assert stats.counts.tolist() == plain.counts.tolist() and not np.allclose(stats.sums, plain.sums)
    state = {k: v.numpy() for k, v in theta0.items()}
    task = Task(pipeline="synthetic", kind="statistics", round=1, seed=7, state=state, cfg=noise, centre=c_noise)
    for key in ("_task_id", "_run_id", "_node_id"):  # Flower builds Messages only inside a run (as test_simulation)
        monkeypatch.setattr(TaskIdentity, key, 1)
    back = task_of(task_message(task, 1, cfg_yaml=noise.to_yaml()))
    assert back.centre is not None and np.array_equal(back.centre, c_noise)
    assert task_of(task_message(Task(**{**task.__dict__, "centre": None}), 1, cfg_yaml=cfg.to_yaml())).centre is None
    for centre, run, why in ((None, noise, "merf_centre is noise but the task has no centre"),
                             (c_noise, cfg, "merf_centre is none but the task has a centre"),
                             (c_noise[:-1], noise, r"a centre of shape \(\d+,\), the embeddings have width"),
                             (np.full(width, np.inf, np.float32), noise, "one finite vector")):  # fmt: skip
        reply = run_task(Task(**{**task.__dict__, "cfg": run, "centre": centre}),
                         LocalClient("client-0", d, data.n_classes))  # fmt: skip
        assert reply.arrays == {} and reply.error is not None and re.search(why, reply.error), reply.error
    # the server's synthesis fits its set under the same centre; the federation sends it and records it
    res = run_pipeline(noise, data, pipeline="synthetic", seed=7)
    assert res.shared is not None and res.shared.meta["centre"] == "noise"
    stats_all = []
    for k in range(2):
        cid = f"client-{k}"
        s = statistics_client(data.client(k), cfg=noise, client_id=cid, n_classes=data.n_classes, init_state=theta0,
                              run_seed=7, seed=client_seed(7, cid, 1), centre=c_noise)  # fmt: skip
        stats_all.append(ClientStatistics(cid, s.sums, s.counts, None))
    again = synthesise_from_statistics(stats_all, cfg=noise, seed=server_seed(7, "aggregate", 1), **kw)
    assert np.array_equal(again.x, res.shared.x)
    with pytest.raises(ConfigError, match="merf_centre: public needs merf_synthesis: server and a public_data"):
        load_config(DEFAULT, [*SERVER, "federation.merf_centre=public"])
    with pytest.raises(ConfigError, match="merf_centre: noise needs merf_synthesis: server, got merf_synthesis"):
        load_config(DEFAULT, ["federation.method=merf", "federation.merf_centre=noise"])
