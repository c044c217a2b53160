"""Corpus assembly: the generator's content key (``corpus_digest``) and ``generate_embedded_corpus``, which gives
every utterance its own random stream and collects the clips into an ``AudioCorpus``."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from fedsered.config import EmbeddedCorpusConfig
from fedsered.data.embedded.emotions import check_emotions, difficulty_knobs
from fedsered.data.embedded.prosody import to_samples
from fedsered.data.embedded.speakers import make_speaker, speaker_ids, speaker_style
from fedsered.data.embedded.utterance import synthesise
from fedsered.data.types import AudioCorpus, LazyClips
from fedsered.seeding import rng as role_rng

GENERATOR_VERSION = "fedsered-embedded-v1"
"""Part of the digest: bump it whenever a code change alters the generated audio."""


def corpus_digest(cfg: EmbeddedCorpusConfig, *, emotions: tuple[str, ...], sample_rate: int, seed: int) -> str:
    """Hex BLAKE2b (32 bytes) of everything the generated audio is a pure function of (its content key)."""
    payload = {
        "generator": GENERATOR_VERSION,
        "config": cfg.model_dump(mode="json"),
        "emotions": list(emotions),
        "sample_rate": int(sample_rate),
        "seed": int(seed),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).hexdigest()


def generate_embedded_corpus(
    cfg: EmbeddedCorpusConfig, *, emotions: tuple[str, ...], sample_rate: int, seed: int
) -> AudioCorpus:
    """Generate the embedded emotional-speech corpus.

    Clips are ordered speaker, then emotion (in the order of ``emotions``), then utterance. Each utterance has its
    own random stream (role ``corpus/utterance/{k}/{emotion}/{j}``), so a clip does not depend on generation order,
    on how many speakers or utterances there are, or on which other emotions are requested.

    Args:
        cfg: generator settings (speakers, utterances per emotion, duration range, difficulty, SNR).
        emotions: emotion names to voice; their order is the label index. Each must be in ``SUPPORTED_EMOTIONS``.
        sample_rate: output rate in Hz.
        seed: the run seed.

    Returns:
        An ``AudioCorpus`` of float32 mono clips in [-1, 1]; ``speaker`` ids ``spk00``..., utterance ids like
        ``spk03_angry_007``; ``digest`` from ``corpus_digest`` (the audio is a pure function of its inputs). The
        clips are ``LazyClips``: synthesised on first access (a run whose features are cached never synthesises).

    Raises:
        DataError: an emotion is not supported.
    """
    check_emotions(emotions)
    knobs = difficulty_knobs(cfg)
    lo, hi = cfg.duration_s
    index = [(k, spk_id, label, emotion, j) for k, spk_id in enumerate(speaker_ids(cfg.n_speakers))
             for label, emotion in enumerate(emotions) for j in range(cfg.utterances_per_emotion)]  # fmt: skip

    def stream(k: int, emotion: str, j: int) -> tuple[np.random.Generator, int]:
        r = role_rng(seed, f"corpus/utterance/{k}/{emotion}/{j}")
        return r, max(to_samples(r.uniform(lo, hi), sample_rate), 1)  # the duration is the stream's first draw

    def make() -> list[np.ndarray]:
        speakers = {k: make_speaker(k, knobs, seed) for k in range(cfg.n_speakers)}
        styles = {(k, e): speaker_style(k, e, speakers[k], knobs, seed) for k in speakers for e in emotions}
        clips = []
        for k, _, _, emotion, j in index:
            r, n = stream(k, emotion, j)
            clips.append(synthesise(r, speakers[k], styles[k, emotion], knobs, n, sample_rate))
        return clips

    return AudioCorpus(
        audio=LazyClips(make, np.array([stream(k, e, j)[1] for k, _, _, e, j in index], dtype=np.int64)),
        sample_rate=int(sample_rate),
        labels=np.asarray([u[2] for u in index], dtype=np.int64),
        emotions=tuple(emotions),
        speaker=np.asarray([u[1] for u in index]),
        utterance_id=np.asarray([f"{spk}_{emotion}_{j:03d}" for _, spk, _, emotion, j in index]),
        digest=corpus_digest(cfg, emotions=emotions, sample_rate=sample_rate, seed=seed),
    )
