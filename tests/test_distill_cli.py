"""``fedsered distill``: every method × IPC on the training split, sets saved and scored, figures written, and the
``results.json`` contract users script against."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)

from fedsered.centralised import run_centralised
from fedsered.cli import main
from fedsered.config import load_config
from fedsered.data.dataset import build_dataset
from fedsered.data.types import FeatureSet
from fedsered.distill import SyntheticSet, load_set, make_meta
from fedsered.distill.figures import mean_logmel_figure, plot_mean_logmel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
PNG = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"ipc", "uar_fixed_init", "uar_random_init", "uar_random_init_std", "seconds", "set"}


def tiny(tmp: Path) -> list[str]:
    return [
        "data.embedded.n_speakers=4", "data.embedded.utterances_per_emotion=3", "data.embedded.duration_s=[1.0, 1.2]",
        "data.test_speakers=0.25",  # one held-out speaker (the default holds out 40 %)
        "features.segment_s=1.2", "features.n_mels=32", f"features.cache_dir={tmp / 'cache'}",
        "model.name=cnn_iot", "model.width=4", "train.epochs=3", "federation.num_clients=1",
        # ipc deliberately not sorted: ``methods`` is the row of the FIRST listed ipc, not the smallest
        "distill.methods=[random, dm]", "distill.ipc=[2, 1]", "distill.dm_iterations=5",
        "distill.eval_epochs=4", "distill.eval_random_inits=1",
    ]  # fmt: skip


def test_distill_cli_contract_sets_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    overrides = tiny(tmp_path)
    args = ["distill", DEFAULT, "--out", str(out)]
    for kv in overrides:
        args += ["--set", kv]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "full data" in printed and "dm" in printed and "random" in printed

    result = json.loads((out / "results.json").read_text())
    assert (out / "config.yaml").exists()
    assert {"full_data_uar", "methods", "by_ipc", "emotions", "n_train", "n_test", "seed"} <= result.keys()
    cfg = load_config(DEFAULT, overrides)
    data = build_dataset(cfg)  # from the feature cache the run filled
    assert result["emotions"] == list(data.emotions) and result["seed"] == cfg.seed == 0
    assert result["n_train"] == len(data.train) and result["n_test"] == len(data.test)
    assert isinstance(result["full_data_uar"], float) and 0.0 <= result["full_data_uar"] <= 1.0
    # the same protocol (θ₀, train section, seed role) as ``fedsered train``
    assert result["full_data_uar"] == pytest.approx(run_centralised(cfg, data)["uar"], abs=1e-12)

    assert list(result["by_ipc"]) == ["2", "1"]
    assert result["methods"] == result["by_ipc"]["2"]
    available = np.bincount(data.train.y, minlength=data.n_classes)
    train_rows = {row.tobytes() for row in data.train.x}
    for ipc_key, rows in result["by_ipc"].items():
        assert list(rows) == ["random", "dm"]
        ipc = int(ipc_key)
        for method, row in rows.items():
            assert set(row) == ROW_KEYS, row
            assert row["ipc"] == ipc and isinstance(row["ipc"], int)
            for key in ("uar_fixed_init", "uar_random_init"):
                assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, (method, key, row[key])
            assert isinstance(row["uar_random_init_std"], float) and row["uar_random_init_std"] >= 0.0
            assert isinstance(row["seconds"], float) and row["seconds"] >= 0.0
            assert row["set"] == f"sets/{method}_ipc{ipc}"

            s = load_set(out / row["set"], n_classes=data.n_classes, expected_shape=data.input_shape)
            assert s.meta["method"] == method and s.meta["ipc"] == ipc and s.meta["client_id"] is None
            assert s.meta["init"] == f"theta0:{cfg.model.init_seed}"
            assert s.meta["features"] == cfg.features.model_dump(mode="json")
            # ipc rows per class; fewer only where a class lacks data (selection caps, learned methods repeat)
            cap = np.minimum(available, ipc) if method == "random" else np.where(available > 0, ipc, 0)
            assert np.bincount(s.y, minlength=data.n_classes).tolist() == cap.tolist()
            assert len(s) == ipc * data.n_classes  # every class has >= 2 training examples here
            if method == "random":  # selection returns real training rows
                assert all(r.tobytes() in train_rows for r in s.x)

            figure = out / "figures" / f"mean_logmel_{method}_ipc{ipc}.png"
            assert figure.read_bytes()[:8] == PNG
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp files


def _toy(y: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    return r.normal(size=(len(y), 1, 8, 6)).astype(np.float32), np.array(y, dtype=np.int64)


def test_mean_logmel_figure_shows_missing_classes(tmp_path: Path) -> None:
    emotions = ("neutral", "happy", "sad")
    x, y = _toy([0, 0, 1, 1, 2], seed=0)
    real = FeatureSet(x, y, np.array(["s"] * len(y)), np.array([f"u{i}" for i in range(len(y))]))
    xs, ys = _toy([0, 0, 2], seed=1)  # class 1 (happy) missing from the set
    meta = make_meta(method="dm", ipc=2, n_classes=3, features={}, init="theta0:0", client_id=None)
    synthetic = SyntheticSet(xs, ys, meta)

    fig = mean_logmel_figure(real, synthetic, emotions=emotions)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "neutral: real mean (n=2)", "neutral: dm mean (n=2)",
        "happy: real mean (n=2)", "happy: no dm examples",
        "sad: real mean (n=1)", "sad: dm mean (n=1)",
    ]  # fmt: skip
    empty = next(ax for ax in fig.axes if ax.get_title() == "happy: no dm examples")
    assert not empty.get_images()
    happy_real = next(ax for ax in fig.axes if ax.get_title() == "happy: real mean (n=2)")
    np.testing.assert_allclose(happy_real.get_images()[0].get_array(), x[y == 1].mean(axis=0)[0], rtol=1e-6)

    path = plot_mean_logmel(real, synthetic, emotions=emotions, path=tmp_path / "figs" / "m.png")
    assert path == tmp_path / "figs" / "m.png" and path.read_bytes()[:8] == PNG
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]


def test_one_panel_scale_per_row(tmp_path: Path) -> None:
    """Real and synthetic panels of a row share vmin/vmax, so their colours compare."""
    x, y = _toy([0, 0, 1, 1], seed=2)
    real = FeatureSet(x, y, np.array(["s"] * 4), np.array([f"u{i}" for i in range(4)]))
    xs, ys = _toy([0, 1], seed=3)
    xs[0] += 5.0  # the synthetic row of class 0 has a wider range than the real mean
    meta = make_meta(method="random", ipc=1, n_classes=2, features={}, init="theta0:0", client_id=None)
    fig = mean_logmel_figure(real, SyntheticSet(xs, ys, meta), emotions=("a", "b"))
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 4
    for left, right in (images[0:2], images[2:4]):
        assert left.get_clim() == right.get_clim()
    lo, hi = images[0].get_clim()
    assert lo == pytest.approx(min(x[y == 0].mean(0).min(), xs[0].min())) and hi == pytest.approx(xs[0].max())
