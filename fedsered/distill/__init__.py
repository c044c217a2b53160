"""Dataset distillation methods (each turns a client's private features into a small synthetic set).

Public API:
- ``distil(data, method=..., ipc=..., cfg=..., model_cfg=..., n_classes=..., init_state=..., seed=...)`` →
  ``SyntheticSet`` (methods ``random``, ``herding``, ``gm``, ``dm``, ``mtt``, ``merf``);
- ``release_statistics`` → ``MerfStatistics``: merf's release alone, for server-side synthesis;
- ``SyntheticSet``, ``save_set``, ``load_set``, ``validate_set`` — the shared artefact and its checks;
- ``evaluate_set`` and ``eval_train_config`` — UAR of fresh models trained on a set (θ₀ and random inits).
"""

from fedsered.distill.api import METHODS, MerfStatistics, distil, release_statistics
from fedsered.distill.evaluate import eval_train_config, evaluate_set, train_on_set
from fedsered.distill.synthetic_set import REQUIRED_META, SyntheticSet, load_set, make_meta, save_set, validate_set

__all__ = [
    "METHODS",
    "REQUIRED_META",
    "MerfStatistics",
    "SyntheticSet",
    "distil",
    "eval_train_config",
    "evaluate_set",
    "load_set",
    "make_meta",
    "release_statistics",
    "save_set",
    "train_on_set",
    "validate_set",
]
