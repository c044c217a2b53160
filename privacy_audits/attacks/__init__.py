"""Membership-inference attacks as pure functions over signal matrices.

Each model-based attack takes ``[examples, runs]`` signals and the ``[examples, runs]`` membership of the runs, and
returns ``[examples, runs]`` scores: column ``t`` scores run ``t`` as the target, with every other run as a shadow
(leave-one-out, as in LiRA's evaluation), so the same runs audit every example. Attacks on the shared set itself
(DCR, DOMIAS) take the shared records and return ``[examples]`` scores per run. Higher score = "member".
"""

from privacy_audits.attacks.dcr import dcr_scores
from privacy_audits.attacks.domias import domias_scores
from privacy_audits.attacks.lira import lira_scores
from privacy_audits.attacks.loss import loss_scores
from privacy_audits.attacks.rmia import rmia_scores, tune_offline_a

__all__ = ["dcr_scores", "domias_scores", "lira_scores", "loss_scores", "rmia_scores", "tune_offline_a"]
