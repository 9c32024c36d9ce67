"""Input checks, PTB tokenization and token-id encoding shared by the caption n-gram metrics.

pycocoevalcap scores every caption metric on text that its ``PTBTokenizer`` produced; its scorers
then split on whitespace (BLEU, CIDEr-D: ``str.split()``; ROUGE-L: ``str.split(" ")``). Here the
words of the whole evaluated set are mapped once to integer ids and the n-grams of each order to
dense ids (numpy, hierarchical: a k-gram is the pair (its (k-1)-gram id, its last word id)), so the
metrics count and clip n-grams with sorts and bincounts over int64 arrays instead of Python dicts
of string tuples. This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np


def check_caption_inputs(
    predictions: Sequence[str], references: Sequence[Sequence[str]], metric: str
) -> None:
    """Validate ``predictions`` / ``references`` and name the first bad record.

    pycocoevalcap ``assert``s that every image has at least one reference (``len(ref) > 0``) and
    crashes on an empty set (CIDEr: ``max()`` of an empty sequence; ROUGE-L: NaN mean); both are
    a ValueError here that names the record. Empty strings are valid (they score as in
    pycocoevalcap).

    Args:
        predictions: N candidate captions.
        references: N non-empty lists of reference captions.
        metric: metric name used in the error message.

    Raises:
        ValueError: lengths differ, the set is empty, or a reference list is empty.
        TypeError: a container is a bare string or a caption is not a ``str``.
    """
    if _well_formed(predictions, references):
        return
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError(
            f"{metric}: predictions and references must be lists (one entry per image), not a "
            "string"
        )
    if len(predictions) != len(references):
        raise ValueError(
            f"{metric}: {len(predictions)} predictions but {len(references)} reference lists; "
            "pass one list of reference captions per prediction"
        )
    if len(predictions) == 0:
        raise ValueError(f"{metric}: no samples to score (empty predictions)")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise TypeError(f"{metric}: predictions[{i}] must be a str, got {type(pred).__name__}")
        if isinstance(refs, str):
            raise TypeError(f"{metric}: references[{i}] is a str; wrap it in a list: [{refs!r}]")
        if len(refs) == 0:
            raise ValueError(
                f"{metric}: references[{i}] is empty; every image needs at least one reference "
                "caption (pycocoevalcap asserts len(ref) > 0)"
            )
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise TypeError(
                    f"{metric}: references[{i}][{j}] must be a str, got {type(ref).__name__}"
                )


def _well_formed(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> bool:
    """The common case, checked with C-level loops: lists of str and non-empty lists of str.

    False sends the inputs to the per-record checks, which name the first bad record.
    """
    if type(predictions) not in (list, tuple) or type(references) not in (list, tuple):
        return False
    return (0 < len(predictions) == len(references)
            and set(map(type, predictions)) == {str}
            and set(map(type, references)) <= {list, tuple} and all(map(len, references))
            and set(map(type, chain.from_iterable(references))) == {str})


def prepare_captions(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool,
    metric: str,
) -> tuple[list[str], list[list[str]]]:
    """Validate, then PTB-tokenize (optional) as pycocoevalcap's ``COCOEvalCap`` does.

    pycocoevalcap tokenizes the references and the candidates as two separate streams (one
    ``PTBTokenizer.tokenize`` call each); the end of a caption can depend on the next caption of
    its stream, so the two streams are kept apart here too.

    Args:
        predictions: N candidate captions.
        references: N non-empty lists of reference captions.
        tokenize: run the PTB tokenizer (lower-cases, splits punctuation, drops punctuation
            tokens). False: the captions are taken as already tokenized.
        metric: metric name used in error messages.

    Returns:
        ``(predictions, references)`` as new lists.
    """
    check_caption_inputs(predictions, references, metric)
    preds, refs = list(predictions), [list(r) for r in references]
    if not tokenize:
        return preds, refs
    tokens = _remembered("tokens", preds, refs)
    if tokens is None:
        from vlmtrain.metrics.ptb import tokenize as ptb_tokenize  # lazy: only when asked for
        from vlmtrain.metrics.ptb import tokenize_groups

        tokens = (ptb_tokenize(preds), tokenize_groups(refs))
        _remember("tokens", preds, refs, tokens)
    return list(tokens[0]), [list(r) for r in tokens[1]]


# One-entry memos: consecutive calls on the same captions share the work. The caption metric
# classes of one collection (Bleu, RougeL, CiderD) each tokenize and encode the same stored
# captions in compute(), and BLEU and CIDEr-D count the same n-grams. Only the latest set is
# kept (the next different one replaces it); captions are compared by value, and the memo holds
# its own lists, so a caller changing its lists afterwards cannot alter it.
_LAST: dict[str, tuple[list[str], list[list[str]], Any]] = {}
_LAST_LOCK = threading.Lock()


def _remembered(kind: str, predictions: list[str], references: list[list[str]]) -> Any:
    with _LAST_LOCK:
        last = _LAST.get(kind)
    if last is not None and last[0] == predictions and last[1] == references:
        return last[2]
    return None


def _remember(kind: str, predictions: list[str], references: list[list[str]], value: Any) -> None:
    with _LAST_LOCK:
        _LAST[kind] = (list(predictions), [list(r) for r in references], value)


def forget_shared_sets() -> None:
    """Drop the remembered tokenization and encoding (to time a metric from scratch, or to free
    the memory of a large set)."""
    with _LAST_LOCK:
        _LAST.clear()


def encode_set(predictions: list[str], references: list[list[str]]) -> CaptionSet:
    """The :class:`CaptionSet` of tokenized captions, shared with the previous call when the
    captions are equal (its words and n-gram counts are then computed once for all metrics).

    Args:
        predictions: N tokenized candidate captions.
        references: N lists of tokenized reference captions.
    """
    corpus = _remembered("set", predictions, references)
    if corpus is None:
        corpus = CaptionSet(predictions, references)
        _remember("set", predictions, references, corpus)
    return corpus


@dataclass(frozen=True)
class Ngrams:
    """Counts of the n-grams of one order, per sentence.

    Entries are sorted by ``(sentence, gram)``; sentences ``0..N-1`` are the candidates, ``N..``
    the references in image order.

    Attributes:
        sent: ``(E,)`` int64 sentence index of each entry.
        gram: ``(E,)`` int64 dense n-gram id in ``[0, size)``.
        count: ``(E,)`` int64 occurrences of the n-gram in the sentence (>= 1).
        size: number of distinct n-grams of this order in the corpus.
    """

    sent: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    size: int


@dataclass(frozen=True)
class Words:
    """Token ids of S sentences, concatenated.

    Attributes:
        ids: ``(T,)`` int64 token ids (first-seen order), sentence after sentence.
        lengths: ``(S,)`` int64 token count of each sentence.
        starts: ``(S,)`` int64 offset of each sentence in ``ids``.
    """

    ids: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray


def encode_words(sentences: Sequence[list[str]]) -> Words:
    """Map tokens to integer ids; ``sentences`` are S token lists."""
    flat = list(chain.from_iterable(sentences))
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(flat))}
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    return Words(ids, lengths, _starts(lengths))


def _encode_split(texts: list[str]) -> Words:
    """:func:`encode_words` of ``[t.split() for t in texts]``, with one ``split`` call.

    The texts are joined around a separator token that no text contains (NUL is not whitespace,
    so ``split()`` keeps it as a token); one split of the joined string is several times faster
    than one split per caption. Falls back to per-caption splits if a text contains NUL.
    """
    joined = " \0 ".join(texts)
    if len(texts) == 0 or joined.count("\0") != len(texts) - 1:
        return encode_words([t.split() for t in texts])
    flat = joined.split()
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(flat))}
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    sep = vocab.get("\0", -1)
    is_sep = ids == sep
    bounds = np.concatenate(([-1], np.flatnonzero(is_sep), [len(ids)]))
    lengths = np.diff(bounds) - 1
    ids = ids[~is_sep]
    if sep >= 0:  # keep ids dense: the separator's id goes to the last word of the vocabulary
        last = len(vocab) - 1
        ids[ids == last] = sep
    return Words(ids, lengths, _starts(lengths))


def _starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class CaptionSet:
    """A tokenized evaluation set, encoded once and shared by BLEU, ROUGE-L and CIDEr-D.

    Sentences ``0..N-1`` are the candidates, ``N..N+R-1`` the references, image after image.

    Attributes:
        n_images: N.
        ref_offsets: ``(N,)`` int64 index of each image's first reference among the R.
        ref_counts: ``(N,)`` int64 number of references of each image.
        ref_image: ``(R,)`` int64 image of each reference.
    """

    def __init__(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        self.texts = [*predictions, *chain.from_iterable(references)]
        self.n_images = len(predictions)
        self.ref_counts = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
        self.ref_offsets = _starts(self.ref_counts)
        self.ref_image = np.repeat(np.arange(self.n_images, dtype=np.int64), self.ref_counts)
        self._words: Words | None = None
        self._rouge_words: Words | None = None
        self._ngrams: tuple[Ngrams, ...] = ()

    @property
    def words(self) -> Words:
        """Whitespace tokens (``str.split()``), as BLEU and CIDEr-D split."""
        if self._words is None:
            self._words = _encode_split(self.texts)
        return self._words

    @property
    def rouge_words(self) -> Words:
        """Single-space tokens (``str.split(" ")``), as ROUGE-L splits: "" is one empty token."""
        if self._rouge_words is None:
            nonempty = " ".join(filter(None, self.texts))
            regular = nonempty.isprintable() and "  " not in nonempty and (
                not nonempty or (nonempty[0] != " " and nonempty[-1] != " "))
            if regular:
                # Single-spaced text without other whitespace (PTB output): split(" ") equals
                # split() except that "" gives [""]; reuse the ids, one extra id for "".
                w = self.words
                empty = np.flatnonzero(w.lengths == 0)
                ids = np.insert(w.ids, w.starts[empty], int(w.ids.max(initial=-1)) + 1)
                lengths = np.maximum(w.lengths, 1)
                self._rouge_words = Words(ids, lengths, _starts(lengths))
            else:
                self._rouge_words = encode_words([s.split(" ") for s in self.texts])
        return self._rouge_words

    def ngrams(self, n: int = 4) -> tuple[Ngrams, ...]:
        """Counts of the 1..n-grams of every sentence (whitespace tokens), one entry per order."""
        if len(self._ngrams) < n:
            self._ngrams = _count_ngrams(self.words, n)
        return self._ngrams[:n]


def _count_ngrams(words: Words, n: int) -> tuple[Ngrams, ...]:
    ids, lengths = words.ids, words.lengths
    sent_of_token = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    remaining = np.repeat(words.starts + lengths, lengths) - np.arange(len(ids), dtype=np.int64)
    vocab_size = int(ids.max(initial=0)) + 1
    orders = [_count_per_sentence(sent_of_token, ids, vocab_size)]
    gram_at = ids  # id of the k-gram starting at each token position (valid where remaining >= k)
    for k in range(2, n + 1):
        pos = np.flatnonzero(remaining >= k)
        # (k-1)-gram at p followed by the word at p+k-1: a unique int64 key, made dense again.
        uniq, dense = np.unique(gram_at[pos] * vocab_size + ids[pos + k - 1], return_inverse=True)
        gram_at = np.full(len(ids), -1, dtype=np.int64)
        gram_at[pos] = dense
        orders.append(_count_per_sentence(sent_of_token[pos], dense.astype(np.int64), len(uniq)))
    return tuple(orders)


def _count_per_sentence(sent: np.ndarray, gram: np.ndarray, size: int) -> Ngrams:
    # np.unique(..., return_counts=True) spelled out: a plain sort is about twice as fast.
    keys = np.sort(sent * size + gram)
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))[: len(keys)])
    count = np.diff(np.append(first, len(keys)))
    keys = keys[first]
    return Ngrams(keys // size, keys % size, count.astype(np.int64), size)


def reference_max_counts(corpus: CaptionSet, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (image, n-gram) the highest count over the image's references.

    Args:
        corpus: the encoded set.
        order: n-gram order (1-based).

    Returns:
        ``(keys, max_count)``: sorted unique int64 keys ``image * size + gram`` of the n-grams
        present in some reference of the image, and their maximum count (both ``(U,)``).
    """
    ng = corpus.ngrams()[order - 1]
    is_ref = ng.sent >= corpus.n_images
    image = corpus.ref_image[ng.sent[is_ref] - corpus.n_images]
    keys = image * ng.size + ng.gram[is_ref]
    counts = ng.count[is_ref]
    # Sort by key, then count: the last entry of each key group holds its maximum. One int64
    # sort of key * (max_count + 1) + count when that cannot overflow, else a two-key lexsort.
    scale = int(counts.max(initial=0)) + 1
    if int(keys.max(initial=0)) < (1 << 62) // scale:
        packed = np.sort(keys * scale + counts)
        keys, counts = packed // scale, packed % scale
    else:
        order_idx = np.lexsort((counts, keys))
        keys, counts = keys[order_idx], counts[order_idx]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return keys[last], counts[last]


def candidate_entries(corpus: CaptionSet, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, count)`` of the candidates' n-grams: sorted keys ``image * size + gram``."""
    ng = corpus.ngrams()[order - 1]
    n_cand = int(np.searchsorted(ng.sent, corpus.n_images))
    return ng.sent[:n_cand] * ng.size + ng.gram[:n_cand], ng.count[:n_cand]


def lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at ``query`` keys found in ``sorted_keys``, 0 where absent."""
    if len(sorted_keys) == 0:
        return np.zeros(len(query), dtype=values.dtype)
    idx = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return np.where(sorted_keys[idx] == query, values[idx], 0)
