"""A run folder (``--out``) owned by one run: checked before any work, locked while the run writes, and never holding
a stale result or losing a file fedsered did not write.

``claim(out, config_path=..., config_text=...)`` is what every command that writes ``--out`` enters first:

- ``out`` must be a folder or creatable as one, and writable (a temporary file is created and removed) — otherwise
  one ``OutputError`` before the run starts, instead of an ``OSError`` after hours of training;
- ``out/.fedsered.lock`` is locked (``fcntl.flock``, exclusive, non-blocking) and holds the run's PID; a second run
  on the same folder is refused with one line naming the folder and that PID. The kernel drops the lock when its
  process dies, so a lock left by a killed run is taken over without a question; the file itself stays (removing a
  lock file while others may hold it open breaks the lock);
- ``out/config.yaml``, which the run will overwrite with its resolved config, must be absent or a file fedsered
  wrote (``fedsered.config.is_resolved_yaml``), and not the run's own input config unless the run would write it
  unchanged: ``fedsered validate config.yaml --out .`` never replaces a hand-written config;
- ``out/results.json``, the last file a run writes, is removed, so a run that fails leaves no ``results.json`` that
  describes files it may since have replaced: a ``results.json`` in a run folder always belongs to a finished run.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from fedsered.config import MAX_CONFIG_BYTES, is_resolved_yaml
from fedsered.errors import OutputError

LOCK_FILE = ".fedsered.lock"
"""The lock file of a run folder (holds the PID of the run writing it, empty between runs)."""

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _ensure_folder(out: Path) -> bool:
    """Create ``out`` (and its parents) if needed and check it is a writable folder; True when it was created."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, expected a folder (choose another --out)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file" if blocker is not None else _reason(exc)
        raise OutputError(f"--out {out}: cannot create the folder ({why})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".fedsered-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in this folder ({_reason(exc)})") from None
    return created


def _lock(out: Path) -> int:
    """The open, locked lock file of ``out`` holding this process's PID."""
    path = out / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create its lock file {LOCK_FILE} ({_reason(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutputError(
            f"--out {out}: another fedsered run (PID {holder}) is writing to this folder; wait for it to end or "
            "choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _check_config_file(out: Path, *, config_path: str | Path | None, config_text: str) -> None:
    target = out / CONFIG_FILE
    if not target.exists():
        return
    try:
        with open(target, "rb") as fh:
            text = fh.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    same_input = config_path is not None and Path(config_path).exists() and target.samefile(config_path)
    if text is None or not is_resolved_yaml(text) or (same_input and text != config_text):
        what = "is the config this run reads" if same_input else "was not written by fedsered"
        raise OutputError(
            f"--out {out}: {target} {what} and the run would overwrite it with the resolved config; "
            "choose another --out (a new folder)"
        )


@contextmanager
def claim(out: str | Path, *, config_path: str | Path | None, config_text: str) -> Iterator[Path]:
    """Own the run folder ``out`` for the duration of the ``with`` block (see the module docstring).

    Args:
        out: the run folder; created (with its parents) when missing.
        config_path: the config file the run reads (``None``: the defaults).
        config_text: the resolved config the run will write as ``out/config.yaml``.

    Yields:
        ``out`` as a ``Path``.

    Raises:
        OutputError: ``out`` is a file, under a file or not writable; another run holds it; or its ``config.yaml``
            is a file fedsered must not overwrite.
    """
    out = Path(out)
    created = _ensure_folder(out)
    _check_config_file(out, config_path=config_path, config_text=config_text)  # a refusal leaves no lock file
    fd = _lock(out)
    ok = False
    try:
        (out / RESULTS_FILE).unlink(missing_ok=True)
        yield out
        ok = True
    finally:
        with suppress(OSError):
            os.ftruncate(fd, 0)
        if not ok and created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
            with suppress(OSError):  # a run that failed before writing anything leaves no folder behind
                (out / LOCK_FILE).unlink()
                out.rmdir()
        os.close(fd)  # releases the lock
