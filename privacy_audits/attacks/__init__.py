"""Membership-inference attacks as pure functions over signal matrices.

Each model-based attack takes ``[examples, runs]`` signals and the ``[examples, runs]`` membership of the runs, and
returns ``[examples, runs]`` scores: column ``t`` scores run ``t`` as the target, with every other run as a shadow
(leave-one-out, as in LiRA's evaluation), so the same runs audit every example. Higher score = "member".
"""

from privacy_audits.attacks.dcr import dcr_scores
from privacy_audits.attacks.lira import lira_scores
from privacy_audits.attacks.loss import loss_scores
from privacy_audits.attacks.rmia import rmia_scores

__all__ = ["dcr_scores", "lira_scores", "loss_scores", "rmia_scores"]
