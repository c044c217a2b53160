"""End to end through the CLI: a RAVDESS-layout folder of WAVs → features → centralised training → results.json."""

import json
from pathlib import Path

import pytest
from wavtrees import write_ravdess_tree

from fedsered.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_ravdess_folder_trains_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "RAVDESS"
    write_ravdess_tree(corpus, actors=(1, 2, 3, 4, 5, 6), n_per=6, sample_rate=48000, seconds=1.0, seed=1)
    out = tmp_path / "run"
    args = ["train", str(ROOT / "configs" / "default.yaml"), "--out", str(out)]
    for kv in (
        "data.corpus=ravdess", f"data.path={corpus}", "data.test_speakers=[ravdess_05, ravdess_06]",
        "features.segment_s=1.0", f"features.cache_dir={tmp_path / 'cache'}",
        "model.name=cnn_iot", "train.epochs=25", "train.batch_size=16", "train.lr=0.003", "federation.num_clients=2",
    ):  # fmt: skip
        args += ["--set", kv]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert {"uar", "wa", "confusion", "n_train", "n_test", "seconds"} <= result.keys()
    assert result["n_train"] == 4 * 5 * 6 and result["n_test"] == 2 * 5 * 6
    assert result["test_speakers"] == ["ravdess_05", "ravdess_06"]
    assert sum(map(sum, result["confusion"])) == result["n_test"]
    assert result["uar"] > 0.5  # chance is 0.2: the per-emotion voices in wavtrees are learnable across speakers
    assert (out / "config.yaml").exists()
    assert "UAR" in capsys.readouterr().out


def test_missing_corpus_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["data", str(ROOT / "configs" / "default.yaml"), "--set", "data.corpus=emodb",
         "--set", f"data.path={tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nowhere" in err[0]
    assert not (tmp_path / "run" / "results.json").exists()
