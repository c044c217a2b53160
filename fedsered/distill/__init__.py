"""Dataset distillation methods (each turns a client's private features into a small synthetic set)."""
