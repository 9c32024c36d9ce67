"""SPICE as a torchmetrics metric (the official SPICE 1.0 jar, see
:mod:`vlmtrain.metrics.functional.spice` for the command, the parsing and the install checks)."""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.spice import SpiceNotInstalledError, spice_score
from vlmtrain.metrics.text_state import decode_groups, decode_texts, encode_groups, encode_texts

__all__ = ["Spice", "SpiceNotInstalledError", "spice_score"]


class Spice(Metric):
    """Corpus SPICE over every caption seen, in [0, 1].

    :meth:`update` only stores the strings (as byte tensors, so they sync under DDP); the jar runs
    once in :meth:`compute` on the whole evaluated set, as pycocoevalcap does. Under DDP every rank
    runs it on the gathered set and gets the same value.

    Args:
        tokenize, lib_dir, java, cache_dir, use_cache, memory, timeout: see
            :func:`vlmtrain.metrics.functional.spice.spice_score`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        tokenize: bool = True,
        lib_dir: str | os.PathLike | None = None,
        java: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        memory: str = "8G",
        timeout: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._options = dict(tokenize=tokenize, lib_dir=lib_dir, java=java, cache_dir=cache_dir,
                             use_cache=use_cache, memory=memory, timeout=timeout)
        for name in ("pred_bytes", "pred_lens", "ref_bytes", "ref_lens", "ref_counts"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Store a batch.

        Args:
            predictions: B captions.
            references: B lists of reference captions.
        """
        if len(predictions) != len(references):
            raise ValueError(
                f"spice: {len(predictions)} predictions but {len(references)} reference lists"
            )
        data, lens = encode_texts(predictions)
        self.pred_bytes.append(data.to(self.device))
        self.pred_lens.append(lens.to(self.device))
        data, lens, counts = encode_groups(references)
        self.ref_bytes.append(data.to(self.device))
        self.ref_lens.append(lens.to(self.device))
        self.ref_counts.append(counts.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"spice": float64 scalar}`` (runs the jar; minutes for thousands of images)."""
        predictions = decode_texts(self.pred_bytes, self.pred_lens)
        if not predictions:
            raise RuntimeError("Spice.compute(): no samples; call update() first")
        references = decode_groups(self.ref_bytes, self.ref_lens, self.ref_counts)
        value = spice_score(predictions, references, **self._options)["spice"]
        return {"spice": torch.tensor(value, dtype=torch.float64, device=self.device)}
