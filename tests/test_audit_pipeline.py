"""The audit end to end on a tiny embedded corpus: whole-pipeline shadow runs, the report contract, the sanity checks
that can fail (exact copies found at TPR 1 / FPR 0, duplicated canaries found by LiRA), Ray == sequential, and the
HTML rendering in headless Chromium (installed by .ci/run; skipped without it, except in CI)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import browsercheck
import numpy as np
import psutil
import pytest
from interrupting import interrupt, wait_for
from PIL import Image

from fedsered.cli import main
from fedsered.config import Config, load_config
from fedsered.data.dataset import Dataset, build_dataset
from fedsered.errors import ConfigError
from privacy_audits.evaluate import attack_metrics, attack_scores, roc_points, target_metrics
from privacy_audits.metrics import roc, tpr_at_fpr
from privacy_audits.run import load_scores, rescore, save_scores
from privacy_audits.shadows import make_plan, run_clients, run_shadows
from privacy_audits.targets import parse_target

PLAIN = ("raw_sharing", "random_subset", "fedavg")
DP = ("synthetic_dm_dp_eps0.5", "dp_fedavg_eps0.5")
TINY = [
    "data.embedded.n_speakers=10", "data.embedded.utterances_per_emotion=3", "data.embedded.duration_s=[0.8,1.0]",
    "features.n_mels=16", "features.segment_s=1.0", "model.name=cnn_iot", "model.width=8", "train.epochs=8",
    "distill.eval_epochs=10", "federation.num_clients=5", "federation.ipc=2", "federation.fedavg_rounds=2",
    "audit.clients=3", "audit.audited_per_client=6", "audit.population=30", "audit.canaries=2", "audit.shadows=4",
    "audit.workers=0", "audit.one_run_canaries=12", "audit.one_run_runs=2",
]  # fmt: skip


def tiny_config(tmp: Path, *extra: str) -> Config:
    return load_config(None, [*TINY, f"features.cache_dir={tmp / 'cache'}", *extra])


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Dataset]:
    cfg = tiny_config(tmp_path_factory.mktemp("data"))
    return cfg, build_dataset(cfg)


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    out = tmp / "run"
    args = [f"--set={s}" for s in TINY] + [f"--set=features.cache_dir={tmp / 'cache'}"]
    args += ["--set=audit.pipelines=[raw_sharing,random_subset,fedavg,synthetic_dm_dp_eps0.5,dp_fedavg_eps0.5]"]
    assert main(["audit", "none.yaml", *args, "--out", str(out)]) == 2  # a missing config file: one-line error
    cfg_file = tmp / "audit.yaml"
    cfg_file.write_text("seed: 0\n", encoding="utf-8")
    assert main(["audit", str(cfg_file), *args, "--out", str(out)]) == 0
    return out


def test_results_contract(audit_run: Path) -> None:
    res = json.loads((audit_run / "results.json").read_text(encoding="utf-8"))
    assert set(res["pipelines"]) == {*PLAIN, *DP}
    for name, r in res["pipelines"].items():
        assert isinstance(r["uar"], float) and 0.0 <= r["uar"] <= 1.0
        assert 0.0 <= r["auc"] <= 1.0
        assert set(r["tpr_at_fpr"]) == {"0.001", "0.01"}
        assert (r["epsilon_accounted"] is None) == (name in PLAIN) and r["epsilon_lower_bound"] >= 0.0
        assert isinstance(r["bytes_up_total"], int) and r["bytes_up_total"] > 0
    # the pipelines that share examples are attacked on the shared set too; FedAvg shares none
    assert {"dcr_feature", "domias"} <= set(res["pipelines"]["raw_sharing"]["attacks"])
    assert "dcr_feature" not in res["pipelines"]["fedavg"]["attacks"]
    assert "domias" not in res["pipelines"]["fedavg"]["attacks"]
    assert res["privacy_gain"]["raw_sharing"] == 0.0
    for name, r in res["pipelines"].items():  # every bound beside its design's ceiling; one-run audits of DP only
        assert 0.0 <= r["epsilon_lower_bound"] <= r["epsilon_certifiable"] + 1e-9
        assert 0.0 <= r["rmia_offline_a"] <= 1.0
        assert ("one_run" in r) == (name in DP), name
    for name in DP:
        one = res["pipelines"][name]["one_run"]
        assert one["canaries"] == 12 * 2 and one["runs"] == 2 and one["epsilon_certifiable"] > 0
        assert one["epsilon_lower_bound"] <= res["pipelines"][name]["epsilon_accounted"]
        assert {"loss"} <= set(one["attacks"])
    for name in res["pipelines"]:
        with np.load(audit_run / "scores" / f"{name}.npz") as z:
            member = z["matrix_member"]  # every (audited utterance, run) pair; each utterance IN in half the runs
            assert member.shape == z["score_loss"].shape == (18 * 4,)
            assert member.dtype == bool and member.sum() == 18 * 2
            assert "canary_score_lira_online" in z.files
            assert z["score"].shape == z["member"].shape  # the headline attack's own pairs


def audit_command(tmp: Path, *extra: str) -> tuple[list[str], list[str]]:
    """The CLI arguments of a tiny audit into ``tmp/run`` (``extra`` overrides added), and the subprocess command."""
    cfg_file = tmp / "audit.yaml"
    cfg_file.write_text("seed: 0\n", encoding="utf-8")
    args = ["audit", str(cfg_file), *[f"--set={s}" for s in [*TINY, f"features.cache_dir={tmp / 'cache'}", *extra]],
            "--out", str(tmp / "run")]  # fmt: skip
    return args, [sys.executable, "-m", "fedsered.cli", *args]


def test_audit_killed_then_resumed_equals_uninterrupted(audit_run: Path, tmp_path: Path) -> None:
    """SIGKILL mid-audit after some runs finished, then the same command again: the finished runs are reused (their
    files untouched), the rest computed, and the results equal an uninterrupted audit's."""
    out = tmp_path / "run"
    args, cmd = audit_command(tmp_path, "audit.pipelines=[raw_sharing,random_subset]")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(list((out / "runs").rglob("*.npz"))) >= 3, proc, what="the audit")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*.npz"))}
    assert 3 <= len(kept) < 8
    assert main(args) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # reused, not recomputed
    assert len(list((out / "runs").rglob("*.npz"))) == 8
    full = json.loads((audit_run / "results.json").read_text(encoding="utf-8"))["pipelines"]
    resumed = json.loads((out / "results.json").read_text(encoding="utf-8"))["pipelines"]
    for name in ("raw_sharing", "random_subset"):
        for key in ("uar", "auc", "tpr_at_fpr", "epsilon_lower_bound", "attacks", "canaries", "bytes_up_total"):
            assert resumed[name][key] == full[name][key], (name, key)
    # the same folder under another config is refused with one line
    assert main([*args, "--set=audit.shadows=6"]) == 2


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_audit_on_ray_stops_on_sigint_and_sigterm_within_seconds(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) and SIGTERM to the driver, each while Ray runs the shadow runs: one line,
    exit 128 + signal within 10 s, no Ray process left (by PID), the finished runs kept for a resume."""
    out = tmp_path / "run"
    _, cmd = audit_command(tmp_path, "audit.workers=2", "audit.pipelines=[raw_sharing,random_subset,fedavg]")
    for sig in (signal.SIGINT, signal.SIGTERM):
        before = len(list((out / "runs").rglob("*.npz")))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        wait_for(lambda b=before: len(list((out / "runs").rglob("*.npz"))) > b, proc, what="the audit")
        ray_pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert ray_pids, "no Ray process was running"
        err = interrupt(proc, sig)
        assert f"interrupted by {sig.name}; run the same command again to resume" in err.strip().splitlines()[-1]
        left = [p for p in ray_pids if _alive(p)]
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for p in left if _alive(p)]
        assert not left, f"{sig.name}: Ray processes left: {left}"
    assert len(list((out / "runs").rglob("*.npz"))) >= 2  # kept for the resume


def test_a_run_after_sigkill_stops_the_ray_processes_the_killed_one_left(tmp_path: Path) -> None:
    """A SIGKILLed driver cannot stop Ray; it recorded Ray's processes in its folder, and the next run of the folder
    stops the ones still there (same PID and start time) before starting its own."""
    out = tmp_path / "run"
    args, cmd = audit_command(tmp_path, "audit.workers=2", "audit.pipelines=[raw_sharing,random_subset]")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: bool(list((out / "runs").rglob("*.npz"))), proc, what="the audit")
    rows = json.loads((out / ".ray-processes.json").read_text())
    assert rows, "Ray's processes were not recorded"
    proc.kill()  # the driver only, as an OOM kill would: Ray's processes live on
    proc.wait()
    recorded = [psutil.Process(pid) for pid, t in rows if _alive(pid) and psutil.Process(pid).create_time() == t]
    assert recorded, "no recorded Ray process outlived the driver (nothing to test)"
    assert main(args) == 0
    assert not [p for p in recorded if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (out / ".ray-processes.json").exists()


def test_dp_lower_bound_never_exceeds_accounted_epsilon(audit_run: Path) -> None:
    """The audit's ε lower bound (max over attacks and canaries) stays below the accountant's ε for the DP pipelines,
    while the same audit certifies more than that ε against raw sharing (so the check has teeth)."""
    res = json.loads((audit_run / "results.json").read_text(encoding="utf-8"))["pipelines"]
    for name in DP:
        assert res[name]["epsilon_accounted"] == pytest.approx(0.5, rel=0.05)
        assert res[name]["epsilon_lower_bound"] <= res[name]["epsilon_accounted"], name
    assert res["raw_sharing"]["epsilon_lower_bound"] > 0.5


def test_exact_copy_in_raw_shared_set_found_at_tpr1_fpr0(audit_run: Path) -> None:
    """Raw sharing ships the records themselves: DCR finds every member with no false positive."""
    with np.load(audit_run / "scores" / "raw_sharing.npz") as z:
        curve = roc(z["score_dcr_feature"], z["matrix_member"])
    assert tpr_at_fpr(curve, 0.0) == 1.0
    res = json.loads((audit_run / "results.json").read_text(encoding="utf-8"))
    assert res["pipelines"]["raw_sharing"]["tpr_at_fpr"]["0.001"] == 1.0


def test_report_is_self_contained(audit_run: Path) -> None:
    page = (audit_run / "report.html").read_text(encoding="utf-8")
    assert "Threat model" in page and "raw_sharing" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    assert (audit_run / "figures" / "roc.png").stat().st_size > 1000
    assert "| raw_sharing |" in (audit_run / "report.md").read_text(encoding="utf-8")


def test_report_renders_in_headless_chromium(audit_run: Path, tmp_path: Path) -> None:
    """report.html loads in headless Chromium without errors and every figure is decoded and painted (non-blank in
    the PNG data and in the screenshot); how, in tests/browsercheck.py. Skipped without Chromium, except in CI."""
    exe = browsercheck.chromium_or_skip()
    figures = sorted(p.stem for p in (audit_run / "figures").glob("*.png"))
    assert len(figures) == 2
    assert browsercheck.check_report(audit_run / "report.html", exe, tmp_path, figures) == []
    dom = (tmp_path / "dom.html").read_text(encoding="utf-8")
    assert 'id="threat-model"' in dom and "raw_sharing" in dom


def test_browser_check_detects_broken_blank_and_missing_figures(audit_run: Path, tmp_path: Path) -> None:
    """The check has teeth: a figure with corrupt data, one replaced by a white PNG, one left out are each caught."""
    exe = browsercheck.chromium_or_skip()
    page = (audit_run / "report.html").read_text(encoding="utf-8")
    first, second = dict(re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', page)).items()
    white = io.BytesIO()
    Image.new("RGB", (600, 400), "white").save(white, format="PNG")
    bad = page.replace(first[1], base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode())
    bad = bad.replace(second[1], base64.b64encode(white.getvalue()).decode())
    (tmp_path / "bad.html").write_text(bad, encoding="utf-8")
    problems = browsercheck.check_report(tmp_path / "bad.html", exe, tmp_path / "bad", [first[0], second[0]])
    assert any(p.startswith(f"{first[0]}: embedded PNG does not decode") for p in problems), problems
    assert f"{first[0]}: broken image (not decoded by Chromium)" in problems
    assert f"page error: failed to load <img> {first[0]}" in problems
    assert f"{second[0]}: embedded PNG is blank" in problems and f"{second[0]}: blank in the screenshot" in problems
    (tmp_path / "gone.html").write_text(re.sub(r"<figure>.*?</figure>", "", page, count=1), encoding="utf-8")
    gone = browsercheck.check_report(tmp_path / "gone.html", exe, tmp_path / "gone", [first[0], second[0]])
    assert gone == [f"{first[0]}: no <img> in the report"]


def _canary_metrics(cfg: Config, data: Dataset, tmp: Path) -> dict[str, Any]:
    plan = make_plan(cfg, data)
    runs = run_shadows(cfg, data, plan, targets=["raw_sharing"], workers=0, out_dir=tmp)[0]["raw_sharing"]
    ts = attack_scores(runs, plan, cfg.audit)
    return target_metrics(ts, runs, cfg.audit)


def test_duplicated_canary_detected_by_lira(tiny_data: tuple[Config, Dataset], tmp_path: Path) -> None:
    """Mislabelled canaries repeated 8 times when IN: LiRA tells IN from OUT runs far above chance."""
    cfg, data = tiny_data
    cfg = cfg.model_copy(
        update={"audit": cfg.audit.model_copy(update={"canaries": 6, "canary_copies": 8, "shadows": 8})}
    )
    m = _canary_metrics(cfg, data, tmp_path)
    lira = m["canaries"]["lira_online"]
    assert lira["auc"] > 0.9, lira
    assert m["canaries"]["lira_online"]["auc"] > m["attacks"]["lira_online"]["auc"]


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_ray_runs_match_sequential_and_clean_up(
    tiny_data: tuple[Config, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import privacy_audits.shadows as shadows

    cfg, data = tiny_data
    plan = make_plan(cfg, data)
    given: list[Path] = []  # the RAY_TMPDIR this run gave Ray (a short link when the run folder's path is long)

    def recording(out_dir: Path) -> tuple[Path, Path | None]:
        path, link = real_tmpdir(out_dir)
        given.append(path)
        return path, link

    real_tmpdir = shadows.ray_tmpdir
    monkeypatch.setattr(shadows, "ray_tmpdir", recording)
    seq = run_shadows(cfg, data, plan, targets=["random_subset"], workers=0, out_dir=tmp_path / "seq")[0]
    par = run_shadows(cfg, data, plan, targets=["random_subset"], workers=2, out_dir=tmp_path / "par")[0]
    for a, b in zip(seq["random_subset"], par["random_subset"], strict=True):
        assert a.run == b.run
        np.testing.assert_allclose(a.phi, b.phi, rtol=1e-5, atol=1e-5)
        assert a.dcr_feature is not None and b.dcr_feature is not None
        np.testing.assert_allclose(a.dcr_feature, b.dcr_feature, rtol=1e-6)
    assert (tmp_path / "par" / "ray").is_dir()  # RAY_TMPDIR lives under the run folder
    assert given, "run_shadows with workers must start Ray under ray_tmpdir"
    # this run's processes only (by the paths it gave Ray): another Ray on the machine, e.g. a user's audit, is not ours
    markers = {str((tmp_path / "par" / "ray").resolve()), *(str(p) for p in given)}
    deadline = time.monotonic() + 20
    while (left := sorted({p for m in markers for p in _processes_mentioning(m)} - {os.getpid()})):
        if time.monotonic() > deadline:
            pytest.fail(f"Ray processes left running: {left}")
        time.sleep(0.5)


def test_plan_puts_each_audited_example_in_half_the_runs(tiny_data: tuple[Config, Dataset]) -> None:
    cfg, data = tiny_data
    cfg = cfg.model_copy(update={"audit": cfg.audit.model_copy(update={"canary_copies": 3})})
    plan = make_plan(cfg, data)
    assert len(plan.audited) == 3 * 6 + 2 and plan.is_canary.sum() == 2
    assert (plan.member.sum(axis=1) == 2).all()
    population_speakers = set(plan.population.speaker.tolist())
    assert population_speakers.isdisjoint(set(np.concatenate([p.speaker for p in plan.fixed.values()]).tolist()))
    for r in range(plan.runs):
        clients = run_clients(plan, r)
        ids = np.concatenate([c.utterance_id for c in clients.values()])
        for i, uid in enumerate(plan.audited.utterance_id):
            expected = (3 if plan.is_canary[i] else 1) if plan.member[i, r] else 0
            assert int((ids == uid).sum()) == expected


@pytest.mark.parametrize(
    ("name", "pipeline", "method", "eps"),
    [("raw_sharing", "raw_sharing", None, None), ("synthetic_mtt", "synthetic", "mtt", None),
     ("synthetic_dm_dp_eps8", "synthetic", "dm", 8.0), ("dp_fedavg_eps0.5", "dp_fedavg", None, 0.5)],
)  # fmt: skip
def test_parse_target(name: str, pipeline: str, method: str | None, eps: float | None) -> None:
    spec = parse_target(name)
    assert (spec.pipeline, spec.method, spec.dp_epsilon) == (pipeline, method, eps)


@pytest.mark.parametrize("name", ["synthetic_foo", "raw", "synthetic_dm_dp_eps0", "dp_fedavg_eps"])
def test_bad_target_is_one_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"audit\.pipelines"):
        parse_target(name)


def test_rescore_from_saved_scores_reproduces_results(audit_run: Path, tmp_path: Path) -> None:
    """The saved per-example scores are enough to recompute every metric (what --rescore does)."""
    copy = tmp_path / "copy"
    shutil.copytree(audit_run, copy, ignore=shutil.ignore_patterns("ray"))
    before = json.loads((copy / "results.json").read_text(encoding="utf-8"))["pipelines"]
    after = rescore(copy, load_config(copy / "config.yaml"))["pipelines"]
    for name, r in before.items():
        for key in ("auc", "tpr_at_fpr", "epsilon_lower_bound", "headline_attack", "attacks", "canaries"):
            assert after[name][key] == r[key], (name, key)


def test_server_knowledge_attack_breaks_replayable_sets_only(tiny_data: tuple[Config, Dataset], tmp_path: Path) -> None:
    """The server replays the client's computation with each audited example IN and OUT: without DP, or with DP noise
    derived from the run seed, one replay is the uploaded set bit for bit (members found exactly); with the client's
    secret noise it falls to chance."""
    cfg, data = tiny_data
    # eval_epochs 2: the server's global model (trained on the shared set) is no part of the replay, which scores the
    # uploaded sets themselves; it only feeds the other attacks, which stay far below the replay (TPR <= 0.4 here)
    cfg = cfg.model_copy(update={
        "audit": cfg.audit.model_copy(update={"shadows": 8, "replay_examples": 4}),
        "distill": cfg.distill.model_copy(update={"dm_iterations": 10, "eval_epochs": 2}),
    })  # fmt: skip
    plan = make_plan(cfg, data)
    targets = ["synthetic_dm", "synthetic_dm_dp_eps2_reproducible", "synthetic_dm_dp_eps2"]
    runs = run_shadows(cfg, data, plan, targets=targets, workers=0, out_dir=tmp_path)[0]
    replay = {t: target_metrics(attack_scores(runs[t], plan, cfg.audit), runs[t], cfg.audit)["attacks"]["server_replay"]
              for t in targets}  # fmt: skip
    assert replay["synthetic_dm"]["auc"] == 1.0 and replay["synthetic_dm"]["tpr_at_fpr"]["0.01"] == 1.0
    assert replay["synthetic_dm_dp_eps2_reproducible"]["auc"] == 1.0
    assert abs(replay["synthetic_dm_dp_eps2"]["auc"] - 0.5) < 0.3, replay["synthetic_dm_dp_eps2"]
    assert replay["synthetic_dm_dp_eps2"]["tpr_at_fpr"]["0.01"] < 0.5
    # the replay attack leads the non-DP target; its pairs survive a save and a rescore
    ts = attack_scores(runs["synthetic_dm"], plan, cfg.audit)
    metrics = attack_metrics(ts, cfg.audit)
    assert metrics["headline_attack"] == "server_replay"
    save_scores(tmp_path / "s.npz", ts, headline="server_replay", example_id=plan.audited.utterance_id)
    assert attack_metrics(load_scores(tmp_path / "s.npz"), cfg.audit) == metrics
    fpr, tpr = roc_points(ts, "server_replay")
    assert tpr[fpr <= 0.0].max() == 1.0


def test_server_knowledge_attack_on_merf_releases(tiny_data: tuple[Config, Dataset], tmp_path: Path) -> None:
    """Under server synthesis the server replays the client's merf release (the centre included) with each audited
    example IN and OUT: without DP, or with seed-derived noise, one replay is the release bit for bit; with the
    client's secret noise the attack falls to chance."""
    cfg, data = tiny_data
    server = load_config(None, [
        *TINY, f"features.cache_dir={tmp_path / 'cache'}", "federation.method=merf", "federation.merf_synthesis=server",
        "federation.merf_centre=public", "distill.merf_networks=2", "distill.merf_iterations=5",
        "distill.eval_epochs=2", "federation.public_data={corpus: embedded, embedded: {n_speakers: 2, "
        "utterances_per_emotion: 2, duration_s: [0.8, 1.0]}}", "audit.shadows=8", "audit.replay_examples=4",
    ])  # fmt: skip
    assert server.data == cfg.data and server.features.model_dump(exclude={"cache_dir"}) == \
        cfg.features.model_dump(exclude={"cache_dir"})  # fmt: skip
    plan = make_plan(server, data)
    targets = ["synthetic_merf", "synthetic_merf_dp_eps2_reproducible", "synthetic_merf_dp_eps2"]
    runs = run_shadows(server, data, plan, targets=targets, workers=0, out_dir=tmp_path)[0]
    for t in targets:  # the observed uploads are the releases: [n_classes, 2 nets x width] sums, then counts
        assert all(r.replay is not None and r.replay_index is not None for r in runs[t])
    replay = {t: target_metrics(attack_scores(runs[t], plan, server.audit), runs[t], server.audit)["attacks"]
              ["server_replay"] for t in targets}  # fmt: skip
    assert replay["synthetic_merf"]["auc"] == 1.0 and replay["synthetic_merf"]["tpr_at_fpr"]["0.01"] == 1.0
    assert replay["synthetic_merf_dp_eps2_reproducible"]["auc"] == 1.0
    assert abs(replay["synthetic_merf_dp_eps2"]["auc"] - 0.5) < 0.3, replay["synthetic_merf_dp_eps2"]
    assert replay["synthetic_merf_dp_eps2"]["tpr_at_fpr"]["0.01"] < 0.5
