"""Torch-free functional cores of the metrics: plain ``fn(predictions, references) -> dict``.

Modules here import neither torch nor torchmetrics, so the command-line evaluator
(``python -m vlmtrain.evaluate``) starts fast; the torchmetrics classes one package up call the
same functions. This file imports nothing, so each core loads only its own dependencies.
"""
