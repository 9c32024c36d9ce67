"""Collation: only answer + end-of-turn is learned; image tokens are never cut or learned."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vlmtrain.data.collate import VLMCollator
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.errors import VLMTrainError


def _samples(n=6, task="vqa"):
    data = ShapesDataset(task, "train", size=n, image_size=48)
    return [data[i] for i in range(n)]


def _end_of_turn(vlm) -> str:
    return "<|im_end|>" if "Qwen" in type(vlm.processor).__name__ else vlm.processor.tokenizer.eos_token


@pytest.mark.parametrize("task", ["vqa", "caption"])
def test_unmasked_labels_decode_to_answer_plus_end_of_turn(tiny_vlm, task):
    samples = _samples(task=task)
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)(samples)
    tok = tiny_vlm.processor.tokenizer
    for i, sample in enumerate(samples):
        learned = batch["labels"][i][batch["labels"][i] != -100]
        assert tok.decode(learned, skip_special_tokens=False) == sample.target + _end_of_turn(tiny_vlm)
        # labelled tokens sit exactly where the same ids are in the input (no shift confusion)
        mask = batch["labels"][i] != -100
        assert torch.equal(batch["inputs"]["input_ids"][i][mask], learned)


def test_followup_turns_learn_every_answer_and_no_question(tiny_vlm):
    samples = [ShapesDataset("vqa", "train", size=4, image_size=48, questions_per_image=4)[i]
               for i in range(4)]
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)(samples)
    tok, eot = tiny_vlm.processor.tokenizer, _end_of_turn(tiny_vlm)
    for i, sample in enumerate(samples):
        answers = [sample.target] + [a for _, a in sample.followups]
        learned = batch["labels"][i][batch["labels"][i] != -100]
        assert _decode_turns(tok, learned, eot) == [a + eot for a in answers]
        text = tok.decode(batch["inputs"]["input_ids"][i][batch["inputs"]["attention_mask"][i].bool()],
                          skip_special_tokens=False)
        for question, answer in sample.followups:  # each question precedes its answer
            assert f"{question}" in text and text.index(question) < text.rindex(answer + eot)
    single = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, with_generation=True)(
        [dataclasses.replace(s, followups=()) for s in samples])
    # the first turn is laid out exactly as without follow-ups (what generation sees)
    for i in range(len(samples)):
        n = int(single["inputs"]["attention_mask"][i].sum())
        assert torch.equal(batch["inputs"]["input_ids"][i][:n], single["inputs"]["input_ids"][i][:n])
        for key in tiny_vlm.family.aligned_inputs:
            assert torch.equal(batch["inputs"][key][i][:n], single["inputs"][key][i][:n])


def test_followup_turns_that_do_not_fit_are_dropped_whole(tiny_vlm):
    sample = ShapesDataset("vqa", "train", size=1, image_size=48, questions_per_image=4)[0]
    full = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 512)([sample])
    length = int(full["inputs"]["attention_mask"].sum())
    short = VLMCollator(tiny_vlm.processor, tiny_vlm.family, length - 1)([sample])
    tok, eot = tiny_vlm.processor.tokenizer, _end_of_turn(tiny_vlm)
    learned = short["labels"][0][short["labels"][0] != -100]
    answers = [sample.target] + [a for _, a in sample.followups[:2]]
    assert _decode_turns(tok, learned, eot) == [a + eot for a in answers]


def _decode_turns(tok, ids, eot: str) -> list[str]:
    """Decode label ids turn by turn (each turn ends with the end-of-turn token)."""
    eot_id = tok.convert_tokens_to_ids(eot)
    ends = [i + 1 for i, t in enumerate(ids.tolist()) if t == eot_id]
    starts = [0, *ends[:-1]]
    return [tok.decode(ids[a:b], skip_special_tokens=False) for a, b in zip(starts, ends)]


def test_image_and_padding_tokens_are_never_labelled(tiny_vlm):
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)(_samples())
    image_id = tiny_vlm.processor.image_token_id
    assert (batch["inputs"]["input_ids"] == image_id).any()
    assert (batch["labels"][batch["inputs"]["input_ids"] == image_id] == -100).all()
    assert (batch["labels"][batch["inputs"]["attention_mask"] == 0] == -100).all()


def test_prompt_for_generation_is_training_prefix(tiny_vlm):
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, with_generation=True)(_samples())
    for i in range(len(batch["meta"]["ids"])):
        prompt = batch["gen"]["input_ids"][i][batch["gen"]["attention_mask"][i].bool()]
        assert torch.equal(batch["inputs"]["input_ids"][i][: len(prompt)], prompt)
        assert (batch["labels"][i][: len(prompt)] == -100).all()
    assert all(len(r) == 10 for r in batch["meta"]["references"])


def test_truncation_cuts_answer_not_image_tokens(tiny_vlm):
    samples = [dataclasses.replace(s, target=" ".join(["circle"] * 40)) for s in _samples(2)]
    full = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 512)(samples)
    prompt_len = int((full["labels"][0] == -100).sum() - (full["inputs"]["attention_mask"][0] == 0).sum())
    short = VLMCollator(tiny_vlm.processor, tiny_vlm.family, prompt_len + 3)(samples)
    image_id = tiny_vlm.processor.image_token_id
    assert short["inputs"]["input_ids"].shape[1] == prompt_len + 3
    assert (short["inputs"]["input_ids"] == image_id).sum() == (full["inputs"]["input_ids"] == image_id).sum()
    learned = short["labels"][0][short["labels"][0] != -100]
    assert len(learned) == 3
    eot = tiny_vlm.processor.tokenizer.convert_tokens_to_ids(_end_of_turn(tiny_vlm))
    assert learned[-1].item() == eot  # the end-of-turn token survives the cut


def test_prompt_that_cannot_fit_errors_or_is_counted(tiny_vlm):
    samples = _samples(3)
    with pytest.raises(VLMTrainError, match=r"sample vqa-train-000000: .*max_length=10"):
        VLMCollator(tiny_vlm.processor, tiny_vlm.family, 10)(samples)
    collator = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 10, on_bad_sample="skip")
    # under skip a batch of bad samples only is skipped (None), never an error mid-run
    assert collator(samples) is None
    assert collator.skipped == 3


def test_empty_answer_names_the_sample(tiny_vlm):
    samples = _samples(3)
    samples[1] = dataclasses.replace(samples[1], target="  ")
    with pytest.raises(VLMTrainError, match=f"sample {samples[1].id} has an empty answer"):
        VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)(samples)
    collator = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, on_bad_sample="skip")
    batch = collator(samples)
    assert collator.skipped == 1 and batch["inputs"]["input_ids"].shape[0] == 2


@pytest.mark.parametrize("image", ["empty", "second_of_two_empty", "not_rgb"])
def test_zero_size_or_unconverted_image_names_the_sample(tiny_vlm, image):
    # decoders never yield these from files (a 0 x 0 PNG does not decode): a dataset of one's
    # own, or an HF column, can
    from PIL import Image

    samples = _samples(2)
    good = samples[0].image
    bad = {"empty": Image.new("RGB", (0, 0)),
           "second_of_two_empty": (good, Image.new("RGB", (5, 0))),
           "not_rgb": Image.new("I;16", (4, 4))}[image]
    samples[1] = dataclasses.replace(samples[1], image=bad)
    expected = {"empty": r"has an image of empty size \(0, 0\)",
                "second_of_two_empty": r"has image 2 of empty size \(5, 0\)",
                "not_rgb": r"has an image in mode 'I;16'"}[image]
    with pytest.raises(VLMTrainError, match=f"sample {samples[1].id} {expected}"):
        VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)(samples)
    collator = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256, on_bad_sample="skip")
    assert collator(samples)["meta"]["ids"] == [samples[0].id] and collator.skipped == 1
