"""``corpus_summary``: the JSON-serialisable counts describing a loaded corpus (the CLI prints them as a table)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from fedsered.data.types import AudioCorpus, clip_lengths


def _reason_kind(reason: str) -> str:
    """The category of a skip reason: ``"too short: 0.12 s < 0.25 s"`` -> ``"too short"``."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()


def corpus_summary(corpus: AudioCorpus) -> dict[str, Any]:
    """Counts describing a loaded corpus, JSON-serialisable (the CLI prints them as a table).

    Args:
        corpus: a loaded ``AudioCorpus``.

    Returns:
        ``utterances``, ``speakers`` (count), ``per_emotion`` (name -> count, in label order), ``duration_s``
        (total), ``mean_duration_s``, ``per_speaker`` (id -> count), ``skipped`` (count), ``skipped_reasons``
        (kind -> count, e.g. ``{"too short": 3}``), ``skipped_files`` (``[{"path", "reason"}]``), ``excluded``
        (corpus emotion or kind -> count), ``sample_rate`` and ``digest``.
    """
    counts = np.bincount(corpus.labels, minlength=len(corpus.emotions))
    speakers, per_speaker = np.unique(corpus.speaker, return_counts=True)
    total_s = float(clip_lengths(corpus.audio).sum()) / corpus.sample_rate
    return {
        "utterances": len(corpus.audio),
        "speakers": len(speakers),
        "per_emotion": {name: int(c) for name, c in zip(corpus.emotions, counts, strict=True)},
        "duration_s": round(total_s, 3),
        "mean_duration_s": round(total_s / len(corpus.audio), 3),
        "per_speaker": {str(s): int(c) for s, c in zip(speakers, per_speaker, strict=True)},
        "skipped": len(corpus.skipped),
        "skipped_reasons": dict(Counter(_reason_kind(s.reason) for s in corpus.skipped)),
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in corpus.skipped],
        "excluded": dict(corpus.excluded),
        "sample_rate": corpus.sample_rate,
        "digest": corpus.digest,
    }
