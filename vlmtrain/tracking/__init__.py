"""Experiment tracking helpers (W&B mode selection, config redaction)."""
