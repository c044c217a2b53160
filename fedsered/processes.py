"""The processes a run started (Ray's daemons), recorded in its run folder so that the next run of the same folder
stops those that a SIGKILLed predecessor left behind.

A killed driver cannot stop Ray (a SIGKILL runs no handler), and Ray's raylet, GCS and workers then live on for a
minute or two. So a command that starts Ray writes ``DIR/.ray-processes.json`` — ``[[pid, create_time], ...]`` of its
child processes once Ray is up — and removes it after Ray is shut down; a run that finds the file stops every
recorded process that still exists **with the same start time** (a reused PID is never signalled), their children
included, before it starts its own Ray.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path

import psutil

from fedsered.io import atomic_write_json

RECORD = ".ray-processes.json"


def children() -> set[int]:
    """The PIDs of this process's descendants now."""
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def record_children(out: Path, *, exclude: set[int] | None = None) -> int:
    """Write the PIDs and start times of this process's descendants (those not in ``exclude``: processes that
    existed before the run started Ray) to ``out/.ray-processes.json``; returns how many."""
    rows = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        if exclude and p.pid in exclude:
            continue
        with suppress(psutil.Error):
            rows.append([p.pid, p.create_time()])
    atomic_write_json(out / RECORD, rows)
    return len(rows)


def forget(out: Path) -> None:
    """Remove the record (Ray was shut down by this run)."""
    (out / RECORD).unlink(missing_ok=True)


def stop_recorded(out: Path, *, wait: float = 5.0) -> list[int]:
    """Stop the processes a previous run of ``out`` recorded and left running (same PID and start time), with their
    children: SIGTERM, then SIGKILL after ``wait`` seconds. Removes the record; returns the PIDs stopped."""
    path = out / RECORD
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found: dict[int, psutil.Process] = {}
    for row in rows if isinstance(rows, list) else []:
        with suppress(psutil.Error, TypeError, ValueError):
            p = psutil.Process(int(row[0]))
            if abs(p.create_time() - float(row[1])) < 1e-3 and p.pid != os.getpid():
                found[p.pid] = p
                for c in p.children(recursive=True):
                    found.setdefault(c.pid, c)
    for p in found.values():
        with suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(list(found.values()), timeout=wait)
    for p in alive:
        with suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=wait)
    path.unlink(missing_ok=True)
    return sorted(found)
