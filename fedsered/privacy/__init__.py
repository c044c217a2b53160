"""Differential privacy: mechanisms, Opacus accounting and the per-client privacy ledger."""
