"""What a round records about each client, the quorum rule, and the bytes-to-target comparison.

Statuses: ``ok`` (reply accepted), ``rejected`` (reply failed validation: malformed, non-finite, oversized),
``refused`` (the client declined: its budget or policy), ``failed`` (the client raised), ``timeout`` (no reply
within ``federation.round_timeout_s``), ``absent`` (its node never connected). A round proceeds when at least
``federation.min_fraction`` of the expected clients are ``ok``; otherwise ``QuorumError`` names the round and every
failed client.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fedsered.errors import FedseredError

STATUSES: tuple[str, ...] = ("ok", "rejected", "refused", "failed", "timeout", "absent")


class QuorumError(FedseredError):
    """Too few clients replied with a valid payload for a round to proceed."""


@dataclass(frozen=True)
class ClientRecord:
    """One client's outcome in one round (a row of ``results.json["clients"]``).

    Attributes:
        id: client id (``"client-<partition>"``).
        status: one of ``STATUSES``.
        bytes_up: bytes the client uploaded (0 unless a reply arrived).
        seconds: the client's compute time for the reply (wall seconds measured on the client).
        peak_rss_mb: peak resident memory of the process that ran the client.
        privacy: the client's privacy object (ε, δ, accountant, releases) or ``None`` without DP.
        error: why the reply was not used (``None`` when ``ok``).
        round: the round (1-based).
        cpu_seconds: the client's CPU seconds for the reply (its process).
        setup_seconds: seconds the client spent loading its data for this reply (0 when already loaded).
        setup_cpu_seconds: CPU seconds of that loading.
        node: the Ray node that ran the client (a simulation; ``None`` otherwise) — infrastructure telemetry, not
            private data.
    """

    id: str
    status: str
    bytes_up: int = 0
    seconds: float | None = None
    peak_rss_mb: float | None = None
    privacy: dict[str, Any] | None = None
    error: str | None = None
    round: int = 1
    cpu_seconds: float | None = None
    setup_seconds: float | None = None
    setup_cpu_seconds: float | None = None
    node: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ClientRecord.status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def required_replies(expected: int, min_fraction: float) -> int:
    """Smallest number of valid replies that lets a round of ``expected`` clients proceed (at least 1)."""
    return max(1, math.ceil(expected * min_fraction - 1e-9))


def check_quorum(records: Sequence[ClientRecord], *, expected: int, min_fraction: float, round_: int) -> None:
    """Raise ``QuorumError`` when fewer than ``required_replies`` of ``records`` are ``ok``."""
    ok = sum(r.status == "ok" for r in records)
    need = required_replies(expected, min_fraction)
    if ok < need:
        bad = "; ".join(f"{r.id}: {r.status} ({r.error})" for r in records if r.status != "ok")
        raise QuorumError(
            f"round {round_}: only {ok} of {expected} clients returned a valid payload, "
            f"federation.min_fraction={min_fraction} needs {need}" + (f" — {bad}" if bad else "")
        )


def bytes_to_reach(uar_by_round: Sequence[float], bytes_by_round: Sequence[int], target: float) -> int | None:
    """Cumulative bytes uploaded up to the first round whose UAR reaches ``target`` (``None`` if none does)."""
    total = 0
    for uar, b in zip(uar_by_round, bytes_by_round, strict=True):
        total += int(b)
        if uar >= target:
            return total
    return None
