"""SER models for log-Mel input (GroupNorm only: DP-SGD and tiny batches need it) and the fixed initialisation θ₀."""

from fedsered.models.build import build_model, complexity, fixed_init_state

__all__ = ["build_model", "complexity", "fixed_init_state"]
