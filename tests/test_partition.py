"""Test-speaker split and client partitions: disjointness, coverage, skew and clear errors."""

import numpy as np
import pytest

from fedsered.data.partition import partition_clients, split_test_speakers
from fedsered.errors import ConfigError

SPEAKERS = np.repeat([f"s{i:02d}" for i in range(12)], 20)
LABELS = np.tile(np.arange(5), 48).astype(np.int64)


def test_test_speakers_never_in_train() -> None:
    tr, te = split_test_speakers(SPEAKERS, test_speakers=0.25, rng=np.random.default_rng(0))
    assert len(set(SPEAKERS[tr]) & set(SPEAKERS[te])) == 0
    assert len(set(SPEAKERS[te])) == 3 and len(tr) + len(te) == len(SPEAKERS)
    _, te2 = split_test_speakers(SPEAKERS, test_speakers=["s00", "s05"], rng=np.random.default_rng(0))
    assert set(SPEAKERS[te2]) == {"s00", "s05"}
    with pytest.raises(ConfigError, match="unknown speaker ids"):
        split_test_speakers(SPEAKERS, test_speakers=["nobody"], rng=np.random.default_rng(0))


@pytest.mark.parametrize("scheme", ["speaker", "iid", "dirichlet"])
def test_partitions_cover_training_data_exactly_once(scheme: str) -> None:
    parts = partition_clients(
        labels=LABELS, speakers=SPEAKERS, scheme=scheme, num_clients=6, alpha=0.5, rng=np.random.default_rng(1)
    )
    assert len(parts) == 6 and all(len(p) > 0 for p in parts)
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(len(LABELS)))


def test_speaker_partition_keeps_speakers_whole() -> None:
    parts = partition_clients(labels=LABELS, speakers=SPEAKERS, scheme="speaker", num_clients=12, alpha=1.0,
                              rng=np.random.default_rng(2))  # fmt: skip
    owners = [set(SPEAKERS[p]) for p in parts]
    assert all(len(o) == 1 for o in owners)
    with pytest.raises(ConfigError, match="only 12 speakers"):
        partition_clients(labels=LABELS, speakers=SPEAKERS, scheme="speaker", num_clients=13, alpha=1.0,
                          rng=np.random.default_rng(2))  # fmt: skip


def test_dirichlet_small_alpha_is_more_skewed_than_large() -> None:
    def skew(alpha: float) -> float:
        parts = partition_clients(labels=LABELS, speakers=SPEAKERS, scheme="dirichlet", num_clients=4, alpha=alpha,
                                  rng=np.random.default_rng(3))  # fmt: skip
        props = [np.bincount(LABELS[p], minlength=5) / len(p) for p in parts]
        return float(np.mean([np.abs(p - 0.2).sum() for p in props]))

    assert skew(0.1) > skew(100.0) + 0.3
