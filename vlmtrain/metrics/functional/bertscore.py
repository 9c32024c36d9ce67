"""BERTScore, computed by the ``bert_score`` package (Zhang et al., ICLR 2020).

The scoring itself is the library's: :class:`bert_score.BERTScorer` loads the model once, embeds,
does the greedy cosine matching, the idf weighting and, for lists of references, keeps for each
of P, R and F separately the best value over a candidate's references (``max`` over the
reference axis), exactly as ``bert_score.score`` does. Only the glue is written here:

* idf weights come from the evaluated set's references (every reference of every sample, as
  ``bert_score.score(idf=True)`` computes them from its flattened reference list);
* the baseline file for ``rescale_with_baseline`` is checked before the model is loaded (the
  library only prints a warning in ``score()`` and returns unscaled values when it is missing);
* ``num_layers`` is required for models the library has no default layer for (local paths);
* RoBERTa/GPT-2 tokenizers are loaded with ``add_prefix_space=True``. ``bert_score`` passes
  ``add_prefix_space=True`` to ``tokenizer.encode``; transformers >= 5 ignores that argument (its
  RoBERTa tokenizer is the Rust one), so the first word would be encoded without its leading
  space (``a`` instead of ``Ġa``), unlike under transformers 4 where the published scores and
  the rescale baselines were computed. Setting it at load time restores that encoding.

Defaults follow ``bert_score`` for English: ``roberta-large``, layer 17, no idf, no rescaling.
This module imports neither torch nor transformers at import time (the command-line evaluator
imports it to list metrics); they are imported when a score is computed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vlmtrain.metrics.functional._inputs import check_answer_inputs

if TYPE_CHECKING:
    from bert_score import BERTScorer
    from torch import Tensor

DEFAULT_MODEL = "roberta-large"
KEYS = ("bertscore_precision", "bertscore_recall", "bertscore_f1")


def _baseline_file(model_type: str, lang: str, baseline_path: str | os.PathLike | None) -> str:
    """The rescale baseline the library would read, checked to exist."""
    import bert_score

    if baseline_path is not None:
        if not Path(baseline_path).is_file():
            raise FileNotFoundError(f"bertscore: baseline_path {baseline_path} does not exist")
        return str(baseline_path)
    folder = Path(bert_score.__file__).parent / "rescale_baseline" / lang
    path = folder / f"{model_type}.tsv"
    if not path.is_file():
        known = sorted(str(p.relative_to(folder))[:-4] for p in folder.rglob("*.tsv"))
        raise FileNotFoundError(
            f"bertscore: rescale_with_baseline=True but bert_score ships no baseline for model "
            f"{model_type!r} and lang {lang!r} (looked for {path}). Baselines exist for: "
            f"{', '.join(known) or 'none'}. For a local copy of one of them pass "
            "baseline_path=<that .tsv>; for another model, compute a baseline file (a CSV with "
            "columns LAYER,P,R,F, one row per layer) or turn rescaling off."
        )
    return str(path)


def _num_layers(model_type: str, num_layers: int | None) -> int:
    from bert_score.utils import model2layers

    if num_layers is not None:
        return num_layers
    if model_type not in model2layers:
        raise ValueError(
            f"bertscore: no default layer for model {model_type!r}; pass num_layers (the layer "
            "whose output is used, e.g. 6 for all-MiniLM-L6-v2; roberta-large: 17)."
        )
    return model2layers[model_type]


def load_bert_scorer(
    model_type: str = DEFAULT_MODEL,
    num_layers: int | None = None,
    idf: bool = False,
    rescale_with_baseline: bool = False,
    baseline_path: str | os.PathLike | None = None,
    lang: str = "en",
    device: str | None = None,
    use_fast_tokenizer: bool = False,
) -> BERTScorer:
    """Load the model once; reuse the scorer for many :func:`bert_score_per_sample` calls.

    Args:
        model_type: hub name or local folder (set ``HF_HUB_OFFLINE=1`` when the hub is out of
            reach). Local folders need ``num_layers`` (and ``baseline_path`` to rescale).
        num_layers: layer whose output is used (default: ``bert_score``'s tuned layer).
        idf: weight tokens by idf over the references of each scored set.
        rescale_with_baseline: map scores with the shipped baseline ``(s - b) / (1 - b)``.
        baseline_path: baseline file, for models the library ships none for.
        lang: language of the baseline folder.
        device: ``"cpu"``, ``"cuda:0"``, ...; None: cuda when available (as ``bert_score``).
        use_fast_tokenizer: passed to ``bert_score``.

    Raises:
        ValueError / FileNotFoundError: unknown layer or missing baseline, before loading weights.
    """
    num_layers = _num_layers(model_type, num_layers)
    if rescale_with_baseline:
        baseline_path = _baseline_file(model_type, lang, baseline_path)
    from bert_score import BERTScorer

    from vlmtrain.models.hub import offline_unless_reachable

    # no hub: the local cache at once, instead of a minute of retries
    with offline_unless_reachable(model_type, "--bertscore-model (or model_type)"):
        scorer = BERTScorer(
            model_type=model_type, num_layers=num_layers, idf=idf, lang=lang, device=device,
            rescale_with_baseline=rescale_with_baseline, baseline_path=baseline_path,
            nthreads=0,  # idf counting in-process: a fork next to a loaded (CUDA) model is unsafe
            use_fast_tokenizer=use_fast_tokenizer,
        )
        _restore_prefix_space(scorer, model_type, use_fast_tokenizer)
    return scorer


def _restore_prefix_space(scorer: BERTScorer, model_type: str, use_fast: bool) -> None:
    """Reload a RoBERTa/GPT-2 tokenizer with ``add_prefix_space=True`` (see module docstring)."""
    from transformers import AutoTokenizer, GPT2Tokenizer, RobertaTokenizer

    if isinstance(scorer._tokenizer, (GPT2Tokenizer, RobertaTokenizer)):
        # BERTScorer has no tokenizer argument, so its attribute is replaced.
        scorer._tokenizer = AutoTokenizer.from_pretrained(
            model_type, use_fast=use_fast, add_prefix_space=True
        )


def _check_references(references: Sequence[Sequence[str]]) -> None:
    for i, refs in enumerate(references):
        for j, ref in enumerate(refs):
            if not ref.strip():
                raise ValueError(
                    f"bertscore: references[{i}][{j}] is empty; bert_score would silently score "
                    "it 0. Remove the empty reference."
                )


def bert_score_per_sample(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    scorer: BERTScorer,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample precision, recall and F1, each a float32 tensor of shape ``(N,)`` on CPU.

    An empty prediction scores 0 (the library's rule, with its warning); an empty reference is
    an error. With ``scorer.idf`` the idf weights are computed from all of ``references``.
    """
    check_answer_inputs(predictions, references, "bertscore")
    _check_references(references)
    refs = [list(r) for r in references]
    if scorer.idf:
        with warnings.catch_warnings():  # "Overwriting the previous importance weights": intended
            warnings.simplefilter("ignore", UserWarning)
            scorer.compute_idf([r for group in refs for r in group])
    precision, recall, f1 = scorer.score(list(predictions), refs, batch_size=batch_size)
    return precision, recall, f1


def bert_score(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    model_type: str = DEFAULT_MODEL,
    num_layers: int | None = None,
    idf: bool = False,
    rescale_with_baseline: bool = False,
    baseline_path: str | os.PathLike | None = None,
    lang: str = "en",
    batch_size: int = 64,
    device: str | None = None,
    scorer: BERTScorer | None = None,
) -> dict[str, float]:
    """Mean BERTScore precision, recall and F1 over N samples.

    Args:
        predictions: N candidate captions.
        references: N non-empty lists of references (best match per candidate, per P/R/F).
        model_type, num_layers, idf, rescale_with_baseline, baseline_path, lang, device: see
            :func:`load_bert_scorer`; ignored when ``scorer`` is given.
        batch_size: sentences per forward pass (does not change the scores beyond float noise).
        scorer: an already loaded scorer (from :func:`load_bert_scorer`).

    Returns:
        ``{"bertscore_precision", "bertscore_recall", "bertscore_f1"}``: means over samples.
    """
    check_answer_inputs(predictions, references, "bertscore")  # before loading a large model
    _check_references(references)
    if scorer is None:
        scorer = load_bert_scorer(model_type, num_layers, idf, rescale_with_baseline,
                                  baseline_path, lang, device)
    values = bert_score_per_sample(predictions, references, scorer, batch_size)
    return {key: float(v.double().mean()) for key, v in zip(KEYS, values)}
