"""The hostile-input findings of issue 15 that break no larger feature: each as the user met it, then the fix.

Run folders (``fedsered.runfolder``): a config beside ``--out`` is never overwritten, two runs never share a folder,
an unusable ``--out`` is one line before any work, a failed run leaves no ``results.json``. Synthetic sets and their
metadata are one unit. An unknown client id under ``privacy.clients`` is refused before Ray starts. Corpus files
that are not files, and ``Actor_`` folders that are not ``Actor_NN``, are reported instead of vanishing. A sweep cell
file that is not a cell record is recomputed. ``--rescore`` of a broken audit folder is one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_distill_cli import tiny as distill_tiny
from wavtrees import write_ravdess_tree

from fedsered.cli import main
from fedsered.data.corpora import scan_corpus
from fedsered.distill import SyntheticSet, load_set, make_meta, save_set
from fedsered.errors import PayloadError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
LOCK_FILE = ".fedsered.lock"  # fedsered.LOCK_FILE


def _args(cmd: str, config: str | Path, out: Path, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    args = [cmd, str(config), "--out", str(out)]
    for kv in overrides:
        args += ["--set", kv]
    return args


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of the command that just failed (earlier commands' lines aside)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


# ---------------------------------------------------------------------------------------------------------------
# run folders


def test_validate_never_overwrites_the_config_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    text = Path(DEFAULT).read_text() + "# my own notes\n"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "config.yaml", "--out", "."]) == 2
    assert "config.yaml is the config this run reads" in _error_line(capsys)
    assert config.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_hand_written_config_yaml_in_out_is_not_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 3  # mine\n")
    assert main(_args("validate", DEFAULT, out)) == 2
    assert "was not written by fedsered" in _error_line(capsys)
    assert (out / "config.yaml").read_text() == "seed: 3  # mine\n"


def test_a_run_folder_fedsered_wrote_is_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_args("validate", DEFAULT, out)) == 0
    assert main(_args("validate", DEFAULT, out, ["seed=4"])) == 0  # a config.yaml of fedsered's: overwritten
    assert "seed: 4" in (out / "config.yaml").read_text()
    assert main(_args("validate", out / "config.yaml", out)) == 0  # reading it and writing it unchanged is fine
    assert main(_args("validate", out / "config.yaml", out, ["seed=5"])) == 2  # changing the input is not
    assert "is the config this run reads" in _error_line(capsys)


def _hold_lock(out: Path) -> subprocess.Popen[str]:
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("cmd", ["distill", "train", "sweep", "simulate", "audit", "validate"])
def test_a_second_run_on_the_same_out_is_refused_naming_the_pid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cmd: str
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        start = time.monotonic()
        assert main(_args(cmd, DEFAULT, out, distill_tiny(tmp_path))) == 2
        assert time.monotonic() - start < 10  # refused before any work
        line = _error_line(capsys)
        assert f"--out {out}" in line and f"PID {holder.pid}" in line and "another fedsered run" in line
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "cache").exists()
    # the holder died: its lock is taken over without a question
    assert main(_args("validate", DEFAULT, out)) == 0


def test_a_stale_lock_file_of_a_dead_run_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(dead.stdout)
    assert main(_args("validate", DEFAULT, out)) == 0
    assert (out / "results.json").exists()


@pytest.mark.parametrize("cmd", ["train", "distill", "sweep", "data"])
@pytest.mark.parametrize("where", ["a file", "under a file", "not writable"])
def test_an_unusable_out_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cmd: str, where: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"a file": afile, "under a file": afile / "run", "not writable": tmp_path / "ro"}[where]
    if where == "not writable":
        out.mkdir()

        def refuse(*args: object, **kwargs: object) -> tuple[int, str]:  # what a read-only folder answers
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    cache = tmp_path / "cache"  # distill_tiny's feature cache
    start = time.monotonic()
    assert main(_args(cmd, DEFAULT, out, distill_tiny(tmp_path))) == 2
    assert time.monotonic() - start < 10
    line = _error_line(capsys)
    expected = {
        "a file": "is a file, expected a folder",
        "under a file": f"cannot create the folder ({afile} is a file)",
        "not writable": "cannot write in this folder (Permission denied)",
    }[where]
    assert f"--out {out}: {expected}" in line
    assert not cache.exists()  # nothing was computed


def test_a_run_that_fails_leaves_no_results_json_of_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_args("validate", DEFAULT, out)) == 0
    assert json.loads((out / "results.json").read_text()) == {"valid": True}
    # a selection method has no DP mechanism: distill fails before training, after the run has begun
    failing = [*distill_tiny(tmp_path), "privacy.enabled=true", "distill.methods=[random]"]
    assert main(_args("distill", DEFAULT, out, failing)) == 2
    _error_line(capsys)
    assert not (out / "results.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# synthetic sets


def _set(value: float, **meta: object) -> SyntheticSet:
    m = make_meta(method="dm", ipc=1, n_classes=2, features={}, init="random", client_id=None, **meta)
    return SyntheticSet(x=np.full((2, 1, 4, 3), value, np.float32), y=np.array([0, 1]), meta=m)


def test_a_set_that_cannot_be_saved_leaves_the_previous_pair_untouched(tmp_path: Path) -> None:
    stem = tmp_path / "sets" / "dm_ipc1"
    npz, js = save_set(stem, _set(1.0, sigma=1.1))
    before = (npz.read_bytes(), js.read_bytes())
    with pytest.raises(PayloadError, match=r"not JSON-serialisable.*nothing was written"):
        save_set(stem, _set(2.0, sigma=float("inf")))
    assert (npz.read_bytes(), js.read_bytes()) == before
    assert load_set(stem).meta["sigma"] == 1.1


def test_a_set_interrupted_between_its_files_never_pairs_with_old_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedsered.distill import synthetic_set

    stem = tmp_path / "dm_ipc1"
    save_set(stem, _set(1.0, sigma=1.1))
    real = synthetic_set.atomic_write_bytes

    def crash_on_json(path: Path, data: bytes) -> Path:
        if Path(path).suffix == ".json":
            raise KeyboardInterrupt  # the run is killed after the .npz
        return real(path, data)

    monkeypatch.setattr(synthetic_set, "atomic_write_bytes", crash_on_json)
    with pytest.raises(KeyboardInterrupt):
        save_set(stem, _set(2.0, sigma=0.7))
    monkeypatch.undo()
    with pytest.raises(PayloadError, match=r"dm_ipc1\.json: file not found"):
        load_set(stem)


def test_a_stale_json_beside_a_new_npz_is_refused(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    save_set(old, _set(1.0, sigma=1.1))
    save_set(new, _set(2.0, sigma=0.7))
    (tmp_path / "new.json").write_bytes((tmp_path / "old.json").read_bytes())
    with pytest.raises(PayloadError, match=r"new\.json: metadata differs from the copy inside new\.npz"):
        load_set(new)


def test_sets_written_before_the_inner_copy_still_load(tmp_path: Path) -> None:
    s = _set(1.0)
    np.savez(tmp_path / "old.npz", x=s.x, y=s.y)
    (tmp_path / "old.json").write_text(json.dumps(s.meta))
    assert load_set(tmp_path / "old").meta == s.meta


# ---------------------------------------------------------------------------------------------------------------
# privacy.clients


def test_an_unknown_client_id_is_refused_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    rc = main(_args("simulate", DEFAULT, tmp_path / "run", ['privacy.clients={"3": {target_epsilon: 2.0}}']))
    assert rc == 2 and time.monotonic() - start < 10
    line = _error_line(capsys)
    assert "privacy.clients.3: no client '3'" in line and "client-0, client-1, client-2, ..., client-7" in line
    assert not (tmp_path / "run").exists()  # the folder it created for nothing is gone again


def test_the_readme_privacy_clients_example_names_a_real_client() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("  clients:                 # per-client overrides") :].splitlines()[1]
    assert block.strip().startswith("client-3:")


# ---------------------------------------------------------------------------------------------------------------
# corpus files that are not files


def _ravdess_with(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "ravdess"
    paths = write_ravdess_tree(root, actors=(1, 2), emotions=("neutral", "happy"), n_per=1)
    return root, paths


def test_a_clip_replaced_by_a_folder_or_a_looping_link_is_reported(tmp_path: Path) -> None:
    root, paths = _ravdess_with(tmp_path)
    folder, loop = paths[0], paths[1]
    folder.unlink()
    folder.mkdir()
    loop.unlink()
    loop.symlink_to(loop.name)  # a link to itself
    scan = scan_corpus("ravdess", root)
    assert len(scan.entries) == len(paths) - 2
    reasons = {Path(b.path).name: b.reason for b in scan.bad}
    assert reasons[folder.name] == "a folder, not an audio file"
    assert reasons[loop.name].startswith("a symbolic link that cannot be followed")


def test_an_actor_folder_with_a_non_utf8_name_is_reported(tmp_path: Path) -> None:
    root, _ = _ravdess_with(tmp_path)
    actor = root / "Actor_02"
    odd = os.path.join(os.fsencode(root), b"Actor_\xe902")
    os.rename(os.fsencode(actor), odd)
    scan = scan_corpus("ravdess", root)
    assert {e.speaker for e in scan.entries} == {"ravdess_01"}
    [bad] = scan.bad
    assert bad.path == f"{root}/Actor_\\xe902" and "its 2 wav file(s) were not read" in bad.reason
    bad.path.encode("utf-8")  # printable: no lone surrogates


def test_non_files_count_as_skipped_when_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, paths = _ravdess_with(tmp_path)
    paths[0].unlink()
    paths[0].mkdir()
    common = [f"data.path={root}", "data.corpus=ravdess", "data.emotions=[neutral, happy]", "data.test_speakers=0.5",
              f"features.cache_dir={tmp_path / 'cache'}", "federation.num_clients=1"]  # fmt: skip
    assert main(_args("data", DEFAULT, tmp_path / "strict", common)) == 2
    assert f"{paths[0]}: a folder, not an audio file" in _error_line(capsys)
    assert main(_args("data", DEFAULT, tmp_path / "run", [*common, "data.on_bad_file=skip"])) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())["summary"]
    assert summary["skipped"] == 1 and summary["utterances"] == len(paths) - 1


# ---------------------------------------------------------------------------------------------------------------
# sweep cells


@pytest.mark.parametrize("content", ["null", "[]", "{}", '{"method": "random"}', "{trunc"])
def test_a_sweep_cell_file_that_is_not_a_record_is_recomputed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    out = tmp_path / "sweep"
    overrides = [kv for kv in distill_tiny(tmp_path) if not kv.startswith("distill.")] + [
        "distill.eval_epochs=2", "distill.eval_random_inits=0", "sweep.methods=[dm]", "sweep.epsilons=[inf]",
        "sweep.seeds=[0]", "sweep.ipc=1", "sweep.baselines=[random]", "sweep.full_data=false",
        "distill.dm_iterations=2",
    ]  # fmt: skip
    assert main(_args("sweep", DEFAULT, out, overrides)) == 0
    cell = out / "cells" / "random_epsinf_seed0.json"
    good = json.loads(cell.read_text())
    cell.write_text(content)
    capsys.readouterr()
    assert main(_args("sweep", DEFAULT, out, overrides)) == 0
    assert "cells: 1 run, 1 resumed" in capsys.readouterr().out
    assert json.loads(cell.read_text())["uar_fixed_init"] == good["uar_fixed_init"]
    assert json.loads((out / "results.json").read_text())["cells"][0]["method"] == "random"


# ---------------------------------------------------------------------------------------------------------------
# python -m privacy_audits.run --rescore on a broken folder


def _rescore(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privacy_audits.run", "--rescore", str(folder)], capture_output=True, text=True,
        cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_rescore_of_a_truncated_results_json_or_corrupt_scores_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    assert main(_args("validate", DEFAULT, folder)) == 0  # a config.yaml
    entry = dict.fromkeys(("uar", "uar_std", "epsilon_accounted", "bytes_up_total", "runs", "cpu_s"), 0.0)
    results = {"pipelines": {"raw_sharing": entry}, "scores": {"raw_sharing": "scores/raw_sharing.npz"},
               "settings": {}, "command": "fedsered audit"}  # fmt: skip
    text = json.dumps(results)
    (folder / "scores").mkdir()
    (folder / "scores" / "raw_sharing.npz").write_bytes(b"PK\x03\x04 not a zip")
    cases = {
        text[: len(text) // 2]: "results.json: not a readable audit results.json",
        "[]": "results.json: not the results.json of an audit",
        json.dumps({**results, "scores": {}}): "pipeline 'raw_sharing' lacks its entries or scores file",
        text: "raw_sharing.npz: not a readable scores file of an audit",
    }
    for content, message in cases.items():
        (folder / "results.json").write_text(content)
        done = _rescore(folder)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert message in line, line
