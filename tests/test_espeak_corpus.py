"""The espeak-ng corpus script (benchmarks/make_espeak_corpus.py): a tiny corpus it writes is read by the unchanged
RAVDESS loader. Needs the ``espeak-ng`` program (installed by .ci/run): skipped without it, except in CI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from fedsered.config import DataConfig
from fedsered.data.corpora import load_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_espeak_corpus.py"
FIVE = ("neutral", "happy", "sad", "angry", "fearful")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_espeak_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def espeak_script() -> ModuleType:
    """The script module; outside CI a skip without espeak-ng, in CI (``CI`` set) a failure: CI installs it."""
    if shutil.which("espeak-ng") is None:
        msg = "espeak-ng not installed (`apt-get install -y espeak-ng`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    return _script()


def test_tiny_espeak_corpus_reads_as_ravdess(espeak_script: ModuleType, tmp_path: Path) -> None:
    """2 speakers × 5 emotions × 1 statement (1 repetition, intensity 01): 2 clips per emotion, both speakers."""
    paths = espeak_script.make_corpus(tmp_path, speakers=2, seed=0, statements=1, repetitions=1, intensities=1)
    assert len(paths) == 10
    assert sorted(p.parent.name for p in paths) == ["Actor_01"] * 5 + ["Actor_02"] * 5
    info = sf.info(paths[0])
    assert (info.samplerate, info.channels, info.subtype) == (espeak_script.SAMPLE_RATE, 1, "PCM_16")

    corpus = load_corpus(DataConfig(corpus="ravdess", path=str(tmp_path), emotions=FIVE), sample_rate=16000)
    assert corpus.skipped == () and corpus.excluded == {}
    assert np.bincount(corpus.labels, minlength=5).tolist() == [2, 2, 2, 2, 2]
    assert sorted(set(corpus.speaker.tolist())) == ["ravdess_01", "ravdess_02"]
    assert all(0.5 < clip.size / 16000 < 8.0 and np.abs(clip).max() > 0.01 for clip in corpus.audio)

    again = espeak_script.make_corpus(tmp_path / "b", speakers=1, seed=0, statements=1, repetitions=1, intensities=1)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[:5]], "not deterministic given the seed"


def test_clip_names_match_ravdess_counts() -> None:
    """The full design: per speaker 4 neutral + 4 emotions × 8 = 36 clips, 12 speakers = 432; voices alternate."""
    module = _script()
    names = module.clip_names(speakers=12)
    assert len(names) == len(set(names)) == 432
    assert sum(n.split("-")[2] == "01" for n in names) == 48
    voices = [module.voice(a) for a in range(1, module.MAX_SPEAKERS + 1)]
    assert len(set(voices)) == len(voices)
    assert all(v.split("+")[1] in module.MALE for v in voices[0::2])
    assert all(v.split("+")[1] in module.FEMALE for v in voices[1::2])


def test_public_voices_are_nobody_elses() -> None:
    """``--voices public``: 12 distinct voices whose variants no client-corpus actor uses; more actors refused."""
    module = _script()
    clients = {module.voice(a).split("+")[1] for a in range(1, module.MAX_SPEAKERS + 1)}
    public = [module.voice(a, "public") for a in range(1, module.max_speakers("public") + 1)]
    assert module.max_speakers("public") == 12 and len(set(public)) == 12
    assert not {v.split("+")[1] for v in public} & clients
    with pytest.raises(ValueError, match=r"1\.\.12 for voices public"):
        module.make_corpus(Path("unused"), speakers=13, voices="public")
