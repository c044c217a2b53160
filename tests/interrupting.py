"""Helpers for the tests that stop a command mid-run: wait for a sign of progress, then interrupt it as a person or
a supervisor would (Ctrl-C to the process group, SIGTERM to the process) and check it stopped in time."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen[str] | subprocess.Popen[bytes], *, what: str,
             timeout: float = 180.0) -> None:  # fmt: skip
    """Poll ``ready`` until true; fail if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} ended before it could be interrupted"
        time.sleep(0.1)


def interrupt(proc: subprocess.Popen[str], sig: signal.Signals, *, within: float = 10.0) -> str:
    """SIGINT to ``proc``'s process group (what Ctrl-C does) or ``sig`` to ``proc``; asserts it exits with
    128 + ``sig`` within ``within`` seconds; returns its stderr."""
    t0 = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        tail = "\n".join(str(err or "").strip().splitlines()[-15:])  # what it was doing when the signal came
        pytest.fail(f"{sig.name}: did not stop within {within:g} s; its last stderr lines:\n{tail}")
    assert time.monotonic() - t0 < within and proc.returncode == 128 + sig, (sig.name, proc.returncode, err)
    return str(err)
