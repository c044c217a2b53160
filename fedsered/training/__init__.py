"""Training and evaluation of SER models (plain functions; Flower, the audit and the CLI all call these)."""
