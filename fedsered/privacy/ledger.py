"""The privacy ledger of one client: every release it made, persisted atomically, composed by the accountant.

The ledger file is JSON::

    {"version": 1, "budget_epsilon": float, "delta": float, "accountant": "rdp"|"prv",
     "epsilon": float,                      # composition of every release below (derived, for readers)
     "releases": [{"mechanism", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "accountant",
                   "cumulative_epsilon", "time"}, ...]}

``epsilon`` of a release entry is that release alone; ``cumulative_epsilon`` the accountant's composition of every
release up to it (never a sum of ε's). ``record`` checks the budget first and refuses (``PrivacyBudgetError``, file
untouched) a release that would push the composition past ``budget_epsilon``; the file is rewritten through
``atomic_write_json``, so a crash mid-write leaves the previous, whole file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fedsered.errors import PayloadError, PrivacyBudgetError
from fedsered.io import atomic_write_json
from fedsered.privacy.accountant import epsilon_of, privacy_object
from fedsered.privacy.release import PrivacyRelease

LEDGER_VERSION = 1


class PrivacyLedger:
    """A client's releases and budget, backed by one JSON file (loaded when it exists).

    Args:
        path: the ledger file.
        budget_epsilon: total ε the client allows over all releases.
        delta: the client's δ (every release is accounted at it).
        accountant: ``"rdp"`` or ``"prv"``.
        client_id: named in error messages.

    Raises:
        PayloadError: an existing file is not a ledger, or was written with another δ or accountant.
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
        self.budget_epsilon = float(budget_epsilon)
        self.delta = float(delta)
        self.accountant = accountant
        self.client_id = client_id
        self._entries: list[dict[str, Any]] = []
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
            entries = list(obj["releases"])
            delta, accountant = float(obj["delta"]), str(obj["accountant"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PayloadError(f"{self.path}: not a privacy ledger ({exc.__class__.__name__}: {exc})") from None
        if delta != self.delta or accountant != self.accountant:
            raise PayloadError(
                f"{self.path}: ledger was kept at delta={delta:g} with {accountant}; this run asks "
                f"delta={self.delta:g} with {self.accountant} (releases compose only at one delta and accountant)"
            )
        for i, e in enumerate(entries):
            PrivacyRelease.from_json(e, source=f"{self.path}: releases[{i}]")
        self._entries = entries

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

    def record(self, release: PrivacyRelease) -> float:
        """Check ``release`` against the budget, then append it and rewrite the file atomically.

        Returns:
            The composed ε after the release.
        """
        after = self.check(release)
        entry = {
            **release.to_json(),
            "delta": self.delta,
            "epsilon": epsilon_of([release], delta=self.delta, accountant=self.accountant),
            "accountant": self.accountant,
            "cumulative_epsilon": after,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        entries = [*self._entries, entry]
        atomic_write_json(self.path, self._document(entries, after))
        self._entries = entries
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
