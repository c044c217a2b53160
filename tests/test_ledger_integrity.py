"""The ledger proves its own history: an edited, emptied, deleted, moved or old ledger is refused, with one line
naming the client and the file, before any release; a ledger ahead of its head (a crash between the two writes) is
accepted and its head repaired."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedsered.errors import PrivacyBudgetError
from fedsered.privacy.ledger import PrivacyLedger, entry_hash, head_path
from fedsered.privacy.release import PrivacyRelease

R1 = PrivacyRelease(mechanism="dp_dm", noise_multiplier=2.0, sample_rate=0.1, steps=100)
BUDGET = 1000.0  # large: every refusal below is about integrity, not the budget


def ledger(path: Path, client: str = "client-3") -> PrivacyLedger:
    return PrivacyLedger(path, budget_epsilon=BUDGET, delta=1e-5, accountant="rdp", client_id=client)


@pytest.fixture
def spent(tmp_path: Path) -> Path:
    """A ledger with two releases."""
    path = tmp_path / "client-3" / "synthetic.json"
    lg = ledger(path)
    lg.record(R1, task="t1")
    lg.record(R1, task="t2")
    return path


def edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def refused(path: Path, match: str, client: str = "client-3") -> None:
    with pytest.raises(PrivacyBudgetError, match=match) as info:
        ledger(path, client)
    msg = str(info.value)
    assert "\n" not in msg and f"client {client}" in msg and str(path) in msg and "cannot prove its history" in msg


def test_an_intact_ledger_loads_and_knows_its_tasks(spent: Path) -> None:
    lg = ledger(spent)
    assert lg.releases == [R1, R1] and lg.recorded("t2") == R1 and lg.recorded("t3") is None
    head = json.loads(head_path(spent).read_text())
    assert head == {"count": 2, "head": json.loads(spent.read_text())["releases"][-1]["hash"]}


def test_an_edited_noise_multiplier_is_refused(spent: Path) -> None:
    def larger_sigma(doc: dict) -> None:  # a larger sigma would make the spent epsilon look smaller
        doc["releases"][0]["noise_multiplier"] = 20.0

    edit(spent, larger_sigma)
    refused(spent, r"releases\[0\] does not match its checksum chain")


def test_an_edit_with_recomputed_hashes_is_refused_by_the_head(spent: Path) -> None:
    def rechain(doc: dict) -> None:
        doc["releases"][1]["noise_multiplier"] = 20.0
        doc["releases"][1]["hash"] = entry_hash(doc["releases"][1])

    edit(spent, rechain)
    refused(spent, "release 2 is not the one synthetic.json.head recorded")


def test_emptied_releases_are_refused(spent: Path) -> None:
    edit(spent, lambda doc: doc.update(releases=[]))
    refused(spent, "records 2 release.s., the file holds 0: releases were lost")


def test_a_dropped_last_release_is_refused(spent: Path) -> None:
    edit(spent, lambda doc: doc["releases"].pop())
    refused(spent, "records 2 release.s., the file holds 1")


def test_a_deleted_ledger_is_refused_before_a_release(spent: Path) -> None:
    spent.unlink()
    refused(spent, "the file is missing, but synthetic.json.head records 2 release")


def test_a_deleted_head_is_refused(spent: Path) -> None:
    head_path(spent).unlink()
    refused(spent, "synthetic.json.head is missing while the file holds 2 release")


def test_a_ledger_moved_to_another_client_is_refused(spent: Path) -> None:
    refused(spent, r"releases\[0\] does not match", client="client-4")


def test_a_version_1_ledger_is_refused(spent: Path) -> None:
    edit(spent, lambda doc: doc.update(version=1))
    refused(spent, "version 1 without a checksum chain")


def test_a_ledger_ahead_of_its_head_is_accepted_and_the_head_repaired(spent: Path) -> None:
    """The process died after the file was written and before its head: the file is the later, larger spend."""
    head = head_path(spent)
    doc = json.loads(spent.read_text())
    head.write_text(json.dumps({"count": 1, "head": doc["releases"][0]["hash"]}))
    assert ledger(spent).releases == [R1, R1]
    assert json.loads(head.read_text())["count"] == 2


def test_a_fresh_ledger_and_the_head_written_first(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.json"
    lg = ledger(path)
    assert lg.releases == [] and not path.exists() and not head_path(path).exists()
    lg.record(R1)
    assert json.loads(head_path(path).read_text())["count"] == 1
    assert ledger(path).releases == [R1]
