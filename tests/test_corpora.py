"""Real-corpus loading: one clip (fedsered.data.audio), each corpus scanner, and load_corpus end to end."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from wavtrees import (
    FIVE,
    ravdess_name,
    synth_clip,
    tone,
    write_crema_d_tree,
    write_emodb_tree,
    write_iemocap_tree,
    write_manifest,
    write_ravdess_tree,
    write_wav,
)

from fedsered.config import DataConfig
from fedsered.data.audio import SILENCE_PEAK, BadAudio, read_clip
from fedsered.data.corpora import (
    EXCLUDED_NOT_AUDIO_ONLY,
    EXCLUDED_SONG,
    SUGGESTED_LABEL_MAPS,
    corpus_summary,
    load_corpus,
    parse_emo_evaluation,
    scan_corpus,
    scan_crema_d,
    scan_emodb,
    scan_iemocap,
    scan_manifest,
    scan_ravdess,
)
from fedsered.errors import ConfigError, DataError

SR = 16000


def cfg(corpus: str, path: Path, **kw: Any) -> DataConfig:
    return DataConfig(corpus=corpus, path=str(path), **kw)  # type: ignore[arg-type]


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate)[np.argmax(spectrum)])


def put(path: Path, *, seconds: float = 0.5, sample_rate: int = SR) -> Path:
    """A 300 Hz tone at ``path``."""
    return write_wav(path, tone(300.0, seconds=seconds, sample_rate=sample_rate), sample_rate=sample_rate)


def one_ravdess_clip(root: Path, audio: np.ndarray, *, sample_rate: int = SR, subtype: str = "PCM_16") -> Path:
    """A valid 5-emotion RAVDESS tree plus one extra clip (actor 03, angry) holding ``audio``."""
    write_ravdess_tree(root, actors=(1, 2), n_per=1)
    path = root / "Actor_03" / ravdess_name(emotion=5, actor=3)
    return write_wav(path, audio, sample_rate=sample_rate, subtype=subtype)


# ---------------------------------------------------------------------------------------------------------------
# one clip


@pytest.mark.parametrize("file_rate", [8000, 16000, 22050, 48000])
def test_read_clip_resamples_keeping_length_and_pitch(tmp_path: Path, file_rate: int) -> None:
    path = write_wav(tmp_path / "a.wav", tone(440.0, seconds=1.0, sample_rate=file_rate), sample_rate=file_rate)
    x = read_clip(path, sample_rate=SR, min_duration_s=0.25)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - SR) <= 1
    assert peak_hz(x, SR) == pytest.approx(440.0, abs=2.0)
    assert np.max(np.abs(x)) == pytest.approx(0.3, abs=0.02)


def test_read_clip_mixes_stereo_to_mono(tmp_path: Path) -> None:
    left = tone(440.0, seconds=0.5, sample_rate=SR)
    right = tone(1000.0, seconds=0.5, sample_rate=SR, amplitude=0.1)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), sample_rate=SR, subtype="FLOAT")
    x = read_clip(path, sample_rate=SR, min_duration_s=0.25)
    assert x.shape == (len(left),)
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)), "corrupt or unreadable"),
        (lambda p: p.write_bytes(b""), "corrupt or unreadable"),
        (lambda p: write_wav(p, np.zeros((0, 1), np.float32), sample_rate=SR), "empty"),
        (lambda p: write_wav(p, np.zeros(SR, np.float32), sample_rate=SR), "silent"),
        (lambda p: write_wav(p, np.full(SR, SILENCE_PEAK / 2, np.float32), sample_rate=SR, subtype="FLOAT"), "silent"),
        (lambda p: put(p, seconds=0.12), "too short: 0.12 s < 0.25 s"),
        (lambda p: write_wav(p, np.r_[np.nan, np.ones(SR, np.float32)], sample_rate=SR, subtype="FLOAT"), "non-finite"),
    ],
    ids=["random-bytes", "zero-bytes", "zero-frames", "all-zero", "below-threshold", "too-short", "nan"],
)
def test_read_clip_rejects_bad_audio(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(BadAudio) as info:
        read_clip(path, sample_rate=SR, min_duration_s=0.25)
    assert info.value.reason.startswith(reason)


def test_read_clip_quiet_but_not_silent_16bit_is_kept(tmp_path: Path) -> None:
    quiet = np.zeros(SR, np.int16)
    quiet[100] = 1  # one LSB: 3.05e-5 > SILENCE_PEAK
    path = tmp_path / "quiet.wav"
    sf.write(path, quiet, SR, subtype="PCM_16")
    assert len(read_clip(path, sample_rate=SR, min_duration_s=0.25)) == SR


# ---------------------------------------------------------------------------------------------------------------
# scanners


def test_scan_ravdess_names_labels_speakers_and_exclusions(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1, 2), emotions=("neutral", "calm", "surprised"), n_per=2)
    actor = tmp_path / "Actor_01"
    put(actor / ravdess_name(emotion=3, actor=1, channel=2))  # song
    put(actor / ravdess_name(emotion=3, actor=1, modality=1))  # audio-video
    put(actor / ravdess_name(emotion=4, actor=1, suffix=".WAV"))
    (actor / "notes.txt").write_text("ignored")
    (actor / "03-01-01-01-01-01-01.mp4").write_bytes(b"ignored")
    (actor / "._03-01-01-01-01-01-01.wav").write_bytes(b"macOS resource fork: ignored")
    (tmp_path / "README.md").write_text("ignored")

    scan = scan_ravdess(tmp_path)
    assert scan.bad == ()
    assert scan.excluded == {EXCLUDED_SONG: 1, EXCLUDED_NOT_AUDIO_ONLY: 1}
    assert len(scan.entries) == 2 * 3 * 2 + 1
    by_id = {e.utterance_id: e for e in scan.entries}
    e = by_id["03-01-08-01-01-02-02"]
    assert (e.speaker, e.emotion, e.path.parent.name) == ("ravdess_02", "surprised", "Actor_02")
    assert by_id["03-01-04-01-01-01-01"].emotion == "sad"  # upper-case .WAV accepted
    assert {e.emotion for e in scan.entries} == {"neutral", "calm", "surprised", "sad"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("03-01-09-01-01-01-01.wav", "unknown emotion code 09"),
        ("03-03-01-01-01-01-01.wav", "unknown vocal channel code 03"),
        ("03-01-01-01-01-01.wav", "file name does not match RAVDESS"),
        ("speech_take2.wav", "file name does not match RAVDESS"),
        ("03-01-01-01-01-01-07.wav", "actor 07 in the file name but the file is in Actor_01"),
    ],
)
def test_scan_ravdess_reports_bad_names(tmp_path: Path, name: str, reason: str) -> None:
    write_ravdess_tree(tmp_path, actors=(1,), emotions=("neutral",), n_per=1)
    put(tmp_path / "Actor_01" / name)
    scan = scan_ravdess(tmp_path)
    assert len(scan.entries) == 1
    assert [(Path(b.path).name, b.reason.startswith(reason)) for b in scan.bad] == [(name, True)]


@pytest.mark.parametrize("subfolder", [True, False])
def test_scan_crema_d(tmp_path: Path, subfolder: bool) -> None:
    write_crema_d_tree(tmp_path, actors=(1001, 1091), emotions=("angry", "disgust", "sad"), subfolder=subfolder)
    scan = scan_crema_d(tmp_path)
    assert scan.bad == () and len(scan.entries) == 6
    e = next(e for e in scan.entries if e.utterance_id == "1091_IEO_DIS_XX")
    assert (e.speaker, e.emotion) == ("crema_d_1091", "disgust")


def test_scan_crema_d_unknown_emotion_and_bad_name(tmp_path: Path) -> None:
    write_crema_d_tree(tmp_path, actors=(1001,), emotions=("angry",))
    for name in ("1001_IEO_BOR_XX.wav", "1001_IEO_ANG_ZZ.wav", "1001-IEO-ANG-XX.wav"):
        put(tmp_path / "AudioWAV" / name)
    reasons = {Path(b.path).name: b.reason for b in scan_crema_d(tmp_path).bad}
    assert reasons["1001_IEO_BOR_XX.wav"].startswith("unknown emotion code BOR")
    assert reasons["1001_IEO_ANG_ZZ.wav"].startswith("unknown level code ZZ")
    assert reasons["1001-IEO-ANG-XX.wav"].startswith("file name does not match CREMA-D")


@pytest.mark.parametrize("subfolder", [True, False])
def test_scan_emodb(tmp_path: Path, subfolder: bool) -> None:
    write_emodb_tree(tmp_path, speakers=(3, 16), emotions=("angry", "boredom", "fearful"), subfolder=subfolder)
    scan = scan_emodb(tmp_path)
    assert scan.bad == () and len(scan.entries) == 6
    assert {(e.utterance_id, e.speaker, e.emotion) for e in scan.entries} >= {
        ("03a01Wa", "emodb_03", "angry"),
        ("16a01La", "emodb_16", "boredom"),
        ("16a01Aa", "emodb_16", "fearful"),
    }


def test_scan_emodb_unknown_letter(tmp_path: Path) -> None:
    write_emodb_tree(tmp_path, speakers=(3,), emotions=("angry",))
    put(tmp_path / "wav" / "03a01Xa.wav")
    put(tmp_path / "wav" / "03_a01_F.wav")
    reasons = {Path(b.path).name: b.reason for b in scan_emodb(tmp_path).bad}
    assert reasons["03a01Xa.wav"].startswith("unknown emotion code X")
    assert reasons["03_a01_F.wav"].startswith("file name does not match EmoDB")


IEMOCAP_DIALOGS = {
    "Ses01F_impro01": [("F000", "neutral"), ("M000", "angry"), ("F001", "excited"), ("M001", "frustrated")],
    "Ses01M_script01_1": [("F000", "happy"), ("M000", "sad"), ("M001", "unlabelled")],
    "Ses02F_impro02": [("F000", "sad"), ("M000", "neutral"), ("F001", "happy"), ("M001", "angry")],
}


def test_parse_emo_evaluation_reads_only_summary_lines() -> None:
    text = (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M002\txxx\t[2.5000, 3.0000, 3.0000]\n"
    )
    assert parse_emo_evaluation(text) == {"Ses01F_impro01_F000": "neu", "Ses01F_impro01_M002": "xxx"}


def test_scan_iemocap_labels_and_speakers(tmp_path: Path) -> None:
    write_iemocap_tree(tmp_path, dialogs=IEMOCAP_DIALOGS)
    scan = scan_iemocap(tmp_path)
    assert scan.bad == () and len(scan.entries) == 11
    by_id = {e.utterance_id: e for e in scan.entries}
    assert (by_id["Ses01F_impro01_F001"].emotion, by_id["Ses01F_impro01_F001"].speaker) == ("excited", "Ses01_F")
    assert (by_id["Ses01F_impro01_M000"].emotion, by_id["Ses01F_impro01_M000"].speaker) == ("angry", "Ses01_M")
    assert by_id["Ses01M_script01_1_M001"].emotion == "unlabelled"
    assert {e.speaker for e in scan.entries} == {"Ses01_F", "Ses01_M", "Ses02_F", "Ses02_M"}


def test_scan_iemocap_wav_without_label_is_bad(tmp_path: Path) -> None:
    write_iemocap_tree(tmp_path, dialogs=IEMOCAP_DIALOGS, unlabelled=["Ses02F_impro02_M001"])
    (tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01M_script01_1.txt").unlink()
    reasons = {Path(b.path).stem: b.reason for b in scan_iemocap(tmp_path).bad}
    assert reasons["Ses02F_impro02_M001"].startswith("no label for Ses02F_impro02_M001 in ")
    assert reasons["Ses01M_script01_1_F000"].startswith("labels file missing or unreadable: ")
    assert len(reasons) == 4


def test_iemocap_four_class_setup_with_suggested_label_map(tmp_path: Path) -> None:
    write_iemocap_tree(tmp_path, dialogs=IEMOCAP_DIALOGS)
    corpus = load_corpus(
        cfg(
            "iemocap",
            tmp_path,
            emotions=("neutral", "happy", "angry", "sad"),
            label_map=SUGGESTED_LABEL_MAPS["iemocap"],
        ),
        sample_rate=SR,
    )
    labels = dict(zip(corpus.utterance_id.tolist(), corpus.labels.tolist(), strict=True))
    assert labels["Ses01F_impro01_F001"] == 1  # excited -> happy
    assert len(corpus.audio) == 9
    assert corpus.excluded == {"frustrated": 1, "unlabelled": 1}


# ---------------------------------------------------------------------------------------------------------------
# manifest


def test_scan_manifest_relative_absolute_split_and_case(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    a = put(clips / "spk1" / "a.wav")
    b = put(tmp_path / "elsewhere" / "b.flac.wav")
    csv_path = tmp_path / "meta" / "demos.csv"
    csv_path.parent.mkdir()
    csv_path.write_text(
        f"\ufeffPath , Speaker,Emotion,split,notes\n../clips/spk1/a.wav,spk1, Angry ,train,x\n{b},spk2,guilt,,\n\n",
        encoding="utf-8",
    )
    scan = scan_manifest(csv_path)
    assert [(e.path, e.speaker, e.emotion, e.split) for e in scan.entries] == [
        (a, "spk1", "angry", "train"),
        (b, "spk2", "guilt", None),
    ]
    assert scan.entries[0].utterance_id == "../clips/spk1/a"
    assert scan.entries[1].utterance_id == "../elsewhere/b.flac"  # relative to the CSV's folder, wherever it lives


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,emotion\nx.wav,angry\n", "line 1: missing column(s) speaker"),
        ("", "empty manifest"),
        ("path,speaker,emotion\n", "lists no files"),
        ("path,speaker,emotion\nok.wav,s1,angry\nok.wav,,angry\n", "line 3: empty 'speaker' field"),
        ("path,speaker,emotion\nok.wav,s1,angry\nmissing.wav,s1,sad\n", "line 3: audio file not found: "),
        ("path,speaker,emotion\nok.wav,s1,angry,extra\n", "line 2: 4 fields but the header has 3"),
        ("path,speaker,emotion,Speaker\nok.wav,s1,angry,s1\n", "speaker appear more than once"),
    ],
    ids=["missing-column", "empty", "no-rows", "empty-field", "missing-file", "extra-field", "duplicate-column"],
)
def test_scan_manifest_errors_name_csv_and_line(tmp_path: Path, content: str, message: str) -> None:
    put(tmp_path / "ok.wav")
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.csv") as info:
        scan_manifest(csv_path)
    assert message in str(info.value)


def test_scan_manifest_missing_or_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: manifest not found"):
        scan_manifest(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        scan_manifest(tmp_path)


def test_load_manifest_end_to_end(tmp_path: Path) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for spk in range(3):
        for emotion in ("angry", "sad"):
            clip = synth_clip(emotion, speaker=spk, seconds=0.5, sample_rate=22050, rng=rng)
            write_wav(tmp_path / "audio" / f"s{spk}_{emotion}.wav", clip, sample_rate=22050)
            rows.append({"path": f"audio/s{spk}_{emotion}.wav", "speaker": f"s{spk}", "emotion": emotion.upper()})
    corpus = load_corpus(
        cfg("manifest", write_manifest(tmp_path / "m.csv", rows), emotions=("sad", "angry")), sample_rate=SR
    )
    assert corpus.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert corpus.utterance_id.tolist()[:2] == ["audio/s0_angry", "audio/s0_sad"]
    assert all(len(a) == SR // 2 for a in corpus.audio)


# ---------------------------------------------------------------------------------------------------------------
# folders


@pytest.mark.parametrize("corpus", ["ravdess", "crema_d", "emodb", "iemocap"])
def test_missing_and_empty_folders_name_path_and_convention(tmp_path: Path, corpus: str) -> None:
    with pytest.raises(DataError, match=r"nowhere: folder not found; corpus=\w+ expects .*\.wav"):
        scan_corpus(corpus, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=rf"empty: no {corpus} audio files found; expected .*\.wav"):
        scan_corpus(corpus, tmp_path / "empty")
    with pytest.raises(DataError, match="folder not found"):
        load_corpus(cfg(corpus, tmp_path / "nowhere"), sample_rate=SR)


def test_empty_folder_hints_at_nested_layout(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path / "download" / "audio_speech_actors_01-24", actors=(1,), n_per=1)
    with pytest.raises(DataError, match=r"found a matching layout in .*audio_speech_actors_01-24; set data.path"):
        scan_ravdess(tmp_path)


def test_scan_corpus_refuses_embedded() -> None:
    with pytest.raises(ValueError, match="embedded"):
        scan_corpus("embedded", Path("."))
    with pytest.raises(ValueError, match="embedded"):
        load_corpus(DataConfig(), sample_rate=SR)


# ---------------------------------------------------------------------------------------------------------------
# load_corpus


def test_load_ravdess_end_to_end(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1, 2, 3), emotions=(*FIVE, "calm", "surprised"), n_per=2, sample_rate=48000)
    write_wav(
        tmp_path / "Actor_01" / ravdess_name(emotion=3, actor=1, channel=2),
        tone(300, seconds=0.6, sample_rate=48000),
        sample_rate=48000,
    )
    calls: list[tuple[int, int]] = []
    corpus = load_corpus(
        cfg("ravdess", tmp_path, emotions=("neutral", "happy", "sad", "angry", "fearful")),
        sample_rate=SR,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert len(corpus.audio) == 3 * 5 * 2
    assert corpus.sample_rate == SR and all(len(a) == round(0.6 * SR) and a.dtype == np.float32 for a in corpus.audio)
    assert corpus.excluded == {EXCLUDED_SONG: 1, "calm": 6, "surprised": 6}
    assert corpus.skipped == ()
    assert corpus.labels.dtype == np.int64
    assert np.bincount(corpus.labels).tolist() == [6] * 5
    assert sorted(set(corpus.speaker.tolist())) == ["ravdess_01", "ravdess_02", "ravdess_03"]
    ids = corpus.utterance_id.tolist()
    assert ids == sorted(ids, key=lambda u: (u[-2:], u)) and len(set(ids)) == len(ids)  # Actor_NN/name order
    i = ids.index("03-01-05-01-01-02-02")
    assert (corpus.labels[i], corpus.speaker[i]) == (3, "ravdess_02")
    assert calls[0] == (0, 30) and calls[-1] == (30, 30) and len(calls) == 31


def test_label_map_merges_and_excludes(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1, 2), emotions=("neutral", "calm", "happy", "sad", "angry"), n_per=1)
    data = cfg("ravdess", tmp_path, emotions=("neutral", "happy", "sad"), label_map={"calm": "neutral", "Angry": None})
    corpus = load_corpus(data, sample_rate=SR)
    assert np.bincount(corpus.labels).tolist() == [4, 2, 2]
    assert corpus.excluded == {"angry": 2}


def test_label_map_typos_are_config_errors(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1,), n_per=1)
    with pytest.raises(ConfigError, match=r"data\.label_map\.excted: 'excted' is not an emotion of corpus ravdess"):
        load_corpus(cfg("ravdess", tmp_path, label_map={"excted": "happy"}), sample_rate=SR)
    with pytest.raises(ConfigError, match=r"maps to 'hapy', which is not in data\.emotions"):
        load_corpus(cfg("ravdess", tmp_path, label_map={"calm": "hapy"}), sample_rate=SR)


def test_emotion_without_clips_is_an_error(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1,), emotions=("neutral", "happy"), n_per=1)
    with pytest.raises(DataError, match=r"no usable clips for emotion\(s\) sad, angry, fearful"):
        load_corpus(cfg("ravdess", tmp_path), sample_rate=SR)
    with pytest.raises(DataError, match=r"no clip has an emotion in data\.emotions"):
        load_corpus(cfg("ravdess", tmp_path, emotions=("sad", "angry")), sample_rate=SR)


def _write_bad(kind: str, root: Path) -> Path:
    if kind == "corrupt":
        path = one_ravdess_clip(root, tone(300, seconds=0.5, sample_rate=SR))
        path.write_bytes(np.random.default_rng(1).bytes(3000))
        return path
    audio = {
        "empty": np.zeros((0, 1), np.float32),
        "silent": np.zeros(SR, np.float32),
        "too short": tone(300, seconds=0.1, sample_rate=SR),
    }[kind]
    return one_ravdess_clip(root, audio)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "silent", "too short"])
def test_bad_audio_stops_or_is_skipped(tmp_path: Path, kind: str) -> None:
    bad = _write_bad(kind, tmp_path)
    with pytest.raises(DataError) as info:
        load_corpus(cfg("ravdess", tmp_path), sample_rate=SR)
    message = str(info.value)
    assert message.startswith(f"{bad}: {'corrupt or unreadable' if kind == 'corrupt' else kind}")
    assert "data.on_bad_file: skip" in message

    corpus = load_corpus(cfg("ravdess", tmp_path, on_bad_file="skip"), sample_rate=SR)
    assert len(corpus.audio) == 10
    assert [s.path for s in corpus.skipped] == [str(bad)]
    assert corpus.skipped[0].reason.startswith("corrupt or unreadable" if kind == "corrupt" else kind)
    assert corpus_summary(corpus)["skipped_reasons"] == {"corrupt or unreadable" if kind == "corrupt" else kind: 1}


def test_bad_names_stop_or_are_skipped(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1,), n_per=1)
    bad = put(tmp_path / "Actor_01" / "03-01-09-01-01-01-01.wav")
    put(tmp_path / "Actor_01" / "take 2.wav")
    expected = rf"{re.escape(str(bad))}: unknown emotion code 09 .*skip such files; 1 more bad file"
    with pytest.raises(DataError, match=expected):
        load_corpus(cfg("ravdess", tmp_path), sample_rate=SR)
    corpus = load_corpus(cfg("ravdess", tmp_path, on_bad_file="skip"), sample_rate=SR)
    assert len(corpus.audio) == 5
    assert sorted(Path(s.path).name for s in corpus.skipped) == ["03-01-09-01-01-01-01.wav", "take 2.wav"]


def test_stereo_and_odd_rates_load_as_mono_16k(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1,), n_per=1, sample_rate=8000, seconds=0.5)
    stereo = np.stack([tone(440, seconds=0.75, sample_rate=44100), tone(440, seconds=0.75, sample_rate=44100)], 1)
    write_wav(tmp_path / "Actor_02" / ravdess_name(emotion=1, actor=2), stereo, sample_rate=44100)
    corpus = load_corpus(cfg("ravdess", tmp_path), sample_rate=SR)
    lengths = dict(zip(corpus.utterance_id.tolist(), (len(a) for a in corpus.audio), strict=True))
    assert lengths["03-01-01-01-01-01-02"] == 12000
    assert all(n == 8000 for k, n in lengths.items() if k.endswith("-01"))
    i = corpus.utterance_id.tolist().index("03-01-01-01-01-01-02")
    assert corpus.audio[i].ndim == 1 and peak_hz(corpus.audio[i], SR) == pytest.approx(440, abs=2)


def test_all_bad_is_an_error(tmp_path: Path) -> None:
    write_wav(tmp_path / "Actor_01" / ravdess_name(emotion=1, actor=1), np.zeros(SR, np.float32), sample_rate=SR)
    with pytest.raises(DataError, match=r"no usable clips: all 1 candidate file\(s\) were bad .*silent"):
        load_corpus(cfg("ravdess", tmp_path, on_bad_file="skip"), sample_rate=SR)


def test_duplicate_utterance_ids(tmp_path: Path) -> None:
    a = put(tmp_path / "x" / "a.wav")
    b = put(tmp_path / "y" / "b.wav")
    rows = [
        {"path": "x/a.wav", "speaker": "s1", "emotion": "sad"},
        {"path": "y/b.wav", "speaker": "s2", "emotion": "angry"},
        {"path": str(tmp_path / "x" / "." / "a.wav"), "speaker": "s1", "emotion": "sad"},
    ]
    m = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match="duplicate utterance id 'x/a'"):
        load_corpus(cfg("manifest", m, emotions=("sad", "angry")), sample_rate=SR)
    corpus = load_corpus(cfg("manifest", m, emotions=("sad", "angry"), on_bad_file="skip"), sample_rate=SR)
    assert corpus.utterance_id.tolist() == ["x/a", "y/b"] and len(corpus.skipped) == 1
    assert a.exists() and b.exists()


def test_digest_tracks_content_labels_and_selection(tmp_path: Path) -> None:
    paths = write_ravdess_tree(tmp_path, actors=(1, 2), n_per=1)
    data = cfg("ravdess", tmp_path)
    first = load_corpus(data, sample_rate=SR).digest
    assert len(first) == 64 and first == load_corpus(data, sample_rate=SR).digest
    reordered = cfg("ravdess", tmp_path, emotions=tuple(reversed(FIVE)))
    assert load_corpus(reordered, sample_rate=SR).digest != first
    raw = bytearray(paths[3].read_bytes())
    raw[-2:] = b"\x01\x02"
    paths[3].write_bytes(bytes(raw))
    changed = load_corpus(data, sample_rate=SR).digest
    assert changed != first
    mtime = paths[0].stat().st_mtime
    os.utime(paths[0], (mtime + 100, mtime + 100))
    assert load_corpus(data, sample_rate=SR).digest == changed  # content, not timestamps


def test_corpus_summary(tmp_path: Path) -> None:
    write_ravdess_tree(tmp_path, actors=(1, 2), emotions=(*FIVE, "calm"), n_per=2, seconds=0.5)
    summary = corpus_summary(load_corpus(cfg("ravdess", tmp_path), sample_rate=SR))
    assert summary["utterances"] == 20 and summary["speakers"] == 2
    assert summary["per_emotion"] == dict.fromkeys(FIVE, 4)
    assert summary["per_speaker"] == {"ravdess_01": 10, "ravdess_02": 10}
    assert summary["duration_s"] == pytest.approx(10.0)
    assert summary["mean_duration_s"] == pytest.approx(0.5)
    assert summary["excluded"] == {"calm": 4}
    assert summary["skipped"] == 0 and summary["skipped_files"] == [] and summary["skipped_reasons"] == {}
    assert summary["sample_rate"] == SR and len(summary["digest"]) == 64


def test_ravdess_tree_is_learnable(tmp_path: Path) -> None:
    """The synthetic emotions differ enough for a nearest-centroid spectrum classifier across speakers."""
    write_ravdess_tree(tmp_path, actors=(1, 2, 3, 4), n_per=4, seconds=0.5, seed=3)
    corpus = load_corpus(cfg("ravdess", tmp_path), sample_rate=SR)
    feats = np.stack([np.log1p(np.abs(np.fft.rfft(a, n=8000))[:4000].reshape(100, 40).mean(1)) for a in corpus.audio])
    test = corpus.speaker == "ravdess_04"
    centroids = np.stack([feats[~test & (corpus.labels == k)].mean(0) for k in range(5)])
    pred = np.argmin(((feats[test][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == corpus.labels[test]) >= 0.8
