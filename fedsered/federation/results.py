"""Typed results of federated runs: one pipeline's (``PipelineResult``) and a comparison's (``ComparisonResult``).

``to_json()`` gives what ``results.json`` holds; ``from_json`` reads it back (without the live model and sets), so the
CLI prints from the same object whichever process ran the server. ``comparison`` derives the two figures a reader
compares synthetic sharing by: its UAR as a fraction of pooled, and the bytes FedAvg uploads to come within
``UAR_TOLERANCE`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from fedsered.distill.synthetic_set import SyntheticSet
from fedsered.federation.records import ClientRecord, bytes_to_reach

UAR_TOLERANCE = 0.02
"""FedAvg 'reaches' synthetic sharing's UAR when it comes within this many UAR points."""


@dataclass(frozen=True)
class RoundRecord:
    """The global model after one round: ``uar``, ``wa`` on the test speakers, ``bytes_up`` that round, and the
    server's wall and CPU seconds for aggregating, training and scoring."""

    round: int
    uar: float
    wa: float
    bytes_up: int
    server_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "uar": self.uar, "wa": self.wa, "bytes_up": self.bytes_up,
                "server_seconds": self.server_seconds, "server_cpu_seconds": self.server_cpu_seconds}  # fmt: skip


@dataclass
class PipelineResult:
    """One pipeline's run.

    Attributes:
        pipeline: its name.
        uar, wa, confusion: the final global model on the held-out test speakers.
        clients: one record per client and round.
        rounds: one record per round.
        seconds: wall seconds of the run.
        model: the final global model (not in JSON; ``None`` when read back from JSON).
        shared: the aggregated shared set of the last round (``None`` for FedAvg, pooled, or read back from JSON).
        sets: client id → the set it shared in the last round (not in JSON).
        releases: client id → its accepted merf release of the last round, ``ClientStatistics.release()`` (server
            synthesis only; not in JSON).
        reference: the simple baseline fitted on the same examples as the global model (``server.linear_reference``:
            ``name``, ``uar``, ``wa``, ...), or ``None`` (FedAvg: the server holds no examples; or turned off).
    """

    pipeline: str
    uar: float
    wa: float
    confusion: list[list[int]]
    clients: list[ClientRecord]
    rounds: list[RoundRecord]
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    shared: SyntheticSet | None = field(default=None, repr=False, compare=False)
    sets: dict[str, SyntheticSet] = field(default_factory=dict, repr=False, compare=False)
    releases: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    reference: dict[str, Any] | None = None

    @property
    def bytes_up_total(self) -> int:
        """Bytes every client uploaded over every round."""
        return int(sum(r.bytes_up for r in self.clients))

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "global_uar": self.uar, "global_wa": self.wa, "confusion": self.confusion,
            "bytes_up_total": self.bytes_up_total, "clients": [c.to_json() for c in self.clients],
            "rounds": [r.to_json() for r in self.rounds], "seconds": self.seconds, "reference": self.reference,
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PipelineResult:
        return cls(
            pipeline=str(obj["pipeline"]), uar=float(obj["global_uar"]), wa=float(obj["global_wa"]),
            confusion=obj["confusion"], clients=[ClientRecord(**c) for c in obj["clients"]],
            rounds=[RoundRecord(**r) for r in obj["rounds"]], seconds=float(obj.get("seconds", 0.0)),
            reference=obj.get("reference"),
        )  # fmt: skip


def comparison(main: PipelineResult, baselines: dict[str, PipelineResult]) -> dict[str, Any]:
    """Synthetic sharing against pooled (UAR fraction) and FedAvg (bytes to come within ``UAR_TOLERANCE``)."""
    out: dict[str, Any] = {"uar_tolerance": UAR_TOLERANCE}
    if "pooled" in baselines:
        pooled = baselines["pooled"].uar
        out["uar_fraction_of_pooled"] = main.uar / pooled if pooled > 0 else None
    if "fedavg" in baselines:
        fa = baselines["fedavg"]
        reach = bytes_to_reach([r.uar for r in fa.rounds], [r.bytes_up for r in fa.rounds], main.uar - UAR_TOLERANCE)
        out["fedavg_bytes_to_reach"] = reach
        out["fedavg_reached"] = reach is not None
        out["fedavg_bytes_ratio"] = (reach if reach is not None else fa.bytes_up_total) / max(main.bytes_up_total, 1)
        out["fedavg_bytes_ratio_is_lower_bound"] = reach is None
        out["fedavg_rounds_run"] = len(fa.rounds)
    return out


@dataclass
class ComparisonResult:
    """Synthetic sharing and its baselines over one federation (what ``fedsered simulate`` reports).

    Attributes:
        main: synthetic sharing.
        baselines: name → result, in ``federation.baselines`` order.
        facts: the run's settings and timings (``mode``, ``method``, ``ipc``, ``nodes``, ``emotions``, ``n_test``,
            ``total_seconds``, ``phases``).
    """

    main: PipelineResult
    baselines: dict[str, PipelineResult]
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.main.to_json(), **self.facts,
            "baselines": {k: v.to_json() for k, v in self.baselines.items()},
            "comparison": comparison(self.main, self.baselines),
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ComparisonResult:
        main = PipelineResult.from_json(obj)
        skip = {*main.to_json(), "baselines", "comparison"}
        return cls(
            main=main, baselines={k: PipelineResult.from_json(v) for k, v in obj["baselines"].items()},
            facts={k: v for k, v in obj.items() if k not in skip},
        )  # fmt: skip
