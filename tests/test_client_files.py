"""The clients' partition files of a simulation, and a generated corpus that is not synthesised on a cache hit."""

from pathlib import Path

import numpy as np
import pytest
from test_dataset import _cfg as dataset_cfg

from fedsered.data.client_files import MANIFEST, client_file, read_client_file, write_client_files
from fedsered.data.dataset import build_dataset, load_audio
from fedsered.data.types import LazyClips, clip_lengths
from fedsered.errors import DataError


def _cfg(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return dataset_cfg(tmp_path / "c", *extra)  # 5 speakers × 15 utterances, 4 clients


def test_each_client_reads_exactly_its_partition(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    folder = write_client_files(cfg, tmp_path / "files")
    data = build_dataset(cfg)
    for k in range(4):
        mine, expected = read_client_file(folder, k, cfg=cfg), data.client(k)
        assert np.array_equal(mine.x, expected.x) and np.array_equal(mine.y, expected.y)
        assert mine.utterance_id.tolist() == expected.utterance_id.tolist()
    with pytest.raises(DataError, match="partition-id 4 outside the run's 4 client partitions"):
        read_client_file(folder, 4, cfg=cfg)
    with pytest.raises(DataError, match="written for other data settings"):
        read_client_file(folder, 0, cfg=_cfg(tmp_path, "seed=1"))
    with pytest.raises(DataError, match=r"no readable manifest\.json"):
        read_client_file(tmp_path / "nowhere", 0, cfg=cfg)
    # kept when it already holds this config's partitions; rewritten for another config
    stamp = client_file(folder, 0).stat().st_mtime_ns
    write_client_files(cfg, folder)
    assert client_file(folder, 0).stat().st_mtime_ns == stamp
    other = _cfg(tmp_path, "federation.num_clients=2")
    write_client_files(other, folder)
    assert np.array_equal(read_client_file(folder, 1, cfg=other).x, build_dataset(other).client(1).x)
    client_file(folder, 1).write_bytes(b"not an npz")
    with pytest.raises(DataError, match="unreadable"):
        read_client_file(folder, 1, cfg=other)
    assert (folder / MANIFEST).is_file()


def test_a_generated_corpus_is_synthesised_only_when_its_features_are_computed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    corpus = load_audio(cfg)
    assert isinstance(corpus.audio, LazyClips) and not corpus.audio.made
    lengths = clip_lengths(corpus.audio)
    assert not corpus.audio.made  # lengths are known without synthesis
    assert lengths.tolist() == [len(c) for c in corpus.audio] and corpus.audio.made
    first = build_dataset(cfg)  # computes and caches the features
    again = load_audio(cfg)
    from fedsered.data.features import extract_features

    cached = extract_features(again, cfg.features)
    assert not again.audio.made  # a cache hit: no synthesis
    assert np.array_equal(build_dataset(cfg).train.x, first.train.x)
    assert cached.x.shape[0] == len(lengths)
