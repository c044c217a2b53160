"""A device's own recordings: what a real SuperNode trains on, built from its local folder and nothing else.

``node_data(cfg, path)`` reads every clip under ``path`` in the corpus layout of ``data.corpus`` (RAVDESS folders, a
manifest CSV, ...), labels them with the run's ``data.emotions`` / ``label_map``, extracts log-Mel features with the
run's settings and applies the fixed, data-independent normalisation — so the device needs no statistic of anyone
else's data, and never sees another client's recordings or the test speakers.
"""

from __future__ import annotations

from pathlib import Path

from fedsered.config import Config
from fedsered.data.corpora import load_corpus
from fedsered.data.dataset import normaliser_for
from fedsered.data.features import extract_features, normalise
from fedsered.data.types import FeatureSet
from fedsered.errors import DataError


def node_data(cfg: Config, path: str | Path) -> FeatureSet:
    """The features of one device's own recordings.

    Args:
        cfg: the run config (``data`` for the layout and labels, ``features`` for the features).
        path: the device's data folder (or manifest CSV), from its own node config.

    Returns:
        Every usable clip under ``path`` as a normalised ``FeatureSet``.

    Raises:
        DataError: the run uses the embedded corpus or a pooled normalisation (neither exists on a device), or the
            folder holds no usable clip.
    """
    if cfg.data.corpus == "embedded":
        raise DataError(f"node data {path}: data.corpus is embedded (generated, not recorded); a device with its own "
                        "data folder needs the run's corpus layout, e.g. data.corpus=ravdess or manifest")  # fmt: skip
    if cfg.features.normalise != "fixed":
        raise DataError(f"node data {path}: features.normalise={cfg.features.normalise} pools statistics of every "
                        "client; a device can only apply the fixed normalisation")  # fmt: skip
    data_cfg = cfg.data.model_copy(update={"path": str(path)})
    corpus = load_corpus(data_cfg, sample_rate=cfg.features.sample_rate)
    feats = extract_features(corpus, cfg.features)
    norm = normaliser_for(cfg.features, feats.x)
    return FeatureSet(normalise(feats.x, norm), feats.y, feats.speaker, feats.utterance_id)
