"""A client that files its replies never releases twice for one task: a repeated task gets the filed reply (same
arrays, no new ledger entry); a crash between filing and recording is recorded once on the retry; a recorded release
whose filed reply is gone is refused; another task (round, seed, state) is new work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_distill import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_dp_trust import N_CLASSES, _task, toy

import fedsered.federation.client as client_module
from fedsered.config import PrivacyConfig
from fedsered.federation.client import LocalClient, run_task
from fedsered.federation.protocol import Reply
from fedsered.federation.reply_store import DeferredLedger

DP = ("privacy.enabled=true", "privacy.target_epsilon=4", "privacy.budget_epsilon=100")


def client(tmp: Path) -> LocalClient:
    return LocalClient("client-0", toy(30, 3), N_CLASSES, tmp / "ledgers", PrivacyConfig(**{
        "enabled": True, "target_epsilon": 4.0, "budget_epsilon": 100.0, "share": ["synthetic", "dp_fedavg"]}),
        keep_replies=True)  # fmt: skip


def entries(tmp: Path, pipeline: str = "synthetic") -> list[dict]:
    return json.loads((tmp / "ledgers" / f"{pipeline}.json").read_text())["releases"]


def same(a: Reply, b: Reply) -> bool:
    return (
        a.meta == b.meta
        and a.arrays.keys() == b.arrays.keys()
        and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    )


@pytest.mark.parametrize(("pipeline", "kind"), [("synthetic", "share"), ("dp_fedavg", "update")])
def test_a_repeated_task_gets_the_filed_reply_and_no_new_release(tmp_path: Path, pipeline: str, kind: str) -> None:
    c = client(tmp_path)
    task = _task(tmp_path, *DP, pipeline=pipeline, kind=kind)
    first = run_task(task, c)
    assert first.error is None and len(entries(tmp_path, pipeline)) == 1
    again = run_task(task, c)  # secret noise: a recomputation would differ
    assert same(first, again) and len(entries(tmp_path, pipeline)) == 1
    assert entries(tmp_path, pipeline)[0]["task"] is not None
    other = run_task(_task(tmp_path, *DP, "seed=1", pipeline=pipeline, kind=kind), c)  # another task: new work
    assert other.error is None and not same(first, other) and len(entries(tmp_path, pipeline)) == 2


def test_a_crash_after_filing_records_the_release_once_on_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(tmp_path)
    task = _task(tmp_path, *DP)

    def die(self: DeferredLedger, task: str | None) -> None:
        raise KeyboardInterrupt  # the process dies after the reply is filed, before the ledger records it

    with monkeypatch.context() as m:
        m.setattr(DeferredLedger, "commit", die)
        with pytest.raises(KeyboardInterrupt):
            run_task(task, c)
    assert len(list((tmp_path / "ledgers" / "replies").glob("*.json"))) == 1
    assert not (tmp_path / "ledgers" / "synthetic.json").exists()
    calls = []
    monkeypatch.setattr(client_module, "_work", lambda *a: calls.append(a))  # no work may run on the retry
    retry = run_task(task, c)
    assert retry.error is None and calls == [] and len(entries(tmp_path)) == 1
    assert same(retry, run_task(task, c)) and len(entries(tmp_path)) == 1


def test_a_recorded_release_whose_reply_is_gone_is_not_made_again(tmp_path: Path) -> None:
    c = client(tmp_path)
    task = _task(tmp_path, *DP)
    assert run_task(task, c).error is None
    for p in (tmp_path / "ledgers" / "replies").iterdir():
        p.unlink()
    reply = run_task(task, c)
    assert reply.arrays == {} and reply.error is not None and "will not release for this task again" in reply.error
    assert len(entries(tmp_path)) == 1


def test_a_corrupt_filed_reply_is_not_sent(tmp_path: Path) -> None:
    c = client(tmp_path)
    task = _task(tmp_path, *DP)
    assert run_task(task, c).error is None
    (npz,) = (tmp_path / "ledgers" / "replies").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    reply = run_task(task, c)  # the arrays no longer match their digest: nothing sent, nothing released again
    assert reply.error is not None and "gone" in reply.error and len(entries(tmp_path)) == 1


def test_non_dp_replies_are_filed_too(tmp_path: Path) -> None:
    c = LocalClient("client-0", toy(30, 3), N_CLASSES, tmp_path / "ledgers", None, keep_replies=True)
    task = _task(tmp_path)
    first = run_task(task, c)
    assert first.error is None and same(first, run_task(task, c)) and first.metrics
    assert not (tmp_path / "ledgers" / "synthetic.json").exists()


def test_a_client_whose_data_changed_computes_afresh(tmp_path: Path) -> None:
    """The key covers the client's own data: new recordings are new work (and a new release), not the old reply."""
    c = client(tmp_path)
    task = _task(tmp_path, *DP)
    first = run_task(task, c)
    grown = LocalClient(c.client_id, toy(31, 3), N_CLASSES, c.ledger_dir, c.policy, keep_replies=True)
    again = run_task(task, grown)
    assert again.error is None and not same(first, again) and len(entries(tmp_path)) == 2
