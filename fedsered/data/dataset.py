"""The prepared dataset of a run: corpus → log-Mel features → test-speaker split → normalisation → clients.

Normalisation is fixed and data-independent by default (``features.normalise``), so a client can apply it to its own
recordings alone and nothing about anyone's data travels with it; ``train_speakers`` fits per-bin statistics on the
pooled training speakers only (never the test speakers), for centralised comparisons.

``build_dataset(config)`` is what every path (CLI, Flower clients and server, audit shadows) calls first; it is a
pure function of the config and seed (features come from the on-disk cache when present). With
``functionals=True`` it also computes the utterance functionals of the classic reference model from the same audio
(``fedsered.data.functionals``), split row for row with the log-Mel features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsered.config import Config, FeaturesConfig
from fedsered.data.corpora import corpus_summary, load_corpus
from fedsered.data.embedded import generate_embedded_corpus
from fedsered.data.features import Normaliser, extract_features, fit_normaliser, normalise
from fedsered.data.functionals import FunctionalSplits, extract_functionals
from fedsered.data.partition import client_summary, partition_clients, split_from_manifest, split_test_speakers
from fedsered.data.types import AudioCorpus, FeatureSet
from fedsered.seeding import rng

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Dataset:
    """Everything a run needs from the data layer.

    Attributes:
        emotions: label names (index = label).
        train: normalised training features (training speakers only).
        test: normalised features of the held-out test speakers.
        normaliser: the fixed normalisation, or per-mel-bin statistics fitted on ``train`` only.
        clients: one index array into ``train`` per client (``federation.num_clients``).
        summary: corpus summary (speakers, utterances per emotion, duration, skipped and excluded files).
        functionals: utterance functionals of ``train`` and ``test`` in the same row order, when asked for
            (``build_dataset(..., functionals=True)``); otherwise ``None``.
    """

    emotions: tuple[str, ...]
    train: FeatureSet
    test: FeatureSet
    normaliser: Normaliser
    clients: list[np.ndarray]
    summary: dict[str, Any]
    functionals: FunctionalSplits | None = None

    @property
    def n_classes(self) -> int:
        return len(self.emotions)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, m, t = self.test.x.shape
        return (c, m, t)

    def client(self, k: int) -> FeatureSet:
        """The private training data of client ``k``."""
        return self.train.subset(self.clients[k])

    def client_table(self) -> list[dict[str, Any]]:
        return client_summary(self.clients, labels=self.train.y, speakers=self.train.speaker, n_classes=self.n_classes)


def normaliser_for(cfg: FeaturesConfig, x_train: np.ndarray) -> Normaliser:
    """The run's normalisation: the fixed, data-independent one (``features.normalise: fixed``, the default: a client
    can apply it alone and it tells nobody anything), or per-mel-bin statistics of the pooled training speakers."""
    if cfg.normalise == "fixed":
        shape = (1, cfg.n_mels, 1)
        return Normaliser(mean=np.full(shape, cfg.db_offset, np.float32), std=np.full(shape, cfg.db_scale, np.float32))
    return fit_normaliser(x_train)


def load_audio(cfg: Config, *, progress: Progress | None = None) -> AudioCorpus:
    """The corpus the config names, as mono clips at the feature sample rate."""
    if cfg.data.corpus == "embedded":
        return generate_embedded_corpus(
            cfg.data.embedded, emotions=cfg.data.emotions, sample_rate=cfg.features.sample_rate, seed=cfg.seed
        )
    cb = (lambda done, total: progress("loading audio", done, total)) if progress else None
    return load_corpus(cfg.data, sample_rate=cfg.features.sample_rate, progress=cb)


def build_dataset(cfg: Config, *, progress: Progress | None = None, functionals: bool = False) -> Dataset:
    """Build the run's dataset.

    Args:
        cfg: the whole config (``data``, ``features``, ``federation`` and ``seed`` are read; ``functionals`` too
            when asked for).
        progress: optional ``(stage, done, total)`` callback.
        functionals: also compute the utterance functionals (``Dataset.functionals``).

    Returns:
        The ``Dataset``.
    """
    corpus = load_audio(cfg, progress=progress)
    cb = (lambda done, total: progress("log-Mel features", done, total)) if progress else None
    feats = extract_features(corpus, cfg.features, progress=cb)
    if cfg.data.test_speakers == "all":  # a deployed server: only test speakers here, the clients hold theirs
        train_idx, test_idx = np.arange(0), np.arange(len(feats))
    elif cfg.data.test_speakers == "split":
        train_idx, test_idx = split_from_manifest(corpus.split, feats.speaker)
    else:
        train_idx, test_idx = split_test_speakers(
            feats.speaker, test_speakers=cfg.data.test_speakers, rng=rng(cfg.seed, "split/test-speakers")
        )
    splits = None
    if functionals:
        cb = (lambda done, total: progress("functionals", done, total)) if progress else None
        fx = extract_functionals(corpus, logmel=feats.x, features=cfg.features, settings=cfg.functionals, progress=cb)
        splits = FunctionalSplits(train=fx.subset(train_idx), test=fx.subset(test_idx))
    train, test = feats.subset(train_idx), feats.subset(test_idx)
    norm = normaliser_for(cfg.features, train.x)
    train = FeatureSet(normalise(train.x, norm), train.y, train.speaker, train.utterance_id)
    test = FeatureSet(normalise(test.x, norm), test.y, test.speaker, test.utterance_id)
    fed = cfg.federation
    clients = [] if len(train) == 0 else partition_clients(
        labels=train.y,
        speakers=train.speaker,
        scheme=fed.partition,
        num_clients=fed.num_clients,
        alpha=fed.dirichlet_alpha,
        rng=rng(cfg.seed, "split/clients"),
    )  # fmt: skip
    summary = corpus_summary(corpus)
    summary["train_speakers"] = sorted(set(train.speaker.tolist()))
    summary["test_speakers"] = sorted(set(test.speaker.tolist()))
    return Dataset(cfg.data.emotions, train, test, norm, clients, summary, functionals=splits)
