"""Ctrl-C and SIGTERM stop a command that does not use Ray (``distill --seeds``) at once with one line naming the
folder to resume, exit status 128 + the signal, no child process left, and the finished seeds kept for the resume.
(``simulate`` and ``audit``, which run Ray, have their own signal tests.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from interrupting import interrupt, wait_for
from test_distill_cli import tiny

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")


def test_distill_stops_on_sigint_and_sigterm_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fedsered.cli", "distill", DEFAULT, "--out", str(out), "--seeds", "0-3"]
    for kv in tiny(tmp_path):
        cmd += ["--set", kv]
    for k, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        wait_for((out / "seeds" / str(k) / "results.json").exists, proc, what="distill")
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        err = interrupt(proc, sig)
        last = err.strip().splitlines()[-1]
        assert last == f"fedsered distill: interrupted by {sig.name}; run the same command again to resume {out}"
        assert "Traceback" not in err
        assert not [p for p in children if psutil.pid_exists(p)]
    done = sorted(p.parent.name for p in (out / "seeds").glob("*/results.json"))
    assert len(done) >= 2 and not (out / "results.json").exists()
    # the same command finishes the rest, reusing the seeds finished before the interrupts
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["resumed"] == len(done) and res["ran"] == 4 - len(done)
