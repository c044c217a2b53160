"""The embedded corpus: a procedural generator of emotional speech, the project's default data (no outside files).

This package owns the synthetic speech model and nothing else. ``generate_embedded_corpus`` returns an
``AudioCorpus`` of ``n_speakers x len(emotions) x utterances_per_emotion`` float32 mono clips.

Its modules follow the generator's stages: ``emotions`` (emotion profiles and the difficulty knobs), ``speakers``
(speaker voices and how each acts an emotion), ``prosody`` (syllable plan and F0 contour), ``source_filter``
(glottal source, formant and noise filters), ``utterance`` (one clip: level, background noise, limiting) and
``corpus`` (the content key and the corpus assembly).

Speech model (source-filter, all vectorised with numpy / scipy):

* **Speakers** (one random stream each, role ``corpus/speaker/{k}``) have their own F0 baseline (even ``k`` male,
  ~100-130 Hz; odd ``k`` female, ~180-230 Hz), vocal-tract length (formant scale 0.85-1.2), speaking rate, F0 range,
  voice quality (breathiness, glottal closing quotient, spectral tilt), jitter, shimmer, loudness, and an
  expressiveness with which they act each emotion (role ``corpus/speaker/{k}/style/{emotion}``).
* **Utterances** (role ``corpus/utterance/{k}/{emotion}/{j}``) are sequences of syllables: an optional consonant
  onset (a band-passed fricative noise, or a plosive closure and burst), then a vowel, with occasional pauses. The
  voiced source is a glottal-flow derivative (Rosenberg-like pulses) driven by a cumulative phase, with per-cycle
  jitter and shimmer and flow-modulated aspiration noise, shaped by a first-order high shelf (spectral tilt) and
  filtered by the six formant resonators of a random vowel scaled by the speaker's tract length. The F0 contour is
  declination plus per-syllable accents plus slow drift (plus tremor in fear), smoothed over ~70 ms. Background
  noise (white/brown mix) is added at an SNR drawn around ``snr_db``.
* **Emotions** (``EMOTION_PROFILES``) shift F0 mean, F0 range, intensity, speech rate, high-frequency energy,
  jitter and breathiness in the directions of Banse & Scherer (1996) and Scherer (2003): anger up on all, happiness
  up, fear up in F0 and rate with more jitter, sadness down on all, boredom like sadness but flatter; neutral is the
  reference. Calm is a slightly lower-arousal neutral.
* **Level**: every clip's vowels are scaled to a fixed reference RMS (``REFERENCE_RMS``) times the speaker, emotion
  and utterance gain, so intensity differences between emotions survive; peaks above 0.8 are soft-limited into
  (-1, 1).

``difficulty`` in [0, 1] is a smooth, monotone knob: the emotion effect sizes are scaled by ``1.5 - difficulty``
(1.5x the nominal profiles at 0, 1x at the default 0.5, 0.5x at 1), every random spread (per utterance and per
speaker) by ``0.5 + difficulty``, and the mean SNR is ``snr_db + 10 * (0.5 - difficulty)`` dB.

The audio is a pure function of ``(GENERATOR_VERSION, cfg, emotions, sample_rate, seed)``, so the digest of those
is the content key of the corpus (the feature cache keys on it). Change ``GENERATOR_VERSION`` whenever a change in
this package changes the audio.
"""

from fedsered.data.embedded.corpus import GENERATOR_VERSION, corpus_digest, generate_embedded_corpus
from fedsered.data.embedded.emotions import EMOTION_PROFILES, SUPPORTED_EMOTIONS, EmotionProfile
from fedsered.data.embedded.speakers import speaker_ids
from fedsered.data.embedded.utterance import REFERENCE_RMS

__all__ = [
    "EMOTION_PROFILES",
    "GENERATOR_VERSION",
    "REFERENCE_RMS",
    "SUPPORTED_EMOTIONS",
    "EmotionProfile",
    "corpus_digest",
    "generate_embedded_corpus",
    "speaker_ids",
]
