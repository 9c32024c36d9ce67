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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.records import Sample, check_sample, images_of
from vlmtrain.errors import VLMTrainError
from vlmtrain.models.families import Family

IGNORE_INDEX = -100
#: processor outputs that describe the images (concatenated per image, not padded per row)
IMAGE_INPUTS = ("pixel_values", "image_grid_thw")


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

    Batch layout (model inputs kept apart from everything else, so only model inputs ever
    reach ``model(**batch["inputs"])``):

    - ``inputs``: ``input_ids, attention_mask`` (B, T), family-aligned inputs such as
      ``token_type_ids`` (B, T) and the processor's image tensors (``pixel_values`` and, for
      Qwen, ``image_grid_thw``);
    - ``labels``: (B, T), -100 everywhere but the answers and their end-of-turn tokens;
    - ``meta``: ``ids``, ``prompts``, ``references`` (list of lists), ``images``,
      ``sample_meta`` (each ``Sample.meta``), one entry per sample;
    - ``gen`` (with generation only): the same model inputs for the prompt alone, left-padded
      (B, P), as ``generate`` sees them.
    """

    def __init__(
        self,
        processor: Any,
        family: Family,
        max_length: int = 512,
        on_bad_sample: str = "error",
        with_generation: bool = False,
    ) -> None:
        self.policy = BadRecordPolicy(on_bad_sample)  # counts shared with DataLoader workers
        self.processor = processor
        self.family = family
        self.max_length = max_length
        self.on_bad_sample = on_bad_sample
        self.with_generation = with_generation
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    #: the batch layout this collator produces (a loss declares the one it reads)
    layout = "sft"

    @property
    def skipped(self) -> int:
        return self.policy.counts.total

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        prepared = self.prepare(samples)
        if prepared is None:  # every sample was bad and skipped: the step is skipped too
            return None
        samples, enc, prompts = prepared
        batch = self.rows(samples, enc, prompts)
        batch["meta"] = self.meta(samples)
        if self.with_generation:
            batch["gen"] = self.generation_inputs(enc, prompts)
        return batch

    def prepare(self, samples: Sequence[Sample]) -> tuple[list[Sample], Any, list[Tensor]] | None:
        """Check samples, encode their prompts with images, drop prompts that cannot fit.

        Returns:
            ``(samples, enc, prompts)``: the kept samples, the processor's output for them and
            each prompt's ids without padding (image tokens expanded); ``None`` when every
            sample was skipped as bad (``on_bad_sample=skip``; under ``error`` the first bad
            one raises).
        """
        # None: a sample the dataset could not read under skip (it counted it already)
        samples = [s for s in samples if s is not None and self._valid(s)]
        if not samples:
            return None
        enc = self._encode_prompts(samples)
        prompts = [row[mask.bool()] for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
        too_long = [i for i, p in enumerate(prompts) if len(p) + 1 > self.max_length]
        if too_long:
            kept = self._drop_too_long(samples, too_long, [len(p) for p in prompts])
            return self.prepare(kept) if kept else None
        return list(samples), enc, prompts

    # -- steps ----------------------------------------------------------------------------
    def _valid(self, sample: Sample) -> bool:
        try:
            check_sample(sample)
        except BadRecord as exc:
            self.policy.handle(exc, sample.meta.get("where", "data"))
            return False
        return True

    def _encode_prompts(self, samples: Sequence[Sample]) -> Any:
        images = [images_of(s) for s in samples]  # one list per sample, even of one image
        texts = [self.family.prompt_text(self.processor, s.prompt, len(im))
                 for s, im in zip(samples, images)]
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def _drop_too_long(self, samples: Sequence[Sample], bad: list[int], lens: list[int]) -> list:
        for i in bad:
            self.policy.handle(BadRecord("too_long", (
                f"sample {samples[i].id}: its prompt with image tokens is {lens[i]} tokens, "
                f"data.max_length={self.max_length} leaves no room for the answer; raise "
                "data.max_length or lower the image resolution (model.processor_kwargs)")),
                samples[i].meta.get("where", "data"))
        return [s for i, s in enumerate(samples) if i not in set(bad)]

    def rows(self, samples: Sequence[Sample], enc: Any, prompts: list[Tensor]) -> dict:
        """Training rows ``prompt + answer turns``: ``{"inputs": {...}, "labels": (B, T)}``.

        ``inputs`` holds model inputs only: ids, attention mask, the family's aligned inputs and
        the processor's image tensors.
        """
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
        inputs = {
            "input_ids": _pad(rows, self.pad_id, "right"),
            "attention_mask": _pad([torch.ones_like(r) for r in rows], 0, "right"),
            **{k: _pad(v, 0, "right") for k, v in extra.items()},
            **{k: v for k, v in enc.items() if k in IMAGE_INPUTS},
        }
        return {"inputs": inputs, "labels": _pad(labels, IGNORE_INDEX, "right")}

    def generation_inputs(self, enc: Any, prompts: list[Tensor]) -> dict[str, Tensor]:
        """Left-padded prompt-only model inputs for ``generate`` (what inference sees)."""
        gen = {
            "input_ids": _pad(prompts, self.pad_id, "left"),
            "attention_mask": _pad([torch.ones_like(p) for p in prompts], 0, "left"),
            **{k: v for k, v in enc.items() if k in IMAGE_INPUTS},
        }
        mask = enc["attention_mask"].bool()
        for k in (k for k in self.family.aligned_inputs if k in enc):
            gen[k] = _pad([enc[k][i][mask[i]] for i in range(len(prompts))], 0, "left")
        return gen

    @staticmethod
    def meta(samples: Sequence[Sample]) -> dict[str, list]:
        """What is not a model input: ids, prompts, metric references, the images (for
        image-grounded metrics such as CLIPScore and the sample table) and each sample's
        ``Sample.meta`` (group keys such as ``qtype``), one entry per sample."""
        return {
            "ids": [s.id for s in samples],
            "prompts": [s.prompt for s in samples],
            "references": [list(s.references) or [s.target] for s in samples],
            "images": [s.image for s in samples],
            "sample_meta": [dict(s.meta) for s in samples],
        }

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
