"""Plain data containers of the data layer: audio clips as loaded, and log-Mel features as models see them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from fedsered.errors import DataError


@dataclass(frozen=True)
class SkippedFile:
    """A file left out under ``data.on_bad_file: skip``, with the reason (always reported, never silent)."""

    path: str
    reason: str


class LazyClips(Sequence[np.ndarray]):
    """Clips made all at once on first access to any of them, whose lengths are known before (a generated corpus):
    a run whose features come from the cache never makes the audio."""

    def __init__(self, make: Callable[[], list[np.ndarray]], lengths: np.ndarray) -> None:
        self._make, self._lengths = make, np.asarray(lengths, dtype=np.int64)
        self._clips: list[np.ndarray] | None = None

    def _all(self) -> list[np.ndarray]:
        if self._clips is None:
            clips = self._make()
            if [len(c) for c in clips] != self._lengths.tolist():
                raise DataError("LazyClips: the clips made differ in length from the lengths announced")
            self._clips = clips
        return self._clips

    def __len__(self) -> int:
        return len(self._lengths)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        return self._all()[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._all())

    @property
    def made(self) -> bool:
        """Whether the clips exist yet."""
        return self._clips is not None

    def lengths(self) -> np.ndarray:
        return self._lengths


def clip_lengths(audio: Sequence[np.ndarray]) -> np.ndarray:
    """Samples per clip (without making ``LazyClips``)."""
    return audio.lengths() if isinstance(audio, LazyClips) else np.array([len(a) for a in audio], dtype=np.int64)


@dataclass(frozen=True)
class AudioCorpus:
    """Mono float32 clips at one sample rate, with their labels and provenance.

    Attributes:
        audio: one 1-D float32 array per clip (lengths may differ).
        sample_rate: rate of every clip.
        labels: ``[n]`` int64 index into ``emotions``.
        emotions: the common emotion set (its order is the label index).
        speaker: ``[n]`` speaker ids (str).
        utterance_id: ``[n]`` unique utterance ids (str); what the audit asks membership about.
        digest: hex digest of the audio content (feature-cache key together with feature settings).
        skipped: files skipped as bad input.
        excluded: count of clips whose emotion is outside ``emotions`` (by ``label_map``), per corpus emotion.
        split: ``[n]`` the manifest's ``split`` value per clip (lowercase, ``""`` where empty), or ``None``.
    """

    audio: Sequence[np.ndarray]
    sample_rate: int
    labels: np.ndarray
    emotions: tuple[str, ...]
    speaker: np.ndarray
    utterance_id: np.ndarray
    digest: str
    skipped: tuple[SkippedFile, ...] = ()
    excluded: dict[str, int] = field(default_factory=dict)
    split: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.audio)
        if not (len(self.labels) == len(self.speaker) == len(self.utterance_id) == n):
            raise DataError("AudioCorpus: audio, labels, speaker and utterance_id must have the same length")
        if self.split is not None and len(self.split) != n:
            raise DataError("AudioCorpus: split must have one value per clip")
        if n == 0:
            raise DataError("AudioCorpus: the corpus holds no usable clips")
        if len(set(self.utterance_id.tolist())) != n:
            raise DataError("AudioCorpus: utterance ids must be unique")


@dataclass(frozen=True)
class FeatureSet:
    """Log-Mel features of labelled utterances.

    Attributes:
        x: ``[n, 1, n_mels, frames]`` float32.
        y: ``[n]`` int64 labels.
        speaker: ``[n]`` speaker ids (str).
        utterance_id: ``[n]`` utterance ids (str).
    """

    x: np.ndarray
    y: np.ndarray
    speaker: np.ndarray
    utterance_id: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.shape[1] != 1:
            raise DataError(f"FeatureSet: x must be [n, 1, mels, frames], got shape {self.x.shape}")
        if self.x.dtype != np.float32 or self.y.dtype != np.int64:
            raise DataError(f"FeatureSet: x must be float32 and y int64, got {self.x.dtype} and {self.y.dtype}")
        n = self.x.shape[0]
        if not (len(self.y) == len(self.speaker) == len(self.utterance_id) == n):
            raise DataError("FeatureSet: x, y, speaker and utterance_id must have the same length")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray) -> FeatureSet:
        """The examples at ``index`` (an integer array or a boolean mask)."""
        return FeatureSet(self.x[index], self.y[index], self.speaker[index], self.utterance_id[index])

    @classmethod
    def concat(cls, parts: list[FeatureSet]) -> FeatureSet:
        """The examples of ``parts`` one after the other (at least one part)."""
        return cls(
            np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
            np.concatenate([p.speaker for p in parts]), np.concatenate([p.utterance_id for p in parts]),
        )  # fmt: skip
