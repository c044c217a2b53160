"""Canaries: utterances made easy to detect — mislabelled or out-of-distribution — and optionally duplicated, for DP
auditing (their membership is what an ε lower bound is certified on; Jagielski et al. 2020, Nasr et al. 2021).

Canaries are built from population utterances (speakers in no run), so their only way into a run is the audit's
membership plan; their ids start with ``canary/``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fedsered.data.types import FeatureSet
from fedsered.errors import ConfigError
from fedsered.seeding import rng

CanaryKind = Literal["mislabel", "ood"]


def make_canaries(source: FeatureSet, *, n: int, kind: CanaryKind, n_classes: int, seed: int) -> FeatureSet:
    """``n`` canaries from distinct utterances of ``source``.

    Args:
        source: population utterances to build them from.
        n: how many.
        kind: ``"mislabel"`` keeps the features and gives each a wrong label (uniform over the other classes);
            ``"ood"`` flips the spectrogram along frequency (low bands become high: a voice unlike any in the corpus,
            at the data's own scale) and draws a random label.
        n_classes: number of classes.
        seed: the audit seed.

    Returns:
        The canaries (``utterance_id`` ``canary/<kind>/<source id>``).

    Raises:
        ConfigError: more canaries than source utterances, or an unknown kind.
    """
    if kind not in ("mislabel", "ood"):
        raise ConfigError(f"audit.canary_kind: expected mislabel or ood, got {kind!r}")
    if not 0 <= n <= len(source):
        raise ConfigError(f"audit.canaries: {n} canaries need as many population utterances, only {len(source)}")
    g = rng(seed, f"audit/canaries/{kind}")
    pick = np.sort(g.choice(len(source), size=n, replace=False))
    base = source.subset(pick)
    if kind == "mislabel":
        y = (base.y + g.integers(1, n_classes, size=n)) % n_classes
        x = base.x.copy()
    else:
        y = g.integers(0, n_classes, size=n)
        x = np.ascontiguousarray(base.x[:, :, ::-1, :])
    ids = np.array([f"canary/{kind}/{u}" for u in base.utterance_id])
    return FeatureSet(x.astype(np.float32), y.astype(np.int64), base.speaker.copy(), ids)


def repeat(data: FeatureSet, copies: int) -> FeatureSet:
    """Each example ``copies`` times (a canary inserted repeatedly into a client's data)."""
    if copies < 1:
        raise ConfigError(f"audit.canary_copies: must be >= 1, got {copies}")
    return data.subset(np.repeat(np.arange(len(data)), copies))
