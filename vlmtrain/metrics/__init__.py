"""Evaluation metrics, each equal to its official implementation (see docs/metrics.md)."""
