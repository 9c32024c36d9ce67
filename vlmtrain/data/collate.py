"""Turn samples into model batches: chat layout from the processor, answer-only labels.

Layout per sample: ``prompt ids (with expanded image tokens) + answer ids + end-of-turn``, then for
each follow-up turn (``Sample.followups``) the family's follow-up question text and its answer +
end-of-turn.
The prompt is tokenised by the processor exactly as generation sees it, the answer separately,
and the id lists are concatenated: the boundary is then identical at training and inference
(joint BPE over prompt+answer could merge across it). Labels are -100 everywhere but the answers
and their end-of-turn tokens, so prompts, follow-up questions, padding and image tokens are never
learned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vlmtrain.data.records import Sample, check_sample
from vlmtrain.errors import VLMTrainError
from vlmtrain.models.families import Family

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_POLICIES = ("error", "skip")


class VLMCollator:
    """Collate :class:`Sample` s into a batch for one model family.

    Args:
        processor: the model's Hugging Face processor.
        family: the family adapter (prompt layout, end-of-turn marker).
        max_length: longest sequence in tokens. A too-long answer is cut (its end-of-turn token
            kept); a prompt whose image tokens do not fit is never cut.
        on_bad_sample: ``error`` raises naming the sample; ``skip`` drops it and counts it
            (:attr:`skipped`), logging each skip.
        with_generation: also emit left-padded prompt-only inputs for ``generate`` plus
            references (validation).

    Batch keys: ``input_ids, attention_mask, labels`` (B, T) and the processor's image tensors
    (``pixel_values`` and, for Qwen, ``image_grid_thw``); family-aligned inputs such as
    ``token_type_ids`` (B, T). With generation: ``gen_input_ids, gen_attention_mask`` (B, P),
    ``gen_<aligned>``, ``references`` (list of lists), ``ids`` and ``prompts``.
    """

    def __init__(
        self,
        processor: Any,
        family: Family,
        max_length: int = 512,
        on_bad_sample: str = "error",
        with_generation: bool = False,
    ) -> None:
        if on_bad_sample not in _POLICIES:
            raise VLMTrainError(f"data.on_bad_sample={on_bad_sample!r}: use one of {_POLICIES}")
        self.processor = processor
        self.family = family
        self.max_length = max_length
        self.on_bad_sample = on_bad_sample
        self.with_generation = with_generation
        self.skipped = 0
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        samples = [s for s in samples if self._valid(s)]
        if not samples:
            raise VLMTrainError("every sample of a batch was skipped as bad; check the data")
        enc = self._encode_prompts(samples)
        prompts = [row[mask.bool()] for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
        too_long = [i for i, p in enumerate(prompts) if len(p) + 1 > self.max_length]
        if too_long:
            samples = self._drop_too_long(samples, too_long, [len(p) for p in prompts])
            return self(samples)
        return self._assemble(samples, enc, prompts)

    # -- steps ----------------------------------------------------------------------------
    def _valid(self, sample: Sample) -> bool:
        try:
            check_sample(sample)
        except ValueError as exc:
            if self.on_bad_sample == "error":
                raise VLMTrainError(str(exc)) from exc
            self.skipped += 1
            log.warning("skipping sample (%d skipped so far): %s", self.skipped, exc)
            return False
        return True

    def _encode_prompts(self, samples: Sequence[Sample]) -> Any:
        texts = [self.family.prompt_text(self.processor, s.prompt) for s in samples]
        images = [s.image for s in samples]
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def _drop_too_long(self, samples: Sequence[Sample], bad: list[int], lens: list[int]) -> list:
        for i in bad:
            msg = (
                f"sample {samples[i].id}: its prompt with image tokens is {lens[i]} tokens, "
                f"data.max_length={self.max_length} leaves no room for the answer; raise "
                "data.max_length or lower the image resolution (model.processor_kwargs)"
            )
            if self.on_bad_sample == "error":
                raise VLMTrainError(msg + " (or set data.on_bad_sample=skip)")
            self.skipped += 1
            log.warning("skipping (%d skipped so far): %s", self.skipped, msg)
        kept = [s for i, s in enumerate(samples) if i not in set(bad)]
        if not kept:
            raise VLMTrainError("every sample of a batch was too long; raise data.max_length")
        return kept

    def _assemble(self, samples: Sequence[Sample], enc: Any, prompts: list[Tensor]) -> dict:
        aligned = [k for k in self.family.aligned_inputs if k in enc]
        rows, labels, extra = [], [], {k: [] for k in aligned}
        for i, (prompt, pieces) in enumerate(zip(prompts, self._response_pieces(samples))):
            ids, supervised = _fit_response(pieces, self.max_length - len(prompt))
            rows.append(torch.cat([prompt, ids]))
            labels.append(torch.cat([torch.full_like(prompt, IGNORE_INDEX),
                                     torch.where(supervised, ids, IGNORE_INDEX)]))
            mask = enc["attention_mask"][i].bool()
            for k in aligned:
                fill = self.family.answer_type_id(k)
                extra[k].append(torch.cat([enc[k][i][mask], torch.full_like(ids, fill)]))
        batch = {
            "input_ids": _pad(rows, self.pad_id, "right"),
            "attention_mask": _pad([torch.ones_like(r) for r in rows], 0, "right"),
            "labels": _pad(labels, IGNORE_INDEX, "right"),
            **{k: _pad(v, 0, "right") for k, v in extra.items()},
            **{k: v for k, v in enc.items() if k in ("pixel_values", "image_grid_thw")},
        }
        if self.with_generation:
            batch["gen_input_ids"] = _pad(prompts, self.pad_id, "left")
            batch["gen_attention_mask"] = _pad([torch.ones_like(p) for p in prompts], 0, "left")
            for k in aligned:
                mask = enc["attention_mask"].bool()
                batch[f"gen_{k}"] = _pad([enc[k][i][mask[i]] for i in range(len(samples))], 0,
                                         "left")
            batch["references"] = [list(s.references) or [s.target] for s in samples]
            batch["ids"] = [s.id for s in samples]
            batch["prompts"] = [s.prompt for s in samples]
        return batch

    def _response_pieces(self, samples: Sequence[Sample]) -> list[list[list[int]]]:
        """Token ids of each sample's answer, then of each follow-up question and answer."""
        fam, proc = self.family, self.processor
        texts, counts = [], []
        for s in samples:
            texts.append(fam.answer_text(proc, s.target))
            for question, answer in s.followups:
                texts += [fam.followup_text(proc, question), fam.answer_text(proc, answer)]
            counts.append(1 + 2 * len(s.followups))
        ids = proc.tokenizer(texts, add_special_tokens=False)["input_ids"]  # one call per batch
        out, start = [], 0
        for n in counts:
            out.append(ids[start:start + n])
            start += n
        return out


def _fit_response(pieces: list[list[int]], room: int) -> tuple[Tensor, Tensor]:
    """Ids after the prompt: answer + end-of-turn, then each follow-up turn, within ``room``.

    Args:
        pieces: ids of the answer, then of each follow-up question and its answer.
        room: tokens left after the prompt.

    Returns:
        ``(ids, supervised)``, both ``(R,)``; supervised marks answer and end-of-turn tokens.
        Follow-up turns that do not fit are dropped whole; a first answer that does not fit is
        cut, keeping its end-of-turn token.
    """
    answer = pieces[0]
    if len(answer) > room:  # cut the answer's tail, keep its end-of-turn token
        answer = answer[: room - 1] + answer[-1:]
    ids, supervised = list(answer), [True] * len(answer)
    for question, reply in zip(pieces[1::2], pieces[2::2]):
        if len(ids) + len(question) + len(reply) > room:
            break
        ids += question + reply
        supervised += [False] * len(question) + [True] * len(reply)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(supervised, dtype=torch.bool)


def _pad(rows: Sequence[Tensor], value: int, side: str) -> Tensor:
    """Stack 1-D tensors of different lengths into (B, max_len), padding on ``side``."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        if side == "right":
            out[i, : len(r)] = r
        else:
            out[i, width - len(r):] = r
    return out
