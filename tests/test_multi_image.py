"""Several images per sample: Qwen2.5-VL places them where the prompt's ``<image>``
placeholders are, PaliGemma reads them all before the text; image tokens and prompt are never
learned; a sample trains and generates; placeholders that disagree with the images are a bad
record; a dataset can have its own pixel budget."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from vlmtrain.data.collate import VLMCollator
from vlmtrain.data.pixels import PixelBudget, fit_pixels
from vlmtrain.data.records import Sample
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.errors import VLMTrainError
from vlmtrain.models.tiny import build_tiny_qwen2_5_vl


def _image_token_id(vlm) -> int:
    return vlm.processor.tokenizer.convert_tokens_to_ids(vlm.processor.image_token)


def _end_of_turn(vlm) -> str:
    qwen = "Qwen" in type(vlm.processor).__name__
    return "<|im_end|>" if qwen else vlm.processor.tokenizer.eos_token


def _batch():
    shapes = ShapesDataset("vqa", "train", size=3, image_size=48)
    a, b, c = (shapes[i].image for i in range(3))
    two = Sample("two", (a, b), "Is the shape in <image> the colour of the one in <image>?", "no",
                 ("no",), "vqa")
    unmarked = Sample("unmarked", (b, c), "Which image has more shapes?", "the second",
                      ("the second",), "vqa")
    return [two, unmarked, shapes[2]]  # with a one-image sample in the same batch


def test_image_tokens_per_image_and_only_answers_learned(tiny_vlm):
    samples = _batch()
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, with_generation=True)(samples)
    ids, labels = batch["inputs"]["input_ids"], batch["labels"]
    image_id = _image_token_id(tiny_vlm)
    per_image = int((ids[2] == image_id).sum())  # the one-image sample
    assert per_image > 0
    counts = [int((row == image_id).sum()) for row in ids]
    assert counts == [2 * per_image, 2 * per_image, per_image]
    assert bool((labels[ids == image_id] == -100).all())
    tok = tiny_vlm.processor.tokenizer
    for i, sample in enumerate(samples):
        learned = labels[i][labels[i] != -100]
        assert tok.decode(learned) == sample.target + _end_of_turn(tiny_vlm)
    # pixel tensors hold 5 images (Qwen: their patches, one grid row per image)
    if "image_grid_thw" in batch["inputs"]:
        assert batch["inputs"]["image_grid_thw"].shape[0] == 5
    else:
        assert batch["inputs"]["pixel_values"].shape[0] == 5


def test_qwen_interleaves_images_at_their_placeholders(tiny_qwen):
    batch = VLMCollator(tiny_qwen.processor, tiny_qwen.family, 256)(_batch())
    tok = tiny_qwen.processor.tokenizer
    row = batch["inputs"]["input_ids"][0][batch["inputs"]["attention_mask"][0].bool()]
    text = tok.decode(row)
    per_image = int((row == _image_token_id(tiny_qwen)).sum() // 2)
    image = "<|vision_start|>" + "<|image_pad|>" * per_image
    compact = text.replace(" ", "")  # the tiny tokenizer decodes with spaces between tokens
    assert f"Istheshapein{image}<|vision_end|>thecolouroftheonein{image}<|vision_end|>?" in compact
    unmarked = tok.decode(batch["inputs"]["input_ids"][1])  # no placeholder: images first
    assert unmarked.index("<|vision_end|>") < unmarked.index("Which")


def test_paligemma_reads_every_image_before_the_text(tiny_paligemma):
    batch = VLMCollator(tiny_paligemma.processor, tiny_paligemma.family, 256)(_batch())
    row = batch["inputs"]["input_ids"][0].tolist()
    image_id, bos = _image_token_id(tiny_paligemma), tiny_paligemma.processor.tokenizer.bos_token_id
    first_bos = row.index(bos)
    assert set(row[:first_bos]) == {image_id} and image_id not in row[first_bos:]


def test_several_images_train_and_generate(tiny_vlm):
    model = copy.deepcopy(tiny_vlm.model).train()
    collate = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, with_generation=True)
    batch = collate(_batch())
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = model(**batch["inputs"], labels=batch["labels"]).loss
        assert torch.isfinite(loss)
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # min_new_tokens: a tiny model that already ends its answers would stop early
    out = model.eval().generate(**batch["gen"], max_new_tokens=3, min_new_tokens=3,
                                do_sample=False)
    assert out.shape == (3, batch["gen"]["input_ids"].shape[1] + 3)


@pytest.mark.parametrize("prompt", ["Same as <image>?", "<image><image><image> Same?"])
def test_placeholders_that_disagree_with_the_images_are_a_bad_record(tiny_vlm, prompt):
    good = _batch()[0]
    bad = dataclasses.replace(good, id="mismatch", prompt=prompt)
    expected = (r"sample mismatch has \d <image> placeholder\(s\) in its prompt for 2 "
                r"image\(s\); mark each image once")
    with pytest.raises(VLMTrainError, match=expected):
        VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)([good, bad])
    skip = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, on_bad_sample="skip")
    assert skip([good, bad])["meta"]["ids"] == ["two"] and skip.skipped == 1


def test_a_dataset_pixel_budget_sets_its_qwen_image_tokens(tiny_qwen):
    wide = Image.new("RGB", (192, 96), (10, 200, 10))
    assert fit_pixels(wide, None, 48 * 48).size == (67, 33)  # aspect kept, area <= budget
    assert fit_pixels(wide, 400 * 400, None).size[0] * fit_pixels(wide, 400 * 400, None).size[1] \
        >= 400 * 400
    data = [Sample("w", (wide, wide), "<image> or <image>?", "left", ("left",), "vqa")]
    small, large = PixelBudget(data, max_pixels=32 * 32), PixelBudget(data, max_pixels=96 * 96)
    # the run-wide bounds of the processor (model.processor_kwargs) wide enough for both
    processor = AutoProcessor.from_pretrained(build_tiny_qwen2_5_vl(image_size=48),
                                              size={"shortest_edge": 16 * 16,
                                                    "longest_edge": 256 * 256})
    collate = VLMCollator(processor, tiny_qwen.family, 512)
    grids = [collate([budget[0]])["inputs"]["image_grid_thw"] for budget in (small, large)]
    assert grids[0].shape[0] == grids[1].shape[0] == 2  # both images of the sample, resized
    assert grids[0].prod(-1).sum() < grids[1].prod(-1).sum()  # fewer patches, fewer tokens
