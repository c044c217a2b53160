"""The server's public corpus: labelled utterances of nobody in the federation, for a data-independent start.

``load_public(cfg)`` reads ``federation.public_data`` — the embedded generator drawn at ``federation.public_seed``
(other speakers than the run's: the schema refuses the run seed), or a corpus folder of any supported layout — and
returns its log-Mel features under the run's feature settings and normalisation (the fixed, data-independent one by
default; under ``train_speakers`` the public corpus's own statistics, since the server has nobody else's).
``per_class_draw`` picks the examples of each class without replacement. No client's data is read here, so a
synthetic set started from these examples is as independent of every client as one started from noise, and fitting
it to DP releases stays post-processing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedsered.config import Config
from fedsered.data.dataset import load_audio, normaliser_for
from fedsered.data.features import extract_features, normalise
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError


def load_public(cfg: Config) -> FeatureSet:
    """The features of ``cfg.federation.public_data`` (all of its speakers).

    Args:
        cfg: the run's config (``federation.public_data`` and ``public_seed``, ``features``).

    Returns:
        The normalised public ``FeatureSet``.

    Raises:
        DataError: no public corpus is configured, or it cannot be read (the message names ``federation.public_data``).
    """
    public = cfg.federation.public_data
    if public is None:
        raise DataError("federation.public_data: not set (server_start public needs the server's public corpus)")
    pcfg = cfg.model_copy(update={"data": public, "seed": cfg.federation.public_seed})
    try:
        feats = extract_features(load_audio(pcfg), cfg.features)
    except DataError as exc:
        raise DataError(f"federation.public_data: {exc}") from None
    norm = normaliser_for(cfg.features, feats.x)
    return FeatureSet(normalise(feats.x, norm), feats.y, feats.speaker, feats.utterance_id)


def per_class_draw(
    y: np.ndarray, *, classes: Iterable[int], per_class: int, gen: np.random.Generator, source: str
) -> np.ndarray:
    """Indices of ``per_class`` examples of each of ``classes`` (in that order), drawn without replacement.

    Raises:
        DataError: a class has fewer than ``per_class`` examples (names ``source`` and the class).
    """
    picks = []
    for c in classes:
        pool = np.flatnonzero(y == c)
        if len(pool) < per_class:
            raise DataError(f"{source}: class {c} has {len(pool)} examples, {per_class} are needed")
        picks.append(gen.choice(pool, size=per_class, replace=False))
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
