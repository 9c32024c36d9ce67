"""BERTScore as a torchmetrics metric (the ``bert_score`` package does the scoring, see
:mod:`vlmtrain.metrics.functional.bertscore`)."""

from __future__ import annotations

import os

from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.bertscore import (
    DEFAULT_MODEL,
    KEYS,
    bert_score,
    bert_score_per_sample,
    load_bert_scorer,
)
from vlmtrain.metrics.text_state import decode_groups, decode_texts, encode_groups, encode_texts

__all__ = ["BERTScore", "bert_score"]


class BERTScore(Metric):
    """Mean BERTScore precision / recall / F1 over every sample seen.

    :meth:`update` stores the strings (byte tensors, gathered under DDP); :meth:`compute` scores
    the whole set at once, so idf weights (``idf=True``) come from all references of the evaluated
    set, as ``bert_score.score`` computes them. The model is loaded on the first :meth:`compute`
    (on the metric's device) and kept for later ones; it is not a submodule, so it stays out of
    checkpoints.

    Args:
        model_type, num_layers, idf, rescale_with_baseline, baseline_path, lang,
        use_fast_tokenizer: see :func:`vlmtrain.metrics.functional.bertscore.load_bert_scorer`.
        batch_size: sentences per forward pass.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        model_type: str = DEFAULT_MODEL,
        num_layers: int | None = None,
        idf: bool = False,
        rescale_with_baseline: bool = False,
        baseline_path: str | os.PathLike | None = None,
        lang: str = "en",
        batch_size: int = 64,
        use_fast_tokenizer: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._scorer_options = dict(
            model_type=model_type, num_layers=num_layers, idf=idf,
            rescale_with_baseline=rescale_with_baseline, baseline_path=baseline_path, lang=lang,
            use_fast_tokenizer=use_fast_tokenizer,
        )
        self.batch_size = batch_size
        self._scorer = None  # a plain object (not an nn.Module): never registered or saved
        for name in ("pred_bytes", "pred_lens", "ref_bytes", "ref_lens", "ref_counts"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Store a batch.

        Args:
            predictions: B candidate captions.
            references: B lists of references.
        """
        if len(predictions) != len(references):
            raise ValueError(
                f"bertscore: {len(predictions)} predictions but {len(references)} reference lists"
            )
        data, lens = encode_texts(predictions)
        self.pred_bytes.append(data.to(self.device))
        self.pred_lens.append(lens.to(self.device))
        data, lens, counts = encode_groups(references)
        self.ref_bytes.append(data.to(self.device))
        self.ref_lens.append(lens.to(self.device))
        self.ref_counts.append(counts.to(self.device))

    def _get_scorer(self):
        device = str(self.device)
        if self._scorer is None:
            self._scorer = load_bert_scorer(device=device, **self._scorer_options)
        elif self._scorer.device != device:  # the metric was moved after the first compute()
            self._scorer._model.to(device)
            self._scorer.device = device
        return self._scorer

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"bertscore_precision", "bertscore_recall", "bertscore_f1"}`` (float64)."""
        predictions = decode_texts(self.pred_bytes, self.pred_lens)
        if not predictions:
            raise RuntimeError("BERTScore.compute(): no samples; call update() first")
        references = decode_groups(self.ref_bytes, self.ref_lens, self.ref_counts)
        values = bert_score_per_sample(predictions, references, self._get_scorer(), self.batch_size)
        return {key: v.double().mean().to(self.device) for key, v in zip(KEYS, values)}
