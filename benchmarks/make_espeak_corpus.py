"""A second emotional-speech corpus, synthesised by espeak-ng, written in the RAVDESS layout.

Run from the repository root (needs the ``espeak-ng`` program: ``apt-get install -y espeak-ng``)::

    .venv/bin/python benchmarks/make_espeak_corpus.py --out runs/espeak-corpus [--speakers 12] [--seed 0]

and read it with the unchanged RAVDESS loader (``configs/espeak.yaml``)::

    .venv/bin/fedsered train configs/espeak.yaml

Unlike the embedded source-filter generator, the words are real English sentences rendered by espeak-ng's
formant synthesiser. Speakers are distinct espeak-ng voice + variant pairs (odd actors male variants, even actors
female, as in RAVDESS), each with its own seeded baseline (pitch, speed, pitch range, expressiveness, recording
level, background-noise level and colour). Emotions 01 neutral, 03 happy, 04 sad, 05 angry, 06 fearful are realised
as shifts of espeak-ng's prosody (SSML ``<prosody pitch range rate>``, ``-g`` word gap) and of the level and spectral
tilt applied afterwards (``EMOTIONS``), in the directions of Banse & Scherer (1996); intensity 02 (strong) scales the
shifts by ``STRONG``, and every utterance draws its own jitter (``JITTER``) so the classes overlap. Files are
``Actor_AA/03-01-EE-II-SS-RR-AA.wav``, 16-bit mono PCM at espeak-ng's own 22,050 Hz (the loader resamples): per
speaker 2 statements × 2 repetitions × (neutral at intensity 01 + 4 emotions × 2 intensities) = 36 clips.

Every clip is a pure function of the seed and its file name (its own ``numpy`` stream; espeak-ng is deterministic),
so the corpus does not depend on how many speakers are generated or in which order.

``--voices public`` draws the actors from espeak-ng variants that no client-corpus actor uses (``PUBLIC_MALE``,
``PUBLIC_FEMALE``; at most 12 actors): a server's public corpus of other speakers, e.g.
``--out runs/espeak-public-voices --speakers 12 --seed 1 --voices public``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

SAMPLE_RATE = 22050
"""espeak-ng's output rate; files are written at it unchanged."""
STATEMENTS = ("The boat is leaving the harbour tonight.", "Somebody left the lights on in the kitchen.")
"""RAVDESS statement codes 01 and 02 (the loader accepts no others)."""
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "adam", "Andy", "david", "john")
FEMALE = ("f1", "f2", "f3", "f4", "f5", "Annie", "Andrea", "Alicia", "belinda", "steph", "aunty", "anika")
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
MAX_SPEAKERS = 2 * len(MALE)
PUBLIC_MALE = ("benjamin", "caleb", "edward", "gustave", "norbert", "paul")
PUBLIC_FEMALE = ("linda", "steph2", "steph3", "grandma", "anikaRobot", "whisperf")
"""``--voices public``: espeak-ng variants that no actor of the client corpus uses (every unused female variant
of espeak-ng 1.51), for a server's public corpus of other speakers (``federation.public_data``)."""
VOICE_SETS = {"clients": (MALE, FEMALE), "public": (PUBLIC_MALE, PUBLIC_FEMALE)}

# Shifts from the speaker's neutral baseline at intensity 01 (normal): pitch, range and rate in % (SSML prosody),
# level in dB, word gap in espeak-ng -g units (10 ms), tilt = high-frequency emphasis (see ``_tilt``).
EMOTIONS: dict[str, dict[str, float]] = {
    "01": {"pitch": 0.0, "range": 0.0, "rate": 0.0, "level": 0.0, "gap": 0.0, "tilt": 0.0},  # neutral
    "03": {"pitch": 12.0, "range": 35.0, "rate": 6.0, "level": 2.0, "gap": 0.0, "tilt": 0.1},  # happy
    "04": {"pitch": -10.0, "range": -35.0, "rate": -15.0, "level": -4.0, "gap": 3.0, "tilt": -0.15},  # sad
    "05": {"pitch": 8.0, "range": 45.0, "rate": 12.0, "level": 5.0, "gap": 0.0, "tilt": 0.25},  # angry
    "06": {"pitch": 18.0, "range": -10.0, "rate": 15.0, "level": 1.0, "gap": 1.0, "tilt": 0.15},  # fearful
}
STRONG = 1.8
"""Intensity 02 multiplies every shift by this (neutral has intensity 01 only, as in RAVDESS)."""
JITTER = {"pitch": 7.0, "range": 20.0, "rate": 7.0, "level": 2.5, "gap": 1.0, "tilt": 0.1}
"""Per-utterance Gaussian jitter (standard deviation, same units); fear's range gets twice this (up or down)."""
LIMITS = {"pitch": (-50.0, 100.0), "range": (-90.0, 200.0), "rate": (-50.0, 100.0), "gap": (0.0, 12.0)}


def clip_names(*, speakers: int, statements: int = 2, repetitions: int = 2, intensities: int = 2) -> list[str]:
    """Every file stem ``03-01-EE-II-SS-RR-AA`` the corpus holds, in generation order."""
    names = []
    for actor in range(1, speakers + 1):
        for emotion in EMOTIONS:
            for intensity in range(1, (1 if emotion == "01" else intensities) + 1):
                for statement in range(1, statements + 1):
                    for rep in range(1, repetitions + 1):
                        names.append(f"03-01-{emotion}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}")
    return names


def voice(actor: int, voices: str = "clients") -> str:
    """The espeak-ng voice of an actor (1-based) in the voice set ``voices`` (``VOICE_SETS``): odd actors male
    variants, even female; a language per actor."""
    male, female_names = VOICE_SETS[voices]
    i, female = (actor - 1) // 2, actor % 2 == 0
    return f"{LANGUAGES[(i + 3 * female) % len(LANGUAGES)]}+{(female_names if female else male)[i]}"


def max_speakers(voices: str = "clients") -> int:
    """How many actors the voice set ``voices`` has voices for."""
    return 2 * min(len(names) for names in VOICE_SETS[voices])


def speaker_baseline(actor: int, seed: int) -> dict[str, float]:
    """The actor's seeded neutral baseline and recording conditions."""
    r = np.random.default_rng([seed, actor])
    return {
        "p": float(r.integers(35, 66)),  # espeak-ng -p (0-99, default 50)
        "s": float(r.integers(150, 191)),  # espeak-ng -s words per minute
        "range": float(r.uniform(-15.0, 15.0)),  # own habitual pitch range, % of the voice's
        "expressive": float(r.uniform(0.6, 1.4)),  # how strongly this speaker acts the emotions
        "gain_db": float(r.uniform(-12.0, -6.0)),  # microphone level
        "noise_db": float(r.uniform(-62.0, -46.0)),  # room-noise RMS, dBFS
        "noise_pole": float(r.uniform(0.0, 0.95)),  # noise colour: 0 white, near 1 rumble
    }


def utterance_params(name: str, seed: int) -> dict[str, float]:
    """Prosody and signal parameters of one clip (file stem), baseline + scaled emotion shift + jitter."""
    _, _, emotion, intensity, statement, rep, actor = (int(x) for x in name.split("-"))
    code = f"{emotion:02d}"
    base = speaker_baseline(actor, seed)
    r = np.random.default_rng([seed, actor, emotion, intensity, statement, rep, 1])
    scale = base["expressive"] * (STRONG if intensity == 2 else 1.0)
    p = {}
    for key, shift in EMOTIONS[code].items():
        spread = JITTER[key] * (2.0 if code == "06" and key == "range" else 1.0)
        p[key] = scale * shift + float(r.normal(0.0, spread))
    p["range"] += base["range"]
    for key, (lo, hi) in LIMITS.items():
        p[key] = float(np.clip(p[key], lo, hi))
    p["level"] += base["gain_db"]
    p["noise_db"] = base["noise_db"] + float(r.normal(0.0, 1.5))
    p["lead_s"], p["tail_s"] = (float(x) for x in r.uniform(0.15, 0.5, size=2))
    return p


def _ssml(text: str, p: dict[str, float]) -> str:
    attrs = " ".join(f'{key}="{p[key]:+.0f}%"' for key in ("pitch", "range", "rate"))
    return f"<speak><prosody {attrs}>{text}</prosody></speak>"


def espeak(text: str, *, voice_name: str, pitch: int, speed: int, gap: int, workdir: Path) -> np.ndarray:
    """Render SSML ``text`` with espeak-ng; float64 mono at ``SAMPLE_RATE``."""
    wav = workdir / "espeak.wav"
    cmd = ["espeak-ng", "-m", "-z", "-v", voice_name, "-p", str(pitch), "-s", str(speed), "-g", str(gap), "-a", "70"]
    subprocess.run([*cmd, "-w", str(wav), text], check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float64")
    if rate != SAMPLE_RATE or audio.ndim != 1 or audio.size == 0:
        raise RuntimeError(f"espeak-ng gave {audio.shape} samples at {rate} Hz for {voice_name}")
    return np.asarray(audio)


def _tilt(x: np.ndarray, t: float) -> np.ndarray:
    """First-order spectral tilt: gain 1 at DC, 1 + 2t at Nyquist (t > 0 brighter, t < 0 duller)."""
    return np.asarray(lfilter([1.0 + t, -t], [1.0], x))


def render(name: str, *, seed: int, workdir: Path, voices: str = "clients") -> np.ndarray:
    """One clip (file stem ``03-01-EE-II-SS-RR-AA``): speech, then tilt, level, padding and room noise."""
    statement, actor = int(name.split("-")[4]), int(name.split("-")[6])
    base = speaker_baseline(actor, seed)
    p = utterance_params(name, seed)
    speech = espeak(
        _ssml(STATEMENTS[statement - 1], p),
        voice_name=voice(actor, voices),
        pitch=int(base["p"]),
        speed=int(base["s"]),
        gap=round(p["gap"]),
        workdir=workdir,
    )
    speech = _tilt(speech, p["tilt"])
    speech *= 10 ** (p["level"] / 20) / max(float(np.sqrt(np.mean(speech**2))), 1e-9) * 0.1  # level re -20 dBFS
    lead, tail = round(p["lead_s"] * SAMPLE_RATE), round(p["tail_s"] * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    r = np.random.default_rng([seed, *(int(v) for v in name.split("-")), 2])
    noise = lfilter([1.0], [1.0, -base["noise_pole"]], r.standard_normal(x.size))
    noise *= 10 ** (p["noise_db"] / 20) / float(np.sqrt(np.mean(noise**2)))
    return np.clip(x + noise, -1.0, 32767 / 32768)


def make_corpus(
    out: Path,
    *,
    speakers: int = 12,
    seed: int = 0,
    statements: int = 2,
    repetitions: int = 2,
    intensities: int = 2,
    voices: str = "clients",
) -> list[Path]:
    """Write the corpus under ``out/Actor_AA/`` (existing files of the same names are overwritten).

    Args:
        out: the corpus root (``data.path``).
        speakers: number of actors, 1..``max_speakers(voices)``.
        seed: every random choice derives from it.
        voices: ``clients`` (the corpus of the clients and test speakers) or ``public`` (other espeak-ng variants).
        statements, repetitions, intensities: how many of RAVDESS's codes 01/02 to use (1 or 2 each).

    Returns:
        The written WAV paths, in generation order.
    """
    if voices not in VOICE_SETS:
        raise ValueError(f"voices must be one of {sorted(VOICE_SETS)}, not {voices!r}")
    top = max_speakers(voices)
    if not 1 <= speakers <= top or not all(n in (1, 2) for n in (statements, repetitions, intensities)):
        raise ValueError(f"speakers must be 1..{top} for voices {voices}; statements, repetitions, intensities 1 or 2")
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng)")
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        names = clip_names(speakers=speakers, statements=statements, repetitions=repetitions, intensities=intensities)
        for name in names:
            path = out / f"Actor_{name[-2:]}" / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, render(name, seed=seed, workdir=Path(tmp), voices=voices), SAMPLE_RATE, subtype="PCM_16")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus root to write Actor_NN folders into")
    parser.add_argument("--speakers", type=int, default=12, help=f"number of actors (1-{MAX_SPEAKERS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voices", choices=sorted(VOICE_SETS), default="clients",
                        help="clients: the client corpus's voices; public: other espeak-ng variants (at most "
                             f"{max_speakers('public')} speakers), for the server's public corpus")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        paths = make_corpus(args.out, speakers=args.speakers, seed=args.seed, voices=args.voices)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = sum(sf.info(p).duration for p in paths)
    print(f"{len(paths)} clips, {args.speakers} speakers, {seconds / 60:.1f} min at {SAMPLE_RATE} Hz in {args.out}")
    for actor in range(1, args.speakers + 1):
        print(f"  Actor_{actor:02d}: {voice(actor, args.voices)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
