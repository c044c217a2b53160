"""Real emotional-speech corpora on local disk: find the files, read their labels, load them as an ``AudioCorpus``.

This package owns the file conventions of each corpus (RAVDESS, CREMA-D, EmoDB, IEMOCAP, and a CSV manifest for
anything else), the mapping of corpus emotions onto the configured emotion set (``data.label_map``), and the
bookkeeping of what was left out: files outside the emotion set are counted in ``AudioCorpus.excluded`` and bad
files either stop the run or are listed in ``AudioCorpus.skipped`` (``data.on_bad_file``) — nothing is dropped
silently. Decoding one clip is ``fedsered.data.audio``'s job.

Each scanner returns the corpus' native, canonical lowercase emotion names (e.g. IEMOCAP's ``exc`` is
``excited``); merging classes is done by the config's ``label_map``. ``SUGGESTED_LABEL_MAPS`` lists the common
choices, e.g. ``{"excited": "happy"}`` for the usual 4-class IEMOCAP setup (neutral, happy+excited, angry, sad).

Scanner conventions shared by the folder corpora: only ``.wav`` files count (any case, e.g. ``.WAV``), other files
and hidden files (``.name``, such as macOS ``._`` resource forks) are ignored; a ``.wav`` whose name breaks the
convention or carries an unknown code is bad input.

Modules: one per corpus (``ravdess``, ``crema_d``, ``emodb``, ``iemocap``, ``manifest``), each with its scanner;
``scanning`` (the ``Entry`` / ``Scan`` records, ``CONVENTIONS`` and the file discovery they share); ``loading``
(the ``SCANNERS`` registry, label mapping and ``load_corpus``); ``summary`` (``corpus_summary``).
"""

from fedsered.data.corpora.crema_d import scan_crema_d
from fedsered.data.corpora.emodb import scan_emodb
from fedsered.data.corpora.iemocap import parse_emo_evaluation, scan_iemocap
from fedsered.data.corpora.loading import (
    EMOTIONS,
    SCANNERS,
    SUGGESTED_LABEL_MAPS,
    load_corpus,
    resolve_label_map,
    scan_corpus,
    select_emotions,
)
from fedsered.data.corpora.manifest import scan_manifest
from fedsered.data.corpora.ravdess import EXCLUDED_NOT_AUDIO_ONLY, EXCLUDED_SONG, scan_ravdess
from fedsered.data.corpora.scanning import CONVENTIONS, Entry, Scan
from fedsered.data.corpora.summary import corpus_summary

__all__ = [
    "CONVENTIONS",
    "EMOTIONS",
    "EXCLUDED_NOT_AUDIO_ONLY",
    "EXCLUDED_SONG",
    "SCANNERS",
    "SUGGESTED_LABEL_MAPS",
    "Entry",
    "Scan",
    "corpus_summary",
    "load_corpus",
    "parse_emo_evaluation",
    "resolve_label_map",
    "scan_corpus",
    "scan_crema_d",
    "scan_emodb",
    "scan_iemocap",
    "scan_manifest",
    "scan_ravdess",
    "select_emotions",
]
