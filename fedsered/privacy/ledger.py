"""The privacy ledger of one client: every release it made, persisted atomically, composed by the accountant, and
able to tell when its own history was edited or lost.

The ledger file is JSON::

    {"version": 2, "client_id": str|null, "budget_epsilon": float, "delta": float, "accountant": "rdp"|"prv",
     "epsilon": float,                      # composition of every release below (derived, for readers)
     "releases": [{"mechanism", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "accountant",
                   "cumulative_epsilon", "time", "task", "prev", "hash"}, ...]}

``epsilon`` of a release entry is that release alone; ``cumulative_epsilon`` the accountant's composition of every
release up to it (never a sum of ε's); ``task`` the key of the task the release answered (``None`` when recorded
outside a federation; ``fedsered.federation.reply_store`` looks releases up by it). ``record`` checks the budget
first and refuses (``PrivacyBudgetError``, file untouched) a release that would push the composition past
``budget_epsilon``; the file is rewritten through ``atomic_write_json``, so a crash mid-write leaves the previous,
whole file.

**Integrity.** Every entry carries ``prev`` (the previous entry's ``hash``; for the first, a genesis digest of the
ledger's client id, δ and accountant) and ``hash``, the SHA-256 of the entry's canonical JSON (sorted keys, no
spaces) without ``hash``: a checksum chain. Beside the file the client keeps ``<file>.head`` (``{"count", "head"}``:
how many entries the chain had and the last ``hash``), written before the ledger file first appears and after every
release. Loading refuses (``PrivacyBudgetError``: one line naming the client and the file; the client then refuses
every release of that ledger, before any work) a ledger that cannot prove its history:

- an entry edited in place (``noise_multiplier``, ``steps``, ``epsilon``, ...): its hash no longer matches;
- entries removed or ``releases`` emptied: the head counts more entries than the file holds, or its hash is not the
  file's entry at that count (also when every hash was recomputed after an edit);
- the ledger file deleted while its head records releases; the head deleted (or unreadable) while the file holds
  releases; a ledger copied to another client (the genesis names the client; a file kept at another δ or accountant
  is refused before, as a ``PayloadError``, and so is a file that is not a ledger at all);
- a ledger written by an older fedsered (version 1, no chain): its history cannot be checked.

A ledger ahead of its head (the process died after writing the file and before the head) is sound — extra entries
only make the client spend more — and the head is brought up to date.

What it cannot detect: the hashes are not keyed, so whoever can write both files can rewrite both consistently,
and deleting both (e.g. the whole ``<ledger dir>/<client>/`` folder) leaves a fresh, empty ledger. The chain
protects a client against accidents, a careless edit and the loss of one file — not against someone who controls
its storage; a client cannot be protected against itself. Keep the ledger folder where it is backed up.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, NoReturn

from fedsered.errors import PayloadError, PrivacyBudgetError
from fedsered.io import atomic_write_json
from fedsered.privacy.accountant import epsilon_of, privacy_object
from fedsered.privacy.release import PrivacyRelease

LEDGER_VERSION = 2
"""Version 2 added the checksum chain and the head file."""


def canonical_hash(obj: Any) -> str:
    """SHA-256 hex digest of ``obj``'s canonical JSON (sorted keys, no whitespace, NaN refused)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """The ``hash`` of a ledger entry: ``canonical_hash`` of the entry without its ``hash`` field."""
    return canonical_hash({k: v for k, v in entry.items() if k != "hash"})


def head_path(path: str | Path) -> Path:
    """The head file kept beside the ledger ``path`` (``<file>.head``)."""
    path = Path(path)
    return path.with_name(path.name + ".head")


class PrivacyLedger:
    """A client's releases and budget, backed by one JSON file (loaded and verified when it exists) and its head.

    Args:
        path: the ledger file.
        budget_epsilon: total ε the client allows over all releases.
        delta: the client's δ (every release is accounted at it).
        accountant: ``"rdp"`` or ``"prv"``.
        client_id: named in error messages; part of the chain's genesis.

    Raises:
        PayloadError: an existing file is not a ledger, or was written with another δ or accountant.
        PrivacyBudgetError: the ledger cannot prove its history (module docstring): no release is possible.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        budget_epsilon: float,
        delta: float,
        accountant: str,
        client_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.head_path = head_path(self.path)
        self.budget_epsilon = float(budget_epsilon)
        self.delta = float(delta)
        self.accountant = accountant
        self.client_id = client_id
        self._entries: list[dict[str, Any]] = []
        head = self._read_head()
        if self.path.exists():
            self._load()
            self._verify(head)
        elif head is not None and head[0] > 0:
            self._refuse(f"the file is missing, but {self.head_path.name} records {head[0]} release(s)")

    def _refuse(self, why: str) -> NoReturn:
        raise PrivacyBudgetError(
            f"{self._who()}: ledger {self.path} cannot prove its history ({why}); every release from it is refused "
            f"— restore the ledger and {self.head_path.name}, or start a new federation with a new ledger folder"
        )

    def _read_head(self) -> tuple[int, str] | None:
        if not self.head_path.exists():
            return None
        try:
            obj = json.loads(self.head_path.read_text(encoding="utf-8"))
            count, head = obj["count"], obj["head"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0 or not isinstance(head, str):
                raise ValueError("count must be an integer >= 0 and head a string")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._refuse(f"{self.head_path.name} is unreadable: {exc.__class__.__name__}")
        return count, head

    def _genesis(self) -> str:
        return canonical_hash({"ledger": "fedsered", "version": LEDGER_VERSION, "client_id": self.client_id,
                               "delta": self.delta, "accountant": self.accountant})  # fmt: skip

    def _load(self) -> None:
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
            entries = list(obj["releases"])
            delta, accountant = float(obj["delta"]), str(obj["accountant"])
            version = obj.get("version")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayloadError(f"{self.path}: not a privacy ledger ({exc.__class__.__name__}: {exc})") from None
        if delta != self.delta or accountant != self.accountant:
            raise PayloadError(
                f"{self.path}: ledger was kept at delta={delta:g} with {accountant}; this run asks "
                f"delta={self.delta:g} with {self.accountant} (releases compose only at one delta and accountant)"
            )
        if version != LEDGER_VERSION:
            self._refuse(f"version {version!r} without a checksum chain; this fedsered keeps version {LEDGER_VERSION}")
        for i, e in enumerate(entries):
            PrivacyRelease.from_json(e, source=f"{self.path}: releases[{i}]")
        self._entries = entries

    def _verify(self, head: tuple[int, str] | None) -> None:
        prev = self._genesis()
        for i, e in enumerate(self._entries):
            if not isinstance(e, dict) or e.get("prev") != prev or e.get("hash") != entry_hash(e):
                self._refuse(f"releases[{i}] does not match its checksum chain: edited, moved or reordered")
            prev = e["hash"]
        n = len(self._entries)
        if head is None:
            if n:
                self._refuse(f"{self.head_path.name} is missing while the file holds {n} release(s)")
            return
        count, digest = head
        if count > n:
            self._refuse(f"{self.head_path.name} records {count} release(s), the file holds {n}: releases were lost")
        at = self._entries[count - 1]["hash"] if count else self._genesis()
        if at != digest:
            self._refuse(f"release {count} is not the one {self.head_path.name} recorded")
        if count < n:  # the process died between writing the file and its head: the file is the later state
            self._write_head(n, prev)

    def _write_head(self, count: int, digest: str) -> None:
        atomic_write_json(self.head_path, {"count": count, "head": digest})

    @property
    def releases(self) -> list[PrivacyRelease]:
        """Every recorded release, oldest first."""
        return [PrivacyRelease.from_json(e, source=str(self.path)) for e in self._entries]

    @property
    def epsilon(self) -> float:
        """The accountant's composition of every recorded release at the ledger's δ."""
        return epsilon_of(self.releases, delta=self.delta, accountant=self.accountant)

    def _who(self) -> str:
        return f"client {self.client_id}" if self.client_id is not None else str(self.path)

    def check(self, release: PrivacyRelease) -> float:
        """The composed ε after ``release``; raises ``PrivacyBudgetError`` when it would exceed the budget."""
        after = epsilon_of([*self.releases, release], delta=self.delta, accountant=self.accountant)
        if after > self.budget_epsilon:
            raise PrivacyBudgetError(
                f"{self._who()}: release refused ({release.mechanism}, sigma={release.noise_multiplier:.4g}, "
                f"q={release.sample_rate:.4g}, steps={release.steps}): epsilon would reach {after:.3f} > budget "
                f"{self.budget_epsilon:g} (spent {self.epsilon:.3f} at delta={self.delta:g}); nothing was shared"
            )
        return after

    def recorded(self, task: str) -> PrivacyRelease | None:
        """The release recorded for the task keyed ``task``, if any."""
        for e in self._entries:
            if e.get("task") == task:
                return PrivacyRelease.from_json(e, source=str(self.path))
        return None

    def record(self, release: PrivacyRelease, *, task: str | None = None) -> float:
        """Check ``release`` against the budget, then append it (chained) and rewrite the file and its head.

        Args:
            release: the release made.
            task: the key of the task it answered (``fedsered.federation.reply_store.task_key``).

        Returns:
            The composed ε after the release.
        """
        after = self.check(release)
        if not self.head_path.exists():  # the head exists before the file does: a missing head is then a loss
            self._write_head(0, self._genesis())
        prev = self._entries[-1]["hash"] if self._entries else self._genesis()
        entry: dict[str, Any] = {
            **release.to_json(),
            "delta": self.delta,
            "epsilon": epsilon_of([release], delta=self.delta, accountant=self.accountant),
            "accountant": self.accountant,
            "cumulative_epsilon": after,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "task": task,
            "prev": prev,
        }
        entry["hash"] = entry_hash(entry)
        entries = [*self._entries, entry]
        atomic_write_json(self.path, self._document(entries, after))
        self._entries = entries
        self._write_head(len(entries), entry["hash"])
        return after

    def _document(self, entries: list[dict[str, Any]], epsilon: float) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "client_id": self.client_id,
            "budget_epsilon": self.budget_epsilon,
            "delta": self.delta,
            "accountant": self.accountant,
            "epsilon": epsilon,
            "releases": entries,
        }

    def privacy_object(self) -> dict[str, Any]:
        """The output contract's ``privacy`` object over every recorded release."""
        return privacy_object(self.releases, delta=self.delta, accountant=self.accountant)
