"""The one exception family of fedsered.

Every error a user can cause (a bad config, a bad file, an exhausted privacy budget, a malformed payload) is a
``FedseredError``. The CLI prints it as one line — what, where, what was expected — and exits non-zero without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FedseredError(Exception):
    """Base class: a problem with the user's input, described in one line."""


class ConfigError(FedseredError):
    """A configuration file or override is invalid (names the file and the key path)."""


class DataError(FedseredError):
    """A corpus, audio file, feature cache or partition is invalid (names the file, speaker or client)."""


class PrivacyBudgetError(FedseredError):
    """A privacy release would exceed a budget, or a DP setting cannot be met."""


class OutputError(FedseredError):
    """A run folder (``--out``) cannot be used: not a folder, not writable, held by another run, or holding a file
    fedsered did not write where it would write one."""


class PayloadError(FedseredError):
    """A shared artefact (synthetic set, model) failed validation."""
