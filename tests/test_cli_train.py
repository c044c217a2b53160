"""``fedsered train`` end to end: a RAVDESS-layout folder of WAVs → features → both centralised models →
results.json; and over ``--seeds`` (summary with CIs and the paired difference, resume, refusals, bad seeds)."""

import csv
import json
import re
from pathlib import Path

import pytest
from wavtrees import write_ravdess_tree

from fedsered.cli import main
from fedsered.experiments.train import parse_seeds, summarise, verdict
from fedsered.experiments.train import rows as results_rows
from fedsered.stats import mean_ci, paired_difference

PROGRESS = re.compile(r"^[^:]+: \d+/\d+, ")  # a progress line in a log (fedsered.cli._LogLines)

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
    # the functionals reference ran on the same split; one seed has no interval
    reference = result["summary"]["models"]["functionals"]["uar"]
    assert reference["mean"] > 0.5 and reference["n"] == 1 and reference["lo"] is None


def test_missing_corpus_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["data", str(ROOT / "configs" / "default.yaml"), "--set", "data.corpus=emodb",
         "--set", f"data.path={tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")]
    )  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert code == 2 and len(err) == 1 and "nowhere" in err[0]
    assert not (tmp_path / "run" / "results.json").exists()


def _tiny(tmp: Path) -> list[str]:
    """Five embedded speakers (one held out), 32 mels, a 4-channel IoT net trained for 2 epochs."""
    return [
        "data.embedded.n_speakers=5", "data.embedded.utterances_per_emotion=2", "data.embedded.duration_s=[1.0, 1.2]",
        "data.test_speakers=0.25",  # one held-out speaker (the default holds out 40 %)
        "features.segment_s=1.2", "features.n_mels=32", f"features.cache_dir={tmp / 'cache'}",
        "model.name=cnn_iot", "model.width=4", "train.epochs=2", "federation.num_clients=2",
    ]  # fmt: skip


def _train(out: Path, overrides: list[str], *extra: str) -> int:
    args = ["train", str(ROOT / "configs" / "default.yaml"), "--out", str(out), *extra]
    for kv in overrides:
        args += ["--set", kv]
    return main(args)


def _without_seconds(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def test_seeds_summarise_resume_and_refuse_another_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, tiny = tmp_path / "run", _tiny(tmp_path)
    assert _train(out, tiny, "--seeds", "0-1") == 0
    printed = capsys.readouterr().out
    assert "Δ cnn − functionals" in printed and "±" in printed and "seeds: 2 run, 0 resumed" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [0, 1] and (res["ran"], res["resumed"]) == (2, 0)
    assert "uar" not in res  # the single-seed top level is only for one seed
    assert sorted((r["seed"], r["method"]) for r in res["rows"]) == [
        (0, "cnn"), (0, "functionals"), (1, "cnn"), (1, "functionals")]  # fmt: skip
    for r in res["rows"]:
        assert sum(map(sum, r["confusion"])) == r["n_test"] == 10
    # the summary is the Student-t interval of the rows, and the paired difference is taken seed by seed
    summary = res["summary"]
    for method in ("cnn", "functionals"):
        values = [r["uar"] for r in res["rows"] if r["method"] == method]
        assert summary["models"][method]["uar"] == mean_ci(values).to_json()
    cnn = [r["uar"] for r in res["rows"] if r["method"] == "cnn"]
    ref = [r["uar"] for r in res["rows"] if r["method"] == "functionals"]
    assert summary["paired"]["cnn - functionals"]["uar"] == paired_difference(cnn, ref).to_json()
    diff = summary["paired"]["cnn - functionals"]["uar"]
    expected = verdict(diff, first="cnn", second="functionals")
    assert summary["verdict"]["better"] == expected["better"]
    assert summary["verdict"]["text"].startswith(expected["text"])
    default = summary["verdict"]["default_model"]
    assert next(iter(summary["models"])) == default and "(default)" in printed
    assert summary["verdict"]["agrees"] == (expected["better"] in (None, default))
    assert summary["verdict"]["text"].split(":")[0] in " ".join(printed.split())  # printed under the table
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["seed"]), r["method"]) for r in rows] == [(0, "cnn"), (0, "functionals"), (1, "cnn"),
                                                             (1, "functionals")]  # fmt: skip
    assert float(rows[0]["uar"]) == res["rows"][0]["uar"]
    assert sorted(p.name for p in (out / "seeds").iterdir()) == ["0.json", "1.json"]

    # the same command again (another feature cache is no other config): nothing is retrained, same results
    assert _train(out, [*tiny, f"features.cache_dir={tmp_path / 'cache2'}"], "--seeds", "0-1") == 0
    again = json.loads((out / "results.json").read_text())
    assert (again["ran"], again["resumed"]) == (0, 2) and again["summary"] == summary
    # more seeds: only the new one runs; a seed of the list is the run of that config seed
    assert _train(out, tiny, "--seeds", "0,1,2") == 0
    assert json.loads((out / "results.json").read_text())["ran"] == 1
    assert _train(tmp_path / "single", [*tiny, "seed=2"]) == 0
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    seed2 = json.loads((out / "seeds" / "2.json").read_text())
    assert _without_seconds(single["rows"]) == _without_seconds(results_rows([seed2]))
    # another configuration in the same folder is refused with one line
    capsys.readouterr()
    assert _train(out, [*tiny, "train.epochs=3"], "--seeds", "0-1") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and "holds a multi-seed training of another configuration" in err[0]
    # so is a seed file of another configuration (the folder's spec notwithstanding)
    record = json.loads((out / "seeds" / "1.json").read_text())
    (out / "seeds" / "1.json").write_text(json.dumps({**record, "fingerprint": "0" * 16}))
    assert _train(out, tiny, "--seeds", "0-1") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and "1.json: holds a seed of another configuration" in err[0]


@pytest.mark.parametrize("spec", ["5-2", "x", "0,,1", "1,1", "4294967296"])
def test_bad_seeds_are_one_line_errors(spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path / "run", _tiny(tmp_path), "--seeds", spec) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not PROGRESS.match(ln)]
    assert len(err) == 1 and err[0].startswith("fedsered train: error: --seeds") and "Traceback" not in err[0]
    assert not (tmp_path / "run").exists()


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0,2,5") == (0, 2, 5)
    assert parse_seeds(" 3 , 0-1 ") == (3, 0, 1)
    assert parse_seeds("7") == (7,)


def test_verdict_names_a_better_model_only_when_the_paired_interval_excludes_zero() -> None:
    def est(values: list[float]) -> dict[str, object]:
        return mean_ci(values).to_json()

    ahead = verdict(est([0.10, 0.12, 0.08]), first="cnn", second="functionals")
    assert ahead["better"] == "cnn" and "cnn is better" in ahead["text"]
    behind = verdict(est([-0.10, -0.12, -0.08]), first="cnn", second="functionals")
    assert behind["better"] == "functionals" and behind["ahead_on_mean"] == "functionals"
    tie = verdict(est([-0.10, 0.05, -0.02]), first="cnn", second="functionals")
    assert tie["better"] is None and tie["ahead_on_mean"] == "functionals" and "contains 0" in tie["text"]
    one = verdict(est([0.3]), first="cnn", second="functionals")
    assert one["better"] is None and "one seed" in one["text"]


def _record(seed: int, cnn: float, ref: float) -> dict[str, object]:
    return {"seed": seed, "cnn": {"uar": cnn, "wa": cnn, "model": {"name": "cnn6"}},
            "functionals": {"uar": ref, "wa": ref, "model": {"name": "functionals"}}}  # fmt: skip


def test_the_default_model_is_listed_first_and_checked_against_the_verdict() -> None:
    records = [_record(s, 0.60 + 0.01 * s, 0.70 + 0.012 * s) for s in range(5)]  # functionals ahead on every seed
    agree = summarise(records, default_model="functionals")
    assert list(agree["models"]) == ["functionals", "cnn"]
    assert agree["verdict"]["better"] == "functionals" and agree["verdict"]["agrees"] is True
    assert agree["paired"]["cnn - functionals"]["uar"]["mean"] == pytest.approx(-0.1 - 0.002 * 2)
    clash = summarise(records, default_model="cnn")
    assert list(clash["models"]) == ["cnn", "functionals"] and clash["verdict"]["agrees"] is False
    assert clash["verdict"]["text"].endswith("train.default_model is cnn: the seeds say otherwise")
    tied = summarise([_record(s, 0.6 + 0.05 * (-1) ** s, 0.6) for s in range(4)], default_model="cnn")
    assert tied["verdict"]["better"] is None and tied["verdict"]["agrees"] is True
