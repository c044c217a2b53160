"""Progress in a log (stderr not a terminal): plain one-line updates with elapsed and remaining time, at most one per
10 % of a stage (or 15 s), the remaining time taken from the work done in this process (not a resumed run's)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from fedsered import cli


def test_log_lines_every_tenth_with_remaining_time(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    lines = cli._LogLines(clock=lambda: now[0])
    for done in range(0, 101):  # 100 units of 2 s each
        lines("audit runs", done, 100)
        now[0] += 2.0
    out = capsys.readouterr().err.strip().splitlines()
    assert out[0] == "audit runs: 0/100, 0s elapsed"
    assert out[1] == "audit runs: 8/100, 16s elapsed, ~3m04s left"  # 15 s since the last line
    assert "audit runs: 10/100, 20s elapsed, ~3m00s left" in out
    assert out[-1] == "audit runs: 100/100, 3m20s elapsed"
    assert 11 <= len(out) <= 25


def test_log_lines_rate_ignores_work_found_finished(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    lines = cli._LogLines(clock=lambda: now[0])
    lines("seeds", 3, 5)  # a resumed run: 3 seeds were already done
    now[0] = 60.0
    lines("seeds", 4, 5)
    out = capsys.readouterr().err.strip().splitlines()
    assert out == ["seeds: 3/5, 0s elapsed", "seeds: 4/5, 1m00s elapsed, ~1m00s left"]


def test_tables_in_a_log_are_laid_out_wide_unless_columns_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run > log``: rich would lay a table out at 80 columns and cut its names to "…"."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("COLUMNS", raising=False)
    assert cli._width(io.StringIO()) == cli.LOG_WIDTH and cli._width(Tty()) is None
    monkeypatch.setenv("COLUMNS", "100")
    assert cli._width(io.StringIO()) is None  # the user's width wins
    monkeypatch.delenv("COLUMNS")
    table = Table("pipeline", *[f"metric {k}" for k in range(8)])  # the shape of simulate's table over seeds
    table.add_row("synthetic sharing", *["+0.617 ± 0.060"] * 7, "2,914,165")

    def laid_out(width: int | None) -> str:
        log = io.StringIO()
        Console(file=log, width=width).print(table)
        return log.getvalue()

    assert "synthetic sharing" not in laid_out(80)  # rich's width for a file: names cut to "synth…"
    wide = laid_out(cli._width(io.StringIO()))
    assert "synthetic sharing" in wide and "+0.617 ± 0.060" in wide and "…" not in wide
