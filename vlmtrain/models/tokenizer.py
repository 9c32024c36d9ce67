"""A small byte-level BPE tokenizer trained locally for the offline tiny models.

The real Qwen2.5-VL and PaliGemma tokenizers come from the hub, which is unreachable offline; the
tiny twins need a tokenizer with the same *kind* of behaviour (byte-level BPE: no unknown token
ever, special tokens never split, chat template) and a vocabulary small enough that embedding
tables stay tiny. Training on the synthetic corpus makes every frequent answer a single token.

Every text segment gets a leading space before byte-level splitting (GPT-2's
``add_prefix_space``), so a word is the same token at the start of an answer as inside a caption
("red" and " red" are both ``Ġred``): what the caption stage teaches about colour and shape words
carries over to one-word VQA answers. With two different ids, a tiny model starting from random
init had to learn every answer word twice and sat at chance on colour questions much longer.
The decoder drops that one leading space again (as SentencePiece tokenizers do), so decoding
an answer's ids gives exactly the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast


def train_bpe(
    corpus: Iterable[str],
    special_tokens: Sequence[str],
    vocab_size: int = 512,
    **token_roles: str,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer.

    Args:
        corpus: texts to learn merges from (deterministic for a fixed corpus order).
        special_tokens: tokens added atomically, ids 0..len-1 in this order.
        vocab_size: total vocabulary size including the 256 byte symbols and specials.
        **token_roles: ``eos_token=``, ``pad_token=``, ``bos_token=`` ... set on the wrapper.

    Returns:
        A ``PreTrainedTokenizerFast`` that ``save_pretrained``/``from_pretrained`` round-trip.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    # Fuse, then strip one leading space from the whole text (not from every token).
    tok.decoder = decoders.Sequence(
        [decoders.ByteLevel(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **token_roles)
