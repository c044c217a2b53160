"""``PrivacyRelease``: one differentially private computation on a client's data, as the accountant needs it.

A release is what the ledger stores and the accountant composes: the mechanism's name, its noise multiplier σ
(Gaussian noise of std σ·C on a sum whose per-example contribution is clipped to norm C), its sampling rate q
(Poisson: each example joins each step independently with probability q) and its number of steps. ε is derived
from releases by the accountant, never typed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedsered.errors import PayloadError


@dataclass(frozen=True)
class PrivacyRelease:
    """One accounted DP computation.

    Attributes:
        mechanism: what ran (``"dp_gm"``, ``"dp_dm"``, ``"dp_sgd_experts"``, ``"dp_sgd"``...).
        noise_multiplier: σ (noise std over the clipping bound).
        sample_rate: q, the Poisson sampling probability of each example per step (1.0 = the full data).
        steps: number of noisy steps at that σ and q.
    """

    mechanism: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be finite and > 0, got {self.noise_multiplier}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def to_json(self) -> dict[str, Any]:
        """``{"mechanism", "noise_multiplier", "sample_rate", "steps"}``."""
        return {
            "mechanism": self.mechanism,
            "noise_multiplier": float(self.noise_multiplier),
            "sample_rate": float(self.sample_rate),
            "steps": int(self.steps),
        }

    @classmethod
    def from_json(cls, obj: Any, *, source: str = "release") -> PrivacyRelease:
        """Parse ``to_json``'s dict; a malformed entry raises ``PayloadError`` naming ``source``."""
        try:
            return cls(
                mechanism=str(obj.get("mechanism", "unknown")),
                noise_multiplier=float(obj["noise_multiplier"]),
                sample_rate=float(obj["sample_rate"]),
                steps=int(obj["steps"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"{source}: not a privacy release ({exc})") from None
