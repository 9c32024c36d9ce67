"""Image-caption pairs for contrastive alignment: images and captions encoded apart.

A contrastive loss (``loss=infonce``) embeds each image and each caption on its own and
contrasts every image with every caption of the batch, so nothing here goes through the chat
template: the images through the image processor alone, the captions through the tokenizer
alone. Any captioning data works (``Sample.target`` is the caption: for shapes captions it
rotates through the five references per epoch, as in SFT).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.collate import IMAGE_INPUTS
from vlmtrain.data.records import Sample, check_sample, images_of


class ImageTextCollator:
    """Collate captioned :class:`Sample` s into an image-text batch (layout ``contrastive``).

    Args:
        processor: the model's Hugging Face processor (its image processor and tokenizer are
            used; ``model.processor_kwargs`` such as Qwen's ``max_pixels`` apply).
        family: the family adapter (unused: no prompt layout; kept for the collator contract).
        max_length: longest caption in tokens; longer captions are cut (counted in the log).
        on_bad_sample: ``error`` or ``skip`` (counted per reason).
        with_generation: accepted for the collator contract; a contrastive batch has nothing
            to generate from.

    Batch (row ``i`` of ``text`` is the caption of image ``i``):

    - ``inputs``: the image processor's tensors only (``pixel_values``, and for Qwen2.5-VL
      ``image_grid_thw``) -- what ``get_image_features`` takes;
    - ``text``: ``input_ids`` and ``attention_mask`` (B, T), captions right-padded, no special
      tokens;
    - ``meta``: ``ids``, ``prompts`` (the captions), ``references``, ``images``.
    """

    layout = "contrastive"

    def __init__(self, processor: Any, family: Any = None, max_length: int = 128,
                 on_bad_sample: str = "error", with_generation: bool = False) -> None:
        self.processor = processor
        self.max_length = max_length
        self.policy = BadRecordPolicy(on_bad_sample)
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def skipped(self) -> int:
        return self.policy.counts.total

    def __call__(self, samples: Sequence[Sample | None]) -> dict[str, Any] | None:
        # None: a sample the dataset could not read under skip (it counted it already)
        kept = [s for s in samples if s is not None and self._valid(s)]
        if not kept:  # every sample was bad and skipped: the step is skipped too
            return None
        images = self.processor.image_processor([images_of(s)[0] for s in kept],
                                               return_tensors="pt")
        ids = self.processor.tokenizer([s.target for s in kept], add_special_tokens=False,
                                       truncation=True, max_length=self.max_length)["input_ids"]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return {
            "inputs": {k: v for k, v in images.items() if k in IMAGE_INPUTS},
            "text": {"input_ids": input_ids, "attention_mask": mask},
            "meta": {"ids": [s.id for s in kept], "prompts": [s.target for s in kept],
                     "references": [list(s.references) or [s.target] for s in kept],
                     "images": [s.image for s in kept]},
        }

    def _valid(self, sample: Sample) -> bool:
        try:
            check_sample(sample)
            if sample.rejected is not None:
                raise BadRecord("not_a_caption", (
                    f"sample {sample.id} is a preference pair, but image-text alignment reads "
                    "captions: use captioning data (e.g. data=shapes_image_text)"))
            if len(images_of(sample)) != 1:
                raise BadRecord("several_images", (
                    f"sample {sample.id} has {len(images_of(sample))} images, but image-text "
                    "alignment pairs one image with its caption: split the record per image"))
        except BadRecord as exc:
            self.policy.handle(exc, sample.meta.get("where", "data"))
            return False
        return True
