"""Differential privacy: mechanisms, Opacus accounting and the per-client privacy ledger.

- ``release``: ``PrivacyRelease`` (mechanism, σ, q, steps) — what is composed; ε is derived, never typed in.
- ``accountant``: ``epsilon_of`` / ``calibrate_noise`` / ``privacy_object`` through Opacus' RDP or PRV accountant.
- ``ledger``: ``PrivacyLedger`` — a client's releases in one atomically written JSON file, budget enforced.
- ``client``: ``client_privacy`` — the ``privacy`` section resolved for one client (overrides, default δ, checks).
- ``policy``: ``effective_privacy`` — a client's own policy, which a server's request can only tighten.
- ``mechanism``: ``DPSpec`` and ``calibrate`` — a mechanism's (q, steps) and the client's ε turned into σ, once.
- ``gaussian``, ``psg``, ``embeddings``: the sampled Gaussian mechanism's parts (Poisson sampling, clipping, noisy
  per-class sums) for gm, dm and merf; ``dpsgd``: DP-SGD through Opacus' ``PrivacyEngine`` (mtt experts, DP-FedAvg).
"""

from fedsered.privacy.accountant import calibrate_noise, epsilon_of, privacy_object, releases_of
from fedsered.privacy.client import ClientPrivacy, client_privacy
from fedsered.privacy.ledger import PrivacyLedger
from fedsered.privacy.release import PrivacyRelease

__all__ = [
    "ClientPrivacy",
    "PrivacyLedger",
    "PrivacyRelease",
    "calibrate_noise",
    "client_privacy",
    "epsilon_of",
    "privacy_object",
    "releases_of",
]
